//! A small D-Bus client for systemd's private socket (/run/systemd/private),
//! for the calls on a container's create and delete path: StartTransientUnit,
//! StopUnit, KillUnit, ResetFailedUnit, and the JobRemoved of their jobs.
//!
//! Why: over the system bus each of those calls crosses dbus-daemon twice,
//! and systemd itself asks dbus-daemon about the caller (its uid, a match on
//! its name, the name's owner) before it answers a job request. The private
//! socket is systemd's own listener for root (systemctl and systemd-run use
//! it): no dbus-daemon, no Hello, no such round trips. A scope's start and
//! stop take about half as long there (docs/performance.md).
//!
//! Why not zbus: zbus 5 refuses the messages systemd sends there (their
//! sender is the well-known name, where zbus expects a unique one, and it
//! panics reconstructing the header). zbus still serializes our calls and
//! zvariant reads the headers and bodies; only the framing is ours.
//!
//! Shape: one writer (calls go out under a lock, with their serial), one
//! reader thread that files each reply under its serial and each JobRemoved
//! of a job we asked for under its path (`inbox`: the framing and the
//! filing), and callers that wait (bounded) on a condition variable. systemd sends every unit and job signal of the host
//! to every private connection; the reader drops all but ours.

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::num::NonZeroU32;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use zbus::zvariant::DynamicType;

mod inbox;
use inbox::{file, read_message, take_results, Expect, Reply, State};

/// Where systemd listens for root's private connections.
pub const SOCKET: &str = "/run/systemd/private";
/// The bound on a reply (zbus's default method timeout).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(25);
/// The bound on systemd's answer to our authentication.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);

const MANAGER: &str = "org.freedesktop.systemd1.Manager";
const MANAGER_PATH: &str = "/org/freedesktop/systemd1";

