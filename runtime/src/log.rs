//! Errors in runc's style: `time="…" level=error msg="…"` on stderr (logrus
//! text), and in the --log file as text or JSON, which is what conmon and
//! containerd parse.

use std::io::Write;
use std::path::PathBuf;

pub struct Logger {
    file: Option<PathBuf>,
    json: bool,
}

impl Logger {
    pub fn new(file: Option<PathBuf>, format: &str) -> Self {
        Logger {
            file,
            json: format == "json",
        }
    }

    pub fn error(&self, msg: &str) {
        let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let text = format!("time={time:?} level=error msg={msg:?}\n");
        let _ = std::io::stderr().write_all(text.as_bytes());
        if let Some(path) = &self.file {
            let line = if self.json {
                let v = serde_json::json!({"level": "error", "msg": msg, "time": time});
                format!("{v}\n")
            } else {
                text
            };
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}
