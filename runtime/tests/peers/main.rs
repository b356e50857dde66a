//! berth-runtime under its real clients, against runc: podman 4.3
//! (`--runtime`) and containerd 1.6 (`ctr run --runc-binary`), each with both
//! cgroup managers, run every case once with runc and once with berth-runtime
//! and must see the same exit code and output (docs/runtime.md, "Tested with
//! podman and containerd", lists the matrix).
//!
//! The host's hybrid tree is where the cgroup v1 cases run (cgroupfs: the
//! systemd manager needs a systemd, which the host has not); a box (systemd
//! on a pure cgroup v2 tree) runs the rest, systemd and cgroupfs. Cases a
//! place cannot run are printed as SKIP with the reason.

mod cases;
mod containerd;
mod place;
mod podman;

use cases::compare;
use containerd::Containerd;
use place::{tools_or_skip, v1_host_or_skip, Place, Scratch};
use podman::Podman;

const PODMAN: &[&str] = &["podman", "conmon", "runc"];
const CONTAINERD: &[&str] = &["containerd", "ctr", "containerd-shim-runc-v2", "runc"];

fn host(test: &str, tools: &[&str]) -> Option<Place> {
    (tools_or_skip(test, tools) && v1_host_or_skip(test)).then(Place::host)
}

fn boxed(test: &str, tools: &[&str]) -> Option<Place> {
    if !tools_or_skip(test, tools) {
        return None;
    }
    berth_box::up_or_skip(test).map(Place::Boxed)
}

fn podman_cell(place: Place, manager: &'static str) {
    let s = Scratch::new("peers-podman");
    let peer = Podman::new(&place, &s, manager);
    let (cases, skipped) = podman::cases(&place, &s);
    compare(&place, &s, &peer, &cases, &skipped);
}

fn containerd_cell(place: Place, systemd: bool) {
    let s = Scratch::new("peers-ctr");
    let peer = Containerd::start(&place, &s, systemd);
    let (cases, skipped) = containerd::cases(&place, &s);
    compare(&place, &s, &peer, &cases, &skipped);
}

#[test]
fn podman_cgroupfs_on_a_v1_host_sees_berth_as_runc() {
    if let Some(p) = host("podman_cgroupfs_v1", PODMAN) {
        podman_cell(p, "cgroupfs");
    }
}

#[test]
fn podman_systemd_on_cgroup_v2_sees_berth_as_runc() {
    if let Some(p) = boxed("podman_systemd_v2", PODMAN) {
        podman_cell(p, "systemd");
    }
}

#[test]
fn podman_cgroupfs_on_cgroup_v2_sees_berth_as_runc() {
    if let Some(p) = boxed("podman_cgroupfs_v2", PODMAN) {
        podman_cell(p, "cgroupfs");
    }
}

#[test]
fn containerd_cgroupfs_on_a_v1_host_sees_berth_as_runc() {
    if let Some(p) = host("containerd_cgroupfs_v1", CONTAINERD) {
        containerd_cell(p, false);
    }
}

#[test]
fn containerd_cgroupfs_on_cgroup_v2_sees_berth_as_runc() {
    if let Some(p) = boxed("containerd_cgroupfs_v2", CONTAINERD) {
        containerd_cell(p, false);
    }
}

#[test]
fn containerd_systemd_on_cgroup_v2_sees_berth_as_runc() {
    if let Some(p) = boxed("containerd_systemd_v2", CONTAINERD) {
        containerd_cell(p, true);
    }
}