/// What can go wrong on the private connection.
#[derive(Debug, thiserror::Error)]
pub enum PrivateBusError {
    #[error("connecting to systemd's private socket {SOCKET}: {0}")]
    Connect(#[source] std::io::Error),
    #[error("systemd's private socket refused authentication: {0:?}")]
    Auth(String),
    #[error("writing to systemd's private socket: {0}")]
    Write(#[source] std::io::Error),
    #[error("systemd's private connection closed ({0}); the next call reconnects")]
    Closed(String),
    #[error("{name}: {message}")]
    Method { name: String, message: String },
    #[error("encoding the call {member}: {source}")]
    Encode {
        member: &'static str,
        /// Boxed: zbus::Error is large.
        #[source]
        source: Box<zbus::Error>,
    },
    #[error("systemd did not answer {member} within {waited:?}")]
    NoReply {
        member: &'static str,
        waited: Duration,
    },
    #[error("systemd's answer to {member}: {reason}")]
    BadReply {
        member: &'static str,
        reason: String,
    },
}

impl PrivateBusError {
    /// The D-Bus error name of an error reply.
    pub fn name(&self) -> Option<&str> {
        match self {
            PrivateBusError::Method { name, .. } => Some(name),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, PrivateBusError>;

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits on the condition until `take` yields or `deadline` passes.
    fn wait_for<T>(
        &self,
        deadline: Instant,
        mut take: impl FnMut(&mut State) -> Option<Result<T>>,
    ) -> Option<Result<T>> {
        let mut state = self.lock();
        loop {
            if let Some(done) = take(&mut state) {
                return Some(done);
            }
            if let Some(why) = &state.closed {
                return Some(Err(PrivateBusError::Closed(why.clone())));
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// One connection to systemd's private socket.
pub struct PrivateBus {
    writer: Mutex<(UnixStream, u32)>,
    shared: Arc<Shared>,
}

impl PrivateBus {
    /// Connects and authenticates as this process's uid (systemd accepts
    /// root only there), and starts the reader thread.
    pub fn connect(socket: &Path) -> Result<PrivateBus> {
        Self::connect_within(socket, AUTH_TIMEOUT)
    }

    fn connect_within(socket: &Path, auth_timeout: Duration) -> Result<PrivateBus> {
        let stream = UnixStream::connect(socket).map_err(PrivateBusError::Connect)?;
        // A systemd that accepts but does not answer (busy re-executing)
        // must not hold the caller: bounded until authenticated.
        stream
            .set_read_timeout(Some(auth_timeout))
            .map_err(PrivateBusError::Connect)?;
        let mut reader = BufReader::new(stream.try_clone().map_err(PrivateBusError::Connect)?);
        let mut writer = stream;
        let uid: String = nix::unistd::geteuid()
            .as_raw()
            .to_string()
            .bytes()
            .map(|b| format!("{b:02x}"))
            .collect();
        // The credentials byte, then SASL EXTERNAL with the uid in hex.
        writer
            .write_all(format!("\0AUTH EXTERNAL {uid}\r\n").as_bytes())
            .map_err(PrivateBusError::Connect)?;
        let mut line = String::new();
        reader
            .read_line(&mut line)
            .map_err(PrivateBusError::Connect)?;
        if !line.starts_with("OK ") {
            return Err(PrivateBusError::Auth(line.trim_end().into()));
        }
        writer
            .write_all(b"BEGIN\r\n")
            .map_err(PrivateBusError::Connect)?;
        writer
            .set_read_timeout(None)
            .map_err(PrivateBusError::Connect)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let for_reader = shared.clone();
        thread::Builder::new()
            .name("systemd-private".into())
            .spawn(move || read_loop(reader, &for_reader))
            .map_err(PrivateBusError::Connect)?;
        Ok(PrivateBus {
            writer: Mutex::new((writer, 0)),
            shared,
        })
    }

    /// True once the connection ended (systemd re-executed, say).
    pub fn is_closed(&self) -> bool {
        self.shared.lock().closed.is_some()
    }

    /// Sends a Manager call; `expect` None: no reply wanted. The serial.
    fn send<B>(&self, member: &'static str, body: &B, expect: Option<Expect>) -> Result<u32>
    where
        B: serde::Serialize + DynamicType,
    {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let serial = writer.1.checked_add(1).unwrap_or(1);
        writer.1 = serial;
        let encode = |source| PrivateBusError::Encode {
            member,
            source: Box::new(source),
        };
        let mut call = zbus::Message::method_call(MANAGER_PATH, member)
            .and_then(|b| b.interface(MANAGER))
            .and_then(|b| b.destination("org.freedesktop.systemd1"))
            .map_err(encode)?
            .serial(NonZeroU32::new(serial).unwrap_or(NonZeroU32::MIN));
        if expect.is_none() {
            call = call
                .with_flags(zbus::message::Flags::NoReplyExpected)
                .map_err(encode)?;
        }
        let message = call.build(body).map_err(encode)?;
        {
            let mut state = self.shared.lock();
            if let Some(why) = &state.closed {
                // Not sent: the caller may make the call elsewhere.
                let e = std::io::Error::new(std::io::ErrorKind::BrokenPipe, why.clone());
                return Err(PrivateBusError::Write(e));
            }
            if let Some(expect) = expect {
                state.expected.insert(serial, expect);
            }
        }
        if let Err(e) = writer.0.write_all(message.data().bytes()) {
            // The connection is done for: the next user reconnects even if
            // the reader has not seen its end yet.
            let mut state = self.shared.lock();
            state.expected.remove(&serial);
            state.closed.get_or_insert_with(|| format!("writing: {e}"));
            drop(state);
            self.shared.changed.notify_all();
            return Err(PrivateBusError::Write(e));
        }
        Ok(serial)
    }

    /// Waits for the reply to `serial`.
    fn reply(&self, member: &'static str, serial: u32) -> Result<Option<String>> {
        let deadline = Instant::now() + REPLY_TIMEOUT;
        let got = self.shared.wait_for(deadline, |s| {
            s.replies.remove(&serial).map(|r| match r {
                Reply::Return(job) => Ok(job),
                Reply::Error { name, message } => Err(PrivateBusError::Method { name, message }),
            })
        });
        got.unwrap_or_else(|| {
            let mut state = self.shared.lock();
            state.expected.remove(&serial);
            state.replies.remove(&serial);
            Err(PrivateBusError::NoReply {
                member,
                waited: REPLY_TIMEOUT,
            })
        })
    }

    /// A call that makes a job (StartTransientUnit, StopUnit): its path.
    /// Its JobRemoved is kept until [`wait_jobs`](Self::wait_jobs) takes it.
    pub fn call_job<B>(&self, member: &'static str, body: &B) -> Result<String>
    where
        B: serde::Serialize + DynamicType,
    {
        let serial = self.send(member, body, Some(Expect::Job))?;
        self.reply(member, serial)?
            .ok_or_else(|| PrivateBusError::BadReply {
                member,
                reason: "no job path".into(),
            })
    }

    /// A call whose reply carries nothing we need; waits for it.
    pub fn call<B>(&self, member: &'static str, body: &B) -> Result<()>
    where
        B: serde::Serialize + DynamicType,
    {
        let serial = self.send(member, body, Some(Expect::Nothing))?;
        self.reply(member, serial).map(drop)
    }

    /// A call sent without waiting for (or getting) a reply. systemd handles
    /// one connection's calls in order, so it is done before the next one.
    pub fn call_noreply<B>(&self, member: &'static str, body: &B) -> Result<()>
    where
        B: serde::Serialize + DynamicType,
    {
        self.send(member, body, None).map(drop)
    }

    /// Waits until each of `jobs` (paths [`call_job`](Self::call_job) gave)
    /// is removed, or `deadline`: each one's result ("done", "failed", …),
    /// None for the ones still running at the deadline.
    pub fn wait_jobs(&self, jobs: &[&str], deadline: Instant) -> Result<Vec<Option<String>>> {
        let all_removed = |s: &mut State| {
            jobs.iter()
                .all(|j| s.jobs.get(*j).is_none_or(|slot| slot.result.is_some()))
                .then_some(Ok(()))
        };
        let finished = self.shared.wait_for(deadline, all_removed);
        let results = take_results(&mut self.shared.lock(), jobs);
        match finished {
            Some(Err(e)) => Err(e),
            _ => Ok(results),
        }
    }
}

impl Drop for PrivateBus {
    fn drop(&mut self) {
        // Ends the reader thread (its read fails).
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writer.0.shutdown(Shutdown::Both);
    }
}

/// The reader thread: files every message until the connection ends.
fn read_loop(mut reader: BufReader<UnixStream>, shared: &Shared) {
    let why = loop {
        match read_message(&mut reader) {
            Ok(message) => {
                let mut state = shared.lock();
                if file(&mut state, &message) {
                    drop(state);
                    shared.changed.notify_all();
                }
            }
            Err(e) => break e,
        }
    };
    shared.lock().closed = Some(why);
    shared.changed.notify_all();
}

#[cfg(test)]
mod tests;
