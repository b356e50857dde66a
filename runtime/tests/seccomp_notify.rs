//! `linux.seccomp.listenerPath`: the test is the seccomp agent. It listens on
//! a unix socket in the bundle (the target dir, which the box binds at the
//! same path), receives the container process state and the listener fd for
//! the container's init and for an exec, answers their `mkdir`s — an error
//! first, then a success that did nothing — and checks the processes saw
//! exactly that. With and without no_new_privs: the init loads the filter at
//! a different point in each case.

mod common;

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use berth_init::seccomp::agent::ContainerProcessState;
use common::{busybox_bundle, shell_join, text, Rt};
use libseccomp::{ScmpNotifReq, ScmpNotifResp, ScmpNotifRespFlags};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::json;

/// Every agent wait ends by then, so a broken hand-over fails the test
/// instead of hanging it.
const LIMIT: Duration = Duration::from_secs(60);

/// A seccomp agent on its own threads: the states it was sent, in order.
struct Agent {
    states: Arc<Mutex<Vec<ContainerProcessState>>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Agent {
    fn listen(listener: UnixListener) -> Agent {
        listener.set_nonblocking(true).unwrap();
        let states = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (states.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            while !st.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (state, fd) = receive_state(&conn);
                        s.lock().unwrap().push(state);
                        let st = st.clone();
                        std::thread::spawn(move || answer(fd, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Agent {
            states,
            stop,
            accept: Some(accept),
        }
    }

    /// The states received, once there are `n` (or after a while): the
    /// runtime has sent before it returns, but our accept thread polls.
    fn states(&self, n: usize) -> Vec<ContainerProcessState> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.states.lock().unwrap().clone();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// One connection: the JSON state with the listener fd (SCM_RIGHTS).
fn receive_state(conn: &UnixStream) -> (ContainerProcessState, OwnedFd) {
    conn.set_nonblocking(false).unwrap();
    conn.set_read_timeout(Some(LIMIT)).unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut space = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let m = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::empty(),
    )
    .expect("recvmsg from the runtime");
    let mut fds = Vec::new();
    for c in m.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(f) = c {
            fds.extend(f);
        }
    }
    let n = m.bytes;
    assert_eq!(fds.len(), 1, "one fd with the state");
    let state = serde_json::from_slice(&buf[..n]).expect("container process state JSON");
    // SAFETY: SCM_RIGHTS just installed the fd in our table; we own it.
    (state, unsafe { OwnedFd::from_raw_fd(fds[0]) })
}

/// Answers the notifications of one filter: the first fails with EXDEV,
/// the next ones succeed without running. Ends when every process using
/// the filter is gone (POLLHUP) or the test stops.
fn answer(fd: OwnedFd, stop: &AtomicBool) {
    let deadline = Instant::now() + LIMIT;
    let mut seen = 0;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        if poll(&mut p, 100u16).unwrap_or(0) == 0 {
            continue;
        }
        let events = p[0].revents().unwrap_or(PollFlags::empty());
        if !events.contains(PollFlags::POLLIN) {
            return;
        }
        // The process may die in between (ENOENT): nothing to answer.
        let Ok(req) = ScmpNotifReq::receive(fd.as_raw_fd()) else {
            continue;
        };
        let flags = ScmpNotifRespFlags::empty();
        let resp = match seen {
            0 => ScmpNotifResp::new_error(req.id, -libc::EXDEV, flags),
            _ => ScmpNotifResp::new_val(req.id, 0, flags),
        };
        seen += 1;
        let _ = resp.respond(fd.as_raw_fd());
    }
}

/// Polls `cmd`'s output in the box until it contains `want`.
fn wait_for(b: &berth_box::SystemdBox, cmd: &str, want: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = b.sh_ok(cmd);
        if out.contains(want) || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn notified_syscalls_are_answered_by_the_agent_at_listener_path() {
    let Some(b) = berth_box::up_or_skip("seccomp_notify") else {
        return;
    };
    let rt = Rt::new(&b, true);
    for nnp in [true, false] {
        let id = format!("notify-{nnp}");
        let script = "mkdir /tmp/a 2>&1; echo a=$?; mkdir /tmp/b; echo b=$?; \
                      test -d /tmp/b && echo b-made || echo b-faked; exec sleep 300";
        let mut bundle = busybox_bundle(&id, &["sh", "-c", script]);
        let sock = bundle.dir.join("agent.sock");
        bundle.config["root"]["readonly"] = json!(false);
        bundle.config["process"]["noNewPrivileges"] = json!(nnp);
        bundle.config["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "listenerPath": sock,
            "listenerMetadata": "berth-test",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
        });
        bundle.save();
        let agent = Agent::listen(UnixListener::bind(&sock).unwrap());

        let log = format!("/tmp/{id}.log");
        let create = rt.argv(&["create", &id, "--bundle", bundle.path()]);
        let script = format!("exec {} >{log} 2>&1 </dev/null", shell_join(&create));
        let out = b.exec_timeout(&["sh", "-c", &script], LIMIT).unwrap();
        assert!(out.status.success(), "create (nnp {nnp}): {}", text(&out));
        let init_pid = rt.state(&id)["pid"].as_i64().unwrap() as i32;
        let states = agent.states(1);
        assert_eq!(states.len(), 1, "one state at create: {states:?}");
        let s = &states[0];
        assert_eq!((s.pid, s.state.pid), (init_pid, Some(init_pid)));
        assert_eq!(s.state.status, "creating");
        assert_eq!(s.state.id, id);
        assert_eq!(s.fds, ["seccompFd"]);
        assert_eq!(s.metadata.as_deref(), Some("berth-test"));

        rt.ok(&["start", &id]);
        let out = wait_for(&b, &format!("cat {log}"), "b-faked");
        assert!(out.contains("ross-device link"), "nnp {nnp}: {out}");
        assert!(
            out.contains("a=1") && out.contains("b=0"),
            "nnp {nnp}: {out}"
        );
        assert!(out.contains("b-faked"), "nnp {nnp}: {out}");

        // ("Cross-device link" or "Invalid cross-device link", by libc.)
        // An exec loads the filter itself: a second connection, its own fd.
        let exec = rt.argv(&["exec", &id, "sh", "-c", "mkdir /tmp/c 2>&1; echo c=$?"]);
        let refs: Vec<&str> = exec.iter().map(String::as_str).collect();
        let out = b.exec_timeout(&refs, LIMIT).unwrap();
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "exec (nnp {nnp}): {}", text(&out));
        assert!(
            said.contains("ross-device link") && said.contains("c=1"),
            "{said}"
        );
        let states = agent.states(2);
        assert_eq!(states.len(), 2, "a state per exec: {states:?}");
        let s = &states[1];
        assert_eq!(s.state.status, "running");
        assert_eq!(s.state.pid, Some(init_pid));
        assert_ne!(s.pid, init_pid, "the exec'd process's own pid");
        rt.ok(&["delete", "-f", &id]);
    }
}

#[test]
fn features_lists_notify() {
    let out = std::process::Command::new(common::RUNTIME)
        .arg("features")
        .output()
        .unwrap();
    let features: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let actions = &features["linux"]["seccomp"]["actions"];
    assert!(
        actions
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "SCMP_ACT_NOTIFY"),
        "{actions}"
    );
}
