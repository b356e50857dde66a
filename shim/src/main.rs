//! berth-shim: one small, synchronous process per container process. It is the
//! container's subreaper, holds its stdio and records its exit status. Built in
//! the shim issue; today the binary only reports what it is.

fn main() {
    println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
}
