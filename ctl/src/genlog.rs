//! Where berth-generator's complaints go. Generators run while systemd is
//! (re)loading and their stdout/stderr are not reliably anyone's: at a
//! daemon-reload journald is up and takes a native entry (with the file and
//! line as fields, `journalctl -t berth-generator`); early at boot it is not,
//! and /dev/kmsg is what journald reads back later. stderr gets a copy for
//! whoever runs the generator by hand.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;

const JOURNAL: &str = "/run/systemd/journal/socket";
const IDENT: &str = "berth-generator";

/// Logs `message` about `file` (and `line`) at priority 3 (err).
pub fn error(message: &str, file: &Path, line: Option<usize>) {
    eprintln!("{IDENT}: {message}");
    if !to_journal(message, file, line) {
        to_kmsg(message);
    }
}

/// A native journal entry; MESSAGE in the binary form, since toml's errors
/// span lines.
fn to_journal(message: &str, file: &Path, line: Option<usize>) -> bool {
    let mut e = Vec::new();
    let _ = write!(e, "PRIORITY=3\nSYSLOG_IDENTIFIER={IDENT}\n");
    let _ = writeln!(
        e,
        "CONFIG_FILE={}",
        file.display().to_string().replace('\n', " ")
    );
    if let Some(line) = line {
        let _ = writeln!(e, "CONFIG_LINE={line}");
    }
    e.extend_from_slice(b"MESSAGE\n");
    e.extend_from_slice(&(message.len() as u64).to_le_bytes());
    e.extend_from_slice(message.as_bytes());
    e.push(b'\n');
    UnixDatagram::unbound()
        .and_then(|s| s.send_to(&e, JOURNAL))
        .is_ok()
}

fn to_kmsg(message: &str) {
    if let Ok(mut k) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        // One record per line, as the kernel log is line based.
        for l in message.lines() {
            let _ = k.write_all(format!("<3>{IDENT}: {l}\n").as_bytes());
        }
    }
}
