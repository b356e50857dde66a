//! OCI runtime-spec hooks (config.md, "POSIX-platform Hooks"): prestart,
//! createRuntime, createContainer, startContainer, poststart and poststop.
//!
//! A hook is executed directly (never through a shell) with exactly its own
//! `args` and `env`, reads the container's state JSON on stdin, and is SIGKILLed
//! when its `timeout` expires. A phase runs its hooks in order and stops at the
//! first failure. Which namespace a phase runs in, and whether a failure aborts
//! the lifecycle or is only logged (poststart, poststop), is the caller's choice.
//!
//! The hook's pipes are driven by one poll(2) loop rather than threads: this code
//! also runs in the container's init before execve, where extra threads are
//! unwelcome, and a poll loop can stop draining pipes that a hook's forked
//! grandchild keeps open, where a reader thread would block forever.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use oci_spec::runtime::{Hook, Hooks};

/// How often a running hook is checked for exit and its deadline.
const POLL_INTERVAL_MS: u16 = 5;
/// How long to keep reading output after the hook is gone: a grandchild that
/// inherited stdout/stderr may hold the pipe open indefinitely.
const OUTPUT_GRACE: Duration = Duration::from_millis(100);
/// Per-stream bound on the output kept for error messages.
const OUTPUT_LIMIT: usize = 4096;

/// A point in the container lifecycle at which hooks run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Phase {
    /// Every phase, in lifecycle order.
    pub const ALL: [Phase; 6] = [
        Phase::Prestart,
        Phase::CreateRuntime,
        Phase::CreateContainer,
        Phase::StartContainer,
        Phase::Poststart,
        Phase::Poststop,
    ];
}

/// The phase's key under `hooks` in config.json.
impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Prestart => "prestart",
            Phase::CreateRuntime => "createRuntime",
            Phase::CreateContainer => "createContainer",
            Phase::StartContainer => "startContainer",
            Phase::Poststart => "poststart",
            Phase::Poststop => "poststop",
        })
    }
}

/// A hook that is invalid or did not succeed. `index` is the hook's position in
/// its phase's array in config.json.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("hooks.{phase}[{index}] {}: path must be absolute", .path.display())]
    RelativePath {
        phase: Phase,
        index: usize,
        path: PathBuf,
    },
    #[error("hooks.{phase}[{index}] {}: timeout must be greater than zero, got {timeout}", .path.display())]
    InvalidTimeout {
        phase: Phase,
        index: usize,
        path: PathBuf,
        timeout: i64,
    },
    #[error("hooks.{phase}[{index}] {}: env entry {entry:?} is not NAME=value", .path.display())]
    InvalidEnv {
        phase: Phase,
        index: usize,
        path: PathBuf,
        entry: String,
    },
    #[error("hooks.{phase}: cannot serialize the container state: {source}")]
    State {
        phase: Phase,
        source: serde_json::Error,
    },
    #[error("hooks.{phase}[{index}] {}: cannot execute: {source}", .path.display())]
    Spawn {
        phase: Phase,
        index: usize,
        path: PathBuf,
        source: io::Error,
    },
    #[error("hooks.{phase}[{index}] {}: waiting for the hook: {source}", .path.display())]
    Wait {
        phase: Phase,
        index: usize,
        path: PathBuf,
        source: io::Error,
    },
    #[error("hooks.{phase}[{index}] {}: timed out after {timeout}s and was killed{}", .path.display(), with_output(.output))]
    TimedOut {
        phase: Phase,
        index: usize,
        path: PathBuf,
        timeout: i64,
        output: String,
    },
    #[error("hooks.{phase}[{index}] {}: failed with {status}{}", .path.display(), with_output(.output))]
    Failed {
        phase: Phase,
        index: usize,
        path: PathBuf,
        status: ExitStatus,
        output: String,
    },
}

fn with_output(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!(": {output}")
    }
}

/// OCI container state as given to hooks and printed by `berth-runtime state`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The hooks configured for `phase`, in the order they must run.
pub fn hooks_for(hooks: Option<&Hooks>, phase: Phase) -> Vec<Hook> {
    let Some(hooks) = hooks else {
        return Vec::new();
    };
    let list = match phase {
        // Deprecated by the spec in favour of the create*/startContainer hooks,
        // but still part of it, and runc still runs them.
        #[allow(deprecated)]
        Phase::Prestart => hooks.prestart(),
        Phase::CreateRuntime => hooks.create_runtime(),
        Phase::CreateContainer => hooks.create_container(),
        Phase::StartContainer => hooks.start_container(),
        Phase::Poststart => hooks.poststart(),
        Phase::Poststop => hooks.poststop(),
    };
    list.clone().unwrap_or_default()
}

