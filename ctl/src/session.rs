//! The verbs that hold a session with a container: run, start -a, exec, stop,
//! wait. Output comes through berthd's attach fds (AttachContainer before
//! StartContainer, so nothing is missed; AttachExec for an exec, whose shim
//! holds the output for its first client).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::termios;
use zbus::zvariant::Value;

use crate::cli::{CreateOpts, ExecOpts, RunOpts};
use crate::{manager, Failed, Result};
use berth_client::{is_disconnected, is_no_reply, ManagerProxyBlocking};

fn random_id() -> String {
    let mut b = [0u8; 8];
    let _ = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b));
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn key_values(list: &[String], what: &str) -> Result<HashMap<String, String>> {
    list.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(Failed::new(format!("{what} {kv:?} is not KEY=VALUE"))),
        })
        .collect()
}

/// CreateContainer's options from the command line.
pub fn create_options(
    opts: &CreateOpts,
    cmd: &[String],
) -> Result<HashMap<&'static str, Value<'static>>> {
    let mut o: HashMap<&'static str, Value<'static>> = HashMap::new();
    if !opts.labels.is_empty() {
        o.insert("labels", Value::from(key_values(&opts.labels, "label")?));
    }
    if !cmd.is_empty() {
        o.insert("args", Value::from(cmd.to_vec()));
    }
    // --env-file first: -e wins (berthd keeps the last of a name).
    let mut env = opts.security.file_env()?;
    env.extend(opts.process.env.iter().cloned());
    if !env.is_empty() {
        key_values(&env, "env")?;
        o.insert("env", Value::from(env));
    }
    if opts.process.tty {
        o.insert("terminal", Value::from(true));
    }
    if opts.process.interactive && !opts.process.tty {
        o.insert("stdin", Value::from(true));
    }
    if let Some(w) = &opts.process.workdir {
        o.insert("workdir", Value::from(w.clone()));
    }
    if let Some(m) = opts.memory {
        o.insert("memory", Value::from(m));
    }
    if let Some(c) = opts.cpus {
        o.insert("cpus", Value::from(c));
    }
    if let Some(p) = opts.pids_limit {
        o.insert("pids_limit", Value::from(p));
    }
    if let Some(s) = &opts.slice {
        o.insert("slice", Value::from(s.clone()));
    }
    opts.net.insert_into(&mut o);
    opts.security.insert_into(&mut o)?;
    opts.lifecycle.insert_into(&mut o)?;
    opts.storage.insert_into(&mut o);
    Ok(o)
}

/// Where the container comes from: (bundle or "", image, command override).
/// With --bundle there is no image: the first positional word is the
/// command's (`run --bundle DIR sh -c …`).
fn source(opts: &CreateOpts) -> Result<(String, Option<String>, Vec<String>)> {
    match (&opts.bundle, &opts.image) {
        (Some(bundle), first) => {
            let abs = std::fs::canonicalize(bundle)
                .map_err(|e| Failed::new(format!("bundle {}: {e}", bundle.display())))?;
            let cmd = first.iter().chain(&opts.command).cloned().collect();
            Ok((abs.to_string_lossy().into_owned(), None, cmd))
        }
        (None, Some(image)) => Ok((String::new(), Some(image.clone()), opts.command.clone())),
        (None, None) => Err(Failed::new(
            "give an IMAGE, or an OCI bundle with --bundle DIR",
        )),
    }
}

pub fn create(m: &ManagerProxyBlocking, opts: &CreateOpts) -> Result<String> {
    create_with(m, opts, HashMap::new())
}

/// create, with `extra` options beside those of the command line.
pub fn create_with(
    m: &ManagerProxyBlocking,
    opts: &CreateOpts,
    extra: HashMap<&'static str, Value<'static>>,
) -> Result<String> {
    let (bundle, image, cmd) = source(opts)?;
    let id = opts.name.clone().unwrap_or_else(random_id);
    let mut options = create_options(opts, &cmd)?;
    options.extend(extra);
    if let Some(image) = image {
        options.insert("image", Value::from(image));
    }
    if let Some(user) = &opts.user {
        options.insert("user", Value::from(user.clone()));
    }
    m.create_container(&id, &bundle, options)?;
    Ok(id)
}

