//! The crictl part of tests/cri_stream.rs (cri-tools' client is not in CI:
//! skipped with a reason unless BERTH_CRICTL names it).

/// Runs `crictl exec -it` on a pty sized 33x101 (argv: crictl, transport,
/// container), types a line once the shell prompts, prints what came back
/// and crictl's exit code. (Not `script`: it hung when its input ended.)
const PTY_DRIVER: &str = r##"
import fcntl, os, select, struct, subprocess, sys, termios, time
crictl, transport, ctr = sys.argv[1:4]
master, slave = os.openpty()
fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
p = subprocess.Popen([crictl, "-r", "unix:///run/berth/cri.sock", "exec", "-it",
                      "--transport", transport, ctr, "sh"],
                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
os.close(slave)
out, sent, end = b"", False, time.time() + 10
while time.time() < end:
    if not sent and b"# " in out:
        os.write(master, b"stty size; tty; exit\r")
        sent = True
    r, _, _ = select.select([master], [], [], 0.2)
    if r:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    elif p.poll() is not None:
        break
try:
    rc = p.wait(timeout=5)
except subprocess.TimeoutExpired:
    p.kill()
    rc = "hung"
print(out.decode(errors="replace"))
print(f"rc={rc}")
"##;

/// crictl (cri-tools' client: not in CI, so skipped with a reason when
/// absent; BERTH_CRICTL names it) against the same pod, both transports.
pub fn crictl(b: &berth_box::SystemdBox, pod: &str, web: &str, ticker: &str) {
    let path = std::env::var("BERTH_CRICTL").unwrap_or_else(|_| "crictl".into());
    let found = std::process::Command::new(&path).arg("--version").output();
    if !found.is_ok_and(|o| o.status.success()) {
        println!("SKIP crictl streaming: no crictl (set BERTH_CRICTL to cri-tools' crictl)");
        return;
    }
    let c = format!("timeout -k 1 10 {path} -r unix:///run/berth/cri.sock");
    for t in ["spdy", "websocket"] {
        // crictl's streaming exec reports a code through the status: its
        // message, and an exit of 1 (only `exec -s`, ExecSync, passes it on).
        let rc = b.sh_ok(&format!(
            "{c} exec --transport {t} {web} sh -c 'exit 3' 2>&1; echo rc=$?"
        ));
        assert!(
            rc.contains("command terminated with exit code 3") && rc.trim_end().ends_with("rc=1"),
            "{t}: {rc}"
        );
        let echoed = b.sh_ok(&format!(
            "echo hi-{t} | {c} exec -i --transport {t} {web} cat"
        ));
        assert_eq!(echoed.trim(), format!("hi-{t}"));
        // Attach: stdout and stderr to crictl's own stdout and stderr.
        let attached = b.sh_ok(&format!(
            "timeout -k 1 2 {path} -r unix:///run/berth/cri.sock attach --transport {t} {ticker} 2>/tmp/attach-err; \
             echo; echo err:; cat /tmp/attach-err"
        ));
        let (out, err) = attached.split_once("\nerr:\n").unwrap();
        assert!(
            out.contains("tick") && !out.contains("tock"),
            "{t} attach: {attached}"
        );
        assert!(
            err.contains("tock") && !err.contains("tick"),
            "{t} attach: {attached}"
        );
        // exec -it on a pty of its own (sized 33x101 before crictl starts:
        // its size goes over the resize stream), driven by python3.
        let tty = b.sh_ok(&format!(
            "/usr/bin/python3 - {path} {t} {web} <<'EOF'\n{PTY_DRIVER}\nEOF"
        ));
        assert!(
            tty.contains("33 101") && tty.contains("/dev/pts/") && tty.contains("rc=0"),
            "{t} exec -it: {tty}"
        );
        // Port-forward (websocket: SPDY tunnelled in the WebSocket).
        let fwd = b.sh_ok(&format!(
            "timeout -k 1 15 {path} -r unix:///run/berth/cri.sock port-forward --transport {t} {pod} 18099:80 >/dev/null 2>&1 & pf=$!; \
             for i in $(seq 50); do wget -T 2 -qO- http://127.0.0.1:18099/hostname && break; sleep 0.1; done; kill $pf; wait $pf 2>/dev/null || true"
        ));
        assert_eq!(fwd.trim(), "s1", "{t} port-forward");
    }
    // The round trip of `crictl exec true` (ExecSync is `exec -s`; this is
    // the streaming path: Exec, the upgrade, the exec, the status).
    let ms = b.sh_ok(&format!(
        "s=$(date +%s%N); for i in $(seq 20); do {c} exec {web} true; done; e=$(date +%s%N); echo $(( (e - s) / 20000000 ))"
    ));
    println!(
        "crictl exec true (SPDY) round trip: {} ms (mean of 20)",
        ms.trim()
    );
}