/// Checks every hook of every phase, so that a bad config.json is refused at
/// create rather than half-way through the lifecycle.
pub fn validate(hooks: Option<&Hooks>) -> Result<(), HookError> {
    for phase in Phase::ALL {
        for (index, hook) in hooks_for(hooks, phase).iter().enumerate() {
            check(hook, phase, index)?;
        }
    }
    Ok(())
}

/// Runs `hooks` in order, each with `state` as JSON on stdin; the first failure
/// stops the phase and is returned.
///
/// The caller must not reap children it did not spawn (e.g. a subreaper's
/// `waitpid(-1)` loop) while this runs, or the hook's exit status is lost.
pub fn run(hooks: &[Hook], phase: Phase, state: &OciState) -> Result<(), HookError> {
    let input = serde_json::to_vec(state).map_err(|source| HookError::State { phase, source })?;
    for (index, hook) in hooks.iter().enumerate() {
        run_one(hook, phase, index, &input)?;
    }
    Ok(())
}

fn check(hook: &Hook, phase: Phase, index: usize) -> Result<(), HookError> {
    let path = hook.path().clone();
    if !path.is_absolute() {
        return Err(HookError::RelativePath { phase, index, path });
    }
    if let Some(timeout) = hook.timeout().filter(|t| *t <= 0) {
        return Err(HookError::InvalidTimeout {
            phase,
            index,
            path,
            timeout,
        });
    }
    // Command can only pass NAME=value pairs; an entry without a name has no
    // meaning under environ(7) semantics, so it is refused rather than dropped.
    let env = hook.env().as_deref().unwrap_or_default();
    let malformed = |e: &&String| e.split_once('=').is_none_or(|(name, _)| name.is_empty());
    if let Some(entry) = env.iter().find(malformed) {
        return Err(HookError::InvalidEnv {
            phase,
            index,
            path,
            entry: entry.clone(),
        });
    }
    Ok(())
}

/// execv semantics: `args` is the whole argv including argv[0]; with no args,
/// argv[0] is the path, as runc does.
fn argv(hook: &Hook) -> (String, Vec<String>) {
    match hook.args().as_deref() {
        Some([arg0, rest @ ..]) => (arg0.clone(), rest.to_vec()),
        _ => (hook.path().to_string_lossy().into_owned(), Vec::new()),
    }
}

fn command(hook: &Hook) -> Command {
    let (arg0, rest) = argv(hook);
    let mut cmd = Command::new(hook.path());
    cmd.arg0(arg0)
        .args(rest)
        // The spec makes `env` the hook's whole environment; the runtime's own
        // variables must not leak into it.
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for entry in hook.env().as_deref().unwrap_or_default() {
        if let Some((name, value)) = entry.split_once('=') {
            cmd.env(name, value);
        }
    }
    cmd
}

fn run_one(hook: &Hook, phase: Phase, index: usize, input: &[u8]) -> Result<(), HookError> {
    check(hook, phase, index)?;
    let path = hook.path().clone();
    let mut child = match command(hook).spawn() {
        Ok(child) => child,
        Err(source) => {
            return Err(HookError::Spawn {
                phase,
                index,
                path,
                source,
            })
        }
    };
    let mut io = HookIo::new(&mut child, input);
    let outcome = match supervise(&mut child, &mut io, hook.timeout()) {
        Ok(outcome) => outcome,
        Err(source) => {
            // Never leave a hook running, or an unreaped zombie, behind an error.
            let _ = child.kill();
            let _ = child.wait();
            return Err(HookError::Wait {
                phase,
                index,
                path,
                source,
            });
        }
    };
    let output = io.output();
    match outcome {
        Outcome::Exited(status) if status.success() => Ok(()),
        Outcome::Exited(status) => Err(HookError::Failed {
            phase,
            index,
            path,
            status,
            output,
        }),
        Outcome::TimedOut(timeout) => Err(HookError::TimedOut {
            phase,
            index,
            path,
            timeout,
            output,
        }),
    }
}

enum Outcome {
    Exited(ExitStatus),
    /// Killed after this many seconds.
    TimedOut(i64),
}