pub fn run(opts: &RunOpts) -> Result<u8> {
    // podman's rule: a container removed at its exit cannot be restarted.
    if opts.rm
        && opts
            .create
            .lifecycle
            .restart
            .as_deref()
            .is_some_and(|r| r != "no")
    {
        return Err(Failed::new("--rm and --restart conflict: choose one"));
    }
    let m = manager()?;
    let id = create(&m, &opts.create)?;
    if opts.detach {
        if let Err(e) = m.start_container(&id) {
            if opts.rm {
                let _ = m.delete_container(&id, true);
            }
            return Err(e.into());
        }
        println!("{id}");
        return Ok(0);
    }
    let result = start_attached(
        &m,
        &id,
        opts.create.process.interactive || opts.create.process.tty,
    );
    if opts.rm {
        let _ = m.delete_container(&id, true);
    }
    result
}

/// Attach, start, relay until the output ends, then the exit code.
pub fn start_attached(m: &ManagerProxyBlocking<'static>, id: &str, input: bool) -> Result<u8> {
    let fd: OwnedFd = m.attach_container(id)?.into();
    let tty = Terminal::raw_if(input && is_tty(0));
    let _forward = SignalForwarder::start(m.clone(), id.to_string(), String::new(), tty.is_some());
    m.start_container(id)?;
    relay(fd, input);
    drop(tty);
    let (code, _) = wait(m, id)?;
    Ok(code.clamp(0, 255) as u8)
}

