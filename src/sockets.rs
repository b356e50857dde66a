//! Socket activation: listening fds a caller hands over with CreateContainer
//! (`listen_fds` ah, `listen_fdnames` as — berthctl run-unit passes on what
//! systemd gave its unit) reach the container's process as fds 3, 4, … with
//! LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID=1 (the process is pid 1 of its
//! own pid namespace), sd_listen_fds(3)'s protocol. So a container with no
//! network of its own serves a port its host's systemd owns.
//!
//! The path: D-Bus message → berthd (here, owned) → the shim's fds 3.. at
//! its exec (pass_to) → berth-init's --preserve-fds (runc's), which leaves
//! 3..3+N open in the container and closes every other fd before execve.

use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::Arc;

use zbus::zvariant::{OwnedValue, Value};

/// systemd's own cap is far above; a D-Bus message carries at most a few
/// hundred fds (dbus-daemon's max_message_unix_fds), and a container more
/// than this would have to be a very unusual server.
pub const MAX_LISTEN_FDS: usize = 64;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListenError {
    #[error("option listen_fds must be ah with 1-{MAX_LISTEN_FDS} fds")]
    Fds,
    #[error("option listen_fdnames must be as, one name per fd (printable, no ':', ≤ 255 bytes)")]
    Names,
}

/// The fds to pass, shared (an Arc: CreateOptions is cloned on its way).
#[derive(Clone, Default)]
pub struct ListenFds {
    fds: Arc<Vec<OwnedFd>>,
    names: Vec<String>,
}

impl std::fmt::Debug for ListenFds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ListenFds({} fds, {:?})", self.fds.len(), self.names)
    }
}

/// Equal when they would set the same environment (fds have no equality
/// worth the name).
impl PartialEq for ListenFds {
    fn eq(&self, other: &Self) -> bool {
        self.fds.len() == other.fds.len() && self.names == other.names
    }
}

impl ListenFds {
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// Fds to pass as they are, with no socket-activation environment
    /// (ExecContainer's stdin_fd/stdout_fd/stderr_fd: execs.rs).
    pub fn passing(fds: Vec<OwnedFd>) -> Self {
        ListenFds {
            fds: Arc::new(fds),
            names: Vec::new(),
        }
    }