/// Feeds stdin and drains stdout/stderr until the hook exits or its timeout
/// passes; on timeout the hook has been killed and reaped.
fn supervise(child: &mut Child, io: &mut HookIo, timeout: Option<i64>) -> io::Result<Outcome> {
    // A timeout too large for Instant is as good as none.
    let deadline = timeout.and_then(|secs| {
        let at = Instant::now().checked_add(Duration::from_secs(secs.unsigned_abs()))?;
        Some((secs, at))
    });
    let outcome = loop {
        if let Some(status) = child.try_wait()? {
            break Outcome::Exited(status);
        }
        if let Some((secs, _)) = deadline.filter(|(_, at)| Instant::now() >= *at) {
            // Child::kill is SIGKILL to exactly the pid we spawned; the spec asks
            // for nothing broader, and a process group could include others.
            child.kill()?;
            child.wait()?;
            break Outcome::TimedOut(secs);
        }
        io.pump()?;
    };
    // Nobody is left to read stdin; keep what the hook wrote before it died.
    io.pipes[0] = None;
    let grace = Instant::now() + OUTPUT_GRACE;
    while io.pipes[1..].iter().any(Option::is_some) && Instant::now() < grace {
        io.pump()?;
    }
    Ok(outcome)
}

/// Our ends of the hook's stdin, stdout and stderr pipes (in that order),
/// non-blocking; `None` once closed.
struct HookIo<'a> {
    pipes: [Option<File>; 3],
    input: &'a [u8],
    /// Captured stdout and stderr.
    tails: [Tail; 2],
}

impl<'a> HookIo<'a> {
    fn new(child: &mut Child, input: &'a [u8]) -> Self {
        // A pipe we cannot make non-blocking could stall the loop past the
        // deadline, so it is closed instead: the hook sees EOF (stdin) or EPIPE.
        fn nonblocking(end: Option<impl Into<OwnedFd>>) -> Option<File> {
            let file = File::from(end?.into());
            let fd = file.as_raw_fd();
            let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL).ok()?);
            fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).ok()?;
            Some(file)
        }
        let pipes = [
            nonblocking(child.stdin.take()),
            nonblocking(child.stdout.take()),
            nonblocking(child.stderr.take()),
        ];
        let tails = Default::default();
        HookIo {
            pipes,
            input,
            tails,
        }
    }

    /// Waits up to one poll interval for any pipe to be ready and moves data.
    fn pump(&mut self) -> io::Result<()> {
        let open: Vec<usize> = (0..3).filter(|&i| self.pipes[i].is_some()).collect();
        let events = [PollFlags::POLLOUT, PollFlags::POLLIN, PollFlags::POLLIN];
        let mut fds: Vec<PollFd> = (self.pipes.iter().flatten().zip(&open))
            .map(|(pipe, &i)| PollFd::new(pipe.as_fd(), events[i]))
            .collect();
        match poll(&mut fds, PollTimeout::from(POLL_INTERVAL_MS)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
        // POLLHUP/POLLERR count as ready: the read or write then reports them.
        let ready: Vec<usize> = (fds.iter().zip(open))
            .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
            .map(|(_, i)| i)
            .collect();
        for i in ready {
            if i == 0 {
                self.feed();
            } else {
                self.drain(i);
            }
        }
        Ok(())
    }

    fn feed(&mut self) {
        let Some(stdin) = self.pipes[0].as_mut() else {
            return;
        };
        match stdin.write(self.input) {
            Ok(n) => self.input = &self.input[n..],
            Err(e) if transient(&e) => return,
            // EPIPE: the hook does not read its state, which the spec allows.
            // Rust binaries ignore SIGPIPE, so this is an error, not a signal.
            Err(_) => self.input = &[],
        }
        if self.input.is_empty() {
            // Closing is the hook's EOF; `cat` and friends wait for it.
            self.pipes[0] = None;
        }
    }

    fn drain(&mut self, i: usize) {
        let Some(pipe) = self.pipes[i].as_mut() else {
            return;
        };
        let mut buf = [0u8; 8192];
        match pipe.read(&mut buf) {
            Ok(0) => self.pipes[i] = None,
            Ok(n) => self.tails[i - 1].push(&buf[..n]),
            Err(e) if transient(&e) => {}
            // Output is only diagnostics; losing it must not fail the hook.
            Err(_) => self.pipes[i] = None,
        }
    }

    fn output(&self) -> String {
        let parts = self.tails.iter().map(Tail::text).filter(|t| !t.is_empty());
        parts.collect::<Vec<_>>().join("\n")
    }
}

fn transient(e: &io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted)
}

/// The last OUTPUT_LIMIT bytes of a stream, where errors usually are: a chatty
/// hook costs us no memory.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.0.extend_from_slice(chunk);
        let excess = self.0.len().saturating_sub(OUTPUT_LIMIT);
        self.0.drain(..excess);
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0).trim().to_owned()
    }
}

#[cfg(test)]
mod tests;