/// WaitContainer until it answers, across a restart of berthd: on the bus a
/// berthd that went away answers NoReply and the call is made again (it
/// activates the next one); on the private socket the connection ends with
/// it, and the call is made again on a new one — the private socket once
/// the next berthd serves it, the bus (which waits for berthd) until then.
pub fn wait(m: &ManagerProxyBlocking<'static>, id: &str) -> Result<(i32, i32)> {
    let mut m = m.clone();
    loop {
        match m.wait_container(id) {
            Ok(v) => return Ok(v),
            Err(e) if is_no_reply(&e) => continue,
            Err(e) if is_disconnected(&e) => {
                std::thread::sleep(Duration::from_millis(100));
                m = manager()?;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// The container's stop signal (SIGTERM unless created with --stop-signal),
/// then SIGKILL to every process after `secs`.
pub fn stop(m: &ManagerProxyBlocking<'static>, id: &str, secs: u64) -> Result<()> {
    let (signal, _) = crate::security_opts::stop_defaults(m, id);
    if let Err(e) = m.kill_container(id, "init", signal) {
        // Already stopped (or never started) is fine for stop.
        let msg = berth_client::describe(&e);
        if msg.contains("FailedPrecondition") {
            return Ok(());
        }
        return Err(e.into());
    }
    let (tx, rx) = mpsc::channel();
    let (mc, idc) = (m.clone(), id.to_string());
    std::thread::spawn(move || {
        let _ = tx.send(wait(&mc, &idc));
    });
    if rx.recv_timeout(Duration::from_secs(secs)).is_ok() {
        return Ok(());
    }
    match m.kill_container(id, "all", libc::SIGKILL) {
        Ok(()) => {}
        Err(e) if berth_client::describe(&e).contains("FailedPrecondition") => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    rx.recv_timeout(Duration::from_secs(30))
        .map_err(|_| Failed::new(format!("{id} did not stop after SIGKILL")))?
        .map(drop)
}

pub fn exec(opts: &ExecOpts) -> Result<u8> {
    let m = manager()?;
    let mut process = serde_json::json!({ "args": opts.cmd, "terminal": opts.process.tty });
    if !opts.process.env.is_empty() {
        key_values(&opts.process.env, "env")?;
        process["env"] = serde_json::json!(opts.process.env);
    }
    if let Some(w) = &opts.process.workdir {
        process["cwd"] = serde_json::json!(w);
    }
    // The process runs at once: its terminal must have the size from the
    // start (a resize would come after its first look).
    if let (true, Some((rows, cols))) = (opts.process.tty, window_size()) {
        process["consoleSize"] = serde_json::json!({"height": rows, "width": cols});
    }
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("attach", Value::from(!opts.detach));
    if opts.process.interactive && !opts.process.tty {
        o.insert("stdin", Value::from(true));
    }
    let exec_id = m.exec_container(&opts.id, &process.to_string(), o)?;
    if opts.detach {
        println!("{exec_id}");
        return Ok(0);
    }
    let fd: OwnedFd = m.attach_exec(&opts.id, &exec_id)?.into();
    let input = opts.process.interactive || opts.process.tty;
    let tty = Terminal::raw_if(input && opts.process.tty && is_tty(0));
    let _forward =
        SignalForwarder::start(m.clone(), opts.id.clone(), exec_id.clone(), tty.is_some());
    relay(fd, input);
    drop(tty);
    let (code, _) = m.wait_exec(&opts.id, &exec_id)?;
    Ok(code.clamp(0, 255) as u8)
}

fn is_tty(fd: i32) -> bool {
    // SAFETY: isatty only inspects the descriptor.
    unsafe { libc::isatty(fd) == 1 }
}

/// Copies the attach stream to stdout until it ends; stdin to it if asked.
fn relay(fd: OwnedFd, input: bool) {
    let sock = UnixStream::from(fd);
    if input {
        if let Ok(mut to) = sock.try_clone() {
            // Left running: it ends with the process (read blocks on stdin).
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut stdin = std::io::stdin().lock();
                while let Ok(n) = stdin.read(&mut buf) {
                    if n == 0 {
                        // End of our input: half-close, so the process reads
                        // EOF (the shim closes its stdin) while its output
                        // still comes.
                        let _ = to.shutdown(std::net::Shutdown::Write);
                        break;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    }
    let mut from = sock;
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 16384];
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            break;
        }
    }
}

/// The local terminal in raw mode for the session; restored on drop.
struct Terminal {
    saved: termios::Termios,
}

impl Terminal {
    fn raw_if(yes: bool) -> Option<Terminal> {
        if !yes {
            return None;
        }
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(stdin.as_fd(), termios::SetArg::TCSANOW, &raw).ok()?;
        Some(Terminal { saved })
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(
            std::io::stdin().as_fd(),
            termios::SetArg::TCSANOW,
            &self.saved,
        );
    }
}

fn window_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize we pass.
    let ok = unsafe { libc::ioctl(std::io::stdout().as_raw_fd(), libc::TIOCGWINSZ, &mut ws) } == 0;
    (ok && ws.ws_row > 0).then_some((ws.ws_row, ws.ws_col))
}

/// The signals berthctl relays (blocked from the start, see main).
pub fn relayed_signals() -> SigSet {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGWINCH,
    ] {
        set.add(s);
    }
    set
}

/// podman's --sig-proxy: INT, TERM, HUP, QUIT go to the container's init
/// (not for a terminal session, where ^C is a byte on the pty); WINCH
/// resizes the container's terminal.
struct SignalForwarder;

impl SignalForwarder {
    fn start(
        m: ManagerProxyBlocking<'static>,
        id: String,
        exec_id: String,
        tty: bool,
    ) -> SignalForwarder {
        let set = relayed_signals();
        if tty {
            if let Some((r, c)) = window_size() {
                let _ = m.resize_terminal(&id, &exec_id, r, c);
            }
        }
        std::thread::spawn(move || {
            while let Ok(sig) = set.wait() {
                if sig == Signal::SIGWINCH {
                    if let (true, Some((r, c))) = (tty, window_size()) {
                        let _ = m.resize_terminal(&id, &exec_id, r, c);
                    }
                } else if !tty && exec_id.is_empty() {
                    let _ = m.kill_container(&id, "init", sig as i32);
                } else if !tty {
                    // An exec's process is not the init: the signal ends
                    // this session only.
                    std::process::exit(128 + sig as i32);
                }
            }
        });
        SignalForwarder
    }
}
