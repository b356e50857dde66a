//! The shim after its re-exec: see berth_monitor::monitor.
fn main() {
    // The one argument a person may give it (packaging checks that the
    // static build runs at all); berth-shim always passes the init's pid.
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("berth-monitor {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    if std::env::args().nth(1).as_deref() == Some("--keep") {
        berth_monitor::keeper::run()
    }
    berth_monitor::monitor::main_after_exec()
}
