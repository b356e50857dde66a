//! The CRI log file (kubelet's format, what `kubectl logs` and `crictl logs`
//! read): one line per output line or piece,
//! `<RFC3339Nano time> <stdout|stderr> <F|P> <text>`, F for a full line and
//! P for a piece of a longer one. Written besides journald, never instead.
//! The kubelet rotates the file by renaming it and then asking for a new one
//! (ReopenContainerLog → SIGUSR1 to this process → [`CriLog::reopen`]).

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

pub struct CriLog {
    path: PathBuf,
    file: Option<File>,
    buf: Vec<u8>,
}

impl CriLog {
    /// Opens (creating) `path` for appending; a failure leaves the monitor
    /// running with journald only, and the next reopen tries again.
    pub fn open(path: PathBuf) -> CriLog {
        let mut l = CriLog {
            path,
            file: None,
            buf: Vec::new(),
        };
        l.reopen();
        l
    }

    /// A new file at the path (the old one was renamed away by the kubelet's
    /// rotation). The last component is never followed if it is a symlink.
    pub fn reopen(&mut self) {
        self.file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o640)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(&self.path)
            .ok();
    }

    /// One line (or piece) of the stream with syslog `priority` (3: stderr).
    pub fn write(&mut self, line: &[u8], priority: u8, partial: bool) {
        let Some(f) = &mut self.file else { return };
        self.buf.clear();
        self.buf.extend_from_slice(rfc3339_nano_now().as_bytes());
        self.buf.extend_from_slice(match priority {
            3 => b" stderr ",
            _ => b" stdout ",
        });
        self.buf
            .extend_from_slice(if partial { b"P " } else { b"F " });
        self.buf.extend_from_slice(line);
        self.buf.push(b'\n');
        // One write(2) per line: O_APPEND keeps lines whole for readers.
        let _ = f.write_all(&self.buf);
        if self.buf.capacity() > 64 * 1024 {
            self.buf = Vec::new();
        }
    }
}

/// Now in UTC as RFC 3339 with nanoseconds (Go's time.RFC3339Nano, which
/// the kubelet parses): 2026-12-05T04:30:00.123456789Z.
fn rfc3339_nano_now() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format_utc(now.as_secs(), now.subsec_nanos())
}

pub fn format_utc(secs: u64, nanos: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day): Howard Hinnant's
/// civil_from_days (proleptic Gregorian, exact for every u64 second here).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_as_go_formats_them() {
        assert_eq!(format_utc(0, 0), "1970-01-01T00:00:00.000000000Z");
        // date -u -d @1796445000 → 2026-12-05T04:30:00Z
        assert_eq!(
            format_utc(1_796_445_000, 5),
            "2026-12-05T04:30:00.000000005Z"
        );
        assert_eq!(format_utc(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn lines_in_cri_format_and_reopen_after_rotation() {
        let dir = std::env::temp_dir().join(format!("crilog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("0.log");
        let mut l = CriLog::open(path.clone());
        l.write(b"hello", 6, false);
        l.write(b"par", 3, true);
        std::fs::rename(&path, dir.join("0.log.1")).unwrap();
        l.reopen();
        l.write(b"after", 6, false);
        let old = std::fs::read_to_string(dir.join("0.log.1")).unwrap();
        let lines: Vec<&str> = old.lines().collect();
        assert!(lines[0].ends_with("Z stdout F hello"), "{old}");
        assert!(lines[1].ends_with("Z stderr P par"), "{old}");
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(new.ends_with(" stdout F after\n"), "{new}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