    /// Takes `listen_fds` (ah): each fd is our own copy (the message's are
    /// the message's).
    pub fn set_fds(&mut self, value: &OwnedValue) -> Result<(), ListenError> {
        let Value::Array(array) = &**value else {
            return Err(ListenError::Fds);
        };
        if array.is_empty() || array.len() > MAX_LISTEN_FDS {
            return Err(ListenError::Fds);
        }
        let fds = array
            .iter()
            .map(|v| match v {
                Value::Fd(fd) => {
                    // zbus received it without close-on-exec: any process
                    // berthd spawns while the message lives would inherit
                    // it (shims close strays too, at their start).
                    let _ = nix::fcntl::fcntl(
                        fd.as_raw_fd(),
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                    );
                    fd.as_fd()
                        .try_clone_to_owned()
                        .map_err(|_| ListenError::Fds)
                }
                _ => Err(ListenError::Fds),
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.fds = Arc::new(fds);
        Ok(())
    }

    /// Takes `listen_fdnames` (as).
    pub fn set_names(&mut self, value: &OwnedValue) -> Result<(), ListenError> {
        let names: Vec<String> = value
            .try_clone()
            .ok()
            .and_then(|v| v.try_into().ok())
            .ok_or(ListenError::Names)?;
        let ok = |n: &String| {
            !n.is_empty() && n.len() <= 255 && n.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        };
        if names.len() > MAX_LISTEN_FDS || !names.iter().all(ok) {
            return Err(ListenError::Names);
        }
        self.names = names;
        Ok(())
    }

    /// The environment the container's process gets; checked once every
    /// option is in (names without fds, or a count that differs, refused).
    pub fn env(&self) -> Result<Vec<String>, ListenError> {
        if self.fds.is_empty() {
            return match self.names.is_empty() {
                true => Ok(Vec::new()),
                false => Err(ListenError::Names),
            };
        }
        let mut env = vec![
            format!("LISTEN_FDS={}", self.fds.len()),
            "LISTEN_PID=1".to_string(),
        ];
        match self.names.len() {
            0 => {}
            n if n == self.fds.len() => {
                env.push(format!("LISTEN_FDNAMES={}", self.names.join(":")))
            }
            _ => return Err(ListenError::Names),
        }
        Ok(env)
    }

    /// Arranges for `cmd`'s process to get the fds as 3, 4, …. The copies
    /// returned must stay open until the process has been spawned.
    pub fn pass_to(&self, cmd: &mut tokio::process::Command) -> std::io::Result<Vec<OwnedFd>> {
        if self.fds.is_empty() {
            return Ok(Vec::new());
        }
        // Copies numbered past 3+N, close-on-exec: the child's dup2 into
        // 3.. can then never overwrite a copy it has yet to move, and no
        // other child berthd spawns meanwhile inherits one.
        let first_free = (3 + self.fds.len()) as RawFd;
        let high = self
            .fds
            .iter()
            .map(|fd| {
                nix::fcntl::fcntl(
                    fd.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(first_free),
                )
                .map_err(std::io::Error::from)
                // SAFETY: a fresh fd fcntl just made; owned from here.
                .map(|raw| unsafe { std::os::fd::FromRawFd::from_raw_fd(raw) })
            })
            .collect::<std::io::Result<Vec<OwnedFd>>>()?;
        let raw: Vec<RawFd> = high.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: runs in the forked child before exec, where only
        // async-signal-safe calls are allowed: dup2 is, and nothing here
        // allocates (`raw` was built before the fork). dup2's copies are not
        // close-on-exec: the shim keeps them across its exec.
        unsafe {
            cmd.pre_exec(move || {
                for (i, fd) in raw.iter().enumerate() {
                    if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        Ok(high)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fds(n: usize) -> OwnedValue {
        let v: Vec<zbus::zvariant::Fd<'static>> = (0..n)
            .map(|_| {
                let f: OwnedFd = std::fs::File::open("/dev/null").unwrap().into();
                zbus::zvariant::Fd::from(f)
            })
            .collect();
        Value::from(v).try_into().unwrap()
    }

    #[test]
    fn environment_follows_the_fds_and_names() {
        let mut l = ListenFds::default();
        assert_eq!(l.env().unwrap(), Vec::<String>::new());
        l.set_fds(&fds(2)).unwrap();
        assert_eq!(l.env().unwrap(), ["LISTEN_FDS=2", "LISTEN_PID=1"]);
        l.set_names(&Value::from(vec!["http", "https"]).try_into().unwrap())
            .unwrap();
        assert_eq!(l.env().unwrap()[2], "LISTEN_FDNAMES=http:https");
        l.set_names(&Value::from(vec!["one"]).try_into().unwrap())
            .unwrap();
        assert_eq!(l.env(), Err(ListenError::Names));
    }

    #[test]
    fn refusals() {
        let mut l = ListenFds::default();
        assert_eq!(l.set_fds(&fds(0)), Err(ListenError::Fds));
        assert_eq!(l.set_fds(&fds(MAX_LISTEN_FDS + 1)), Err(ListenError::Fds));
        assert_eq!(
            l.set_fds(&Value::from("x").try_into().unwrap()),
            Err(ListenError::Fds)
        );
        let bad = Value::from(vec!["a:b"]).try_into().unwrap();
        assert_eq!(l.set_names(&bad), Err(ListenError::Names));
        l.set_names(&Value::from(vec!["web"]).try_into().unwrap())
            .unwrap();
        assert_eq!(l.env(), Err(ListenError::Names), "names without fds");
    }
}
