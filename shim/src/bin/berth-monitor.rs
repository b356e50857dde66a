//! The shim after its re-exec: see berth_shim::monitor.
fn main() {
    berth_shim::monitor::main_after_exec()
}
