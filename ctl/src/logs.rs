//! `berthctl logs`: the container's output from the journal (berthd runs
//! journalctl and hands us the pipe), with podman's -f, -n, --since,
//! --until and -t.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::OwnedFd;

use zbus::zvariant::Value;

use crate::cli::LogsOpts;
use crate::{manager, when, Result};

/// journalctl's short-iso-precise line is "TIME HOST IDENT[PID]: MESSAGE";
/// podman's --timestamps line is "TIME MESSAGE".
fn time_and_message(line: &str) -> String {
    let Some((time, rest)) = line.split_once(' ') else {
        return line.to_string();
    };
    let message = rest
        .split_once(' ')
        .and_then(|(_host, r)| r.split_once(": "))
        .map_or(rest, |(_ident, m)| m);
    format!("{time} {message}")
}

pub fn logs(opts: &LogsOpts) -> Result<u8> {
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("follow", Value::from(opts.follow));
    if let Some(n) = opts.tail {
        o.insert("tail", Value::from(n));
    }
    if let Some(s) = &opts.since {
        o.insert("since", Value::from(when::parse_time(s)?));
    }
    if let Some(u) = &opts.until {
        o.insert("until", Value::from(when::parse_time(u)?));
    }
    if opts.timestamps {
        o.insert("timestamps", Value::from(true));
    }
    let m = manager()?;
    let fd: OwnedFd = m.get_logs(&opts.id, o)?.into();
    let pipe = std::fs::File::from(fd);
    let mut out = std::io::stdout().lock();
    if opts.timestamps {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if writeln!(out, "{}", time_and_message(&line))
                .and_then(|_| out.flush())
                .is_err()
            {
                break;
            }
        }
        return Ok(0);
    }
    let mut pipe = pipe;
    let mut buf = [0u8; 16384];
    while let Ok(n) = pipe.read(&mut buf) {
        if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
            break;
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_keep_the_time_and_the_message() {
        assert_eq!(
            time_and_message("2024-05-01T10:00:00.123456+0000 box web[42]: a: b"),
            "2024-05-01T10:00:00.123456+0000 a: b"
        );
        assert_eq!(time_and_message("odd"), "odd");
    }
}
