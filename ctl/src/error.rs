//! berthctl's failures and podman's exit codes: 125 when berthctl or berthd
//! failed, 126 when the container's program cannot be executed, 127 when it
//! is not there; anything else is the container's own code.

/// berthctl (or berthd, or the command line) failed.
pub const EXIT_FAILED: u8 = 125;

/// The program exists but cannot be executed (permission, a directory).
pub const EXIT_CANNOT_EXECUTE: u8 = 126;

/// The container's program is not there.
pub const EXIT_NOT_FOUND: u8 = 127;

/// A command's failure: one line for a person, and berthctl's exit code.
#[derive(Debug)]
pub struct Failed {
    pub msg: String,
    pub code: u8,
}

impl Failed {
    pub fn new(msg: impl Into<String>) -> Failed {
        Failed {
            msg: msg.into(),
            code: EXIT_FAILED,
        }
    }
}

/// berth-init's NotExecutable texts are runc's (Go's exec.LookPath), which
/// podman maps onto 126 or 127 by the same words.
fn not_executable_code(msg: &str) -> u8 {
    if msg.contains("permission denied") || msg.contains("is a directory") {
        EXIT_CANNOT_EXECUTE
    } else {
        EXIT_NOT_FOUND
    }
}

impl From<zbus::Error> for Failed {
    fn from(e: zbus::Error) -> Self {
        let code = match &e {
            zbus::Error::MethodError(name, msg, _)
                if name.as_str() == "io.berth.Berth1.Error.NotExecutable" =>
            {
                not_executable_code(msg.as_deref().unwrap_or_default())
            }
            _ => EXIT_FAILED,
        };
        Failed {
            msg: berth_client::describe(&e),
            code,
        }
    }
}

pub type Result<T> = std::result::Result<T, Failed>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_executable_maps_as_podman() {
        let f = |m: &str| not_executable_code(m);
        assert_eq!(f("exec: \"x\": executable file not found in $PATH"), 127);
        assert_eq!(f("exec: \"/x\": stat /x: no such file or directory"), 127);
        assert_eq!(f("exec: \"/etc/passwd\": permission denied"), 126);
        assert_eq!(f("exec: \"/etc\": is a directory"), 126);
    }
}
