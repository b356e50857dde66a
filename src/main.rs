//! berthd: the D-Bus service (io.berth.Berth1) that runs OCI containers as
//! transient systemd scopes. The service itself arrives with the daemon issue;
//! today the binary only reports what it is.

fn main() {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => println!("berthd {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!(
                "berthd {}: the D-Bus service is not built yet",
                env!("CARGO_PKG_VERSION")
            );
            std::process::exit(2);
        }
    }
}
