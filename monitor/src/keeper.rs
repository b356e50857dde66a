//! `berth-monitor --keep`: the process that keeps berthd-monitors.scope
//! alive. A scope is made around processes and stops when none is left in
//! its cgroup tree; the monitors come and go in sub-cgroups, so without a
//! keeper the scope would stop (and systemd remove the cgroups) whenever the
//! last container is deleted — racing the next create's mkdir.
//!
//! It does nothing but wait: SIGTERM (the scope's stop, the host's shutdown)
//! ends it with the default action.

/// Named apart from the monitors (`pgrep -x berth-monitor` counts those).
const NAME: &std::ffi::CStr = c"berth-keeper";

pub fn run() -> ! {
    let _ = nix::sys::prctl::set_name(NAME);
    // Nothing of its starter's (berthd's cwd) stays busy for its whole life.
    let _ = std::env::set_current_dir("/");
    loop {
        nix::unistd::pause();
    }
}
