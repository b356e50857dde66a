//! Security and process flags of run and create, podman's spellings, and
//! their CreateContainer options. Files a user names (--env-file,
//! --security-opt seccomp=PROFILE.json) are read here, with the user's own
//! permissions, as podman reads them client side: berthd (root) never opens
//! a path a caller names.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clap::Args;
use zbus::zvariant::Value;

use crate::{Failed, Result};

#[derive(Args, Debug, Clone, Default)]
pub struct SecurityOpts {
    /// Add a capability (SYS_ADMIN, CAP_NET_RAW, or ALL), repeatable.
    #[arg(long = "cap-add", value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL), repeatable.
    #[arg(long = "cap-drop", value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// All capabilities, all host devices, no masked paths, no seccomp.
    #[arg(long)]
    pub privileged: bool,
    /// no-new-privileges[=BOOL], seccomp=unconfined|PROFILE.json,
    /// mask=PATH[:PATH…], unmask=PATH[:PATH…]|ALL; repeatable.
    #[arg(long = "security-opt", value_name = "OPT")]
    pub security_opt: Vec<String>,
    /// A supplementary group (a gid, or a name in the image's /etc/group), repeatable.
    #[arg(long = "group-add", value_name = "GID")]
    pub group_add: Vec<String>,
    /// NAME=SOFT[:HARD] (nofile=1024:2048; -1 for unlimited), repeatable.
    #[arg(long = "ulimit", value_name = "NAME=SOFT[:HARD]")]
    pub ulimits: Vec<String>,
    /// A namespaced sysctl KEY=VALUE (net.*, kernel.shm*, fs.mqueue.*…), repeatable.
    #[arg(long = "sysctl", value_name = "KEY=VALUE")]
    pub sysctls: Vec<String>,
    /// An OCI annotation KEY=VALUE, repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// Replace the image's entrypoint: a word, or a JSON array
    /// ('["sh","-c"]'); "" clears it. The image's Cmd is then dropped.
    #[arg(long, value_name = "CMD")]
    pub entrypoint: Option<String>,
    /// The signal `berthctl stop` sends first (default SIGTERM).
    #[arg(long = "stop-signal", value_name = "SIGNAL")]
    pub stop_signal: Option<String>,
    /// Seconds `berthctl stop` waits before SIGKILL (default 10).
    #[arg(long = "stop-timeout", value_name = "SECONDS")]
    pub stop_timeout: Option<u32>,
    /// Read NAME=VALUE lines from a file into the environment, repeatable
    /// (-e wins over them).
    #[arg(long = "env-file", value_name = "FILE")]
    pub env_files: Vec<PathBuf>,
    /// Run a reaper (catatonit, copied in) as pid 1, the command its child.
    #[arg(long)]
    pub init: bool,
}

/// `--entrypoint` as podman reads it: a JSON array, or one word.
pub fn parse_entrypoint(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    if s.trim_start().starts_with('[') {
        if let Ok(list) = serde_json::from_str::<Vec<String>>(s) {
            return list;
        }
    }
    vec![s.to_string()]
}

/// An env file as podman and docker read it: NAME=VALUE lines, `#`
/// comments and blank lines skipped, a bare NAME taking the caller's value
/// (left out when the caller has none).
pub fn read_env_file(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failed::new(format!("--env-file {}: {e}", path.display())))?;
    let mut env = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some(("", _)) => {
                return Err(Failed::new(format!(
                    "--env-file {}:{}: no variable name",
                    path.display(),
                    n + 1
                )))
            }
            Some(_) => env.push(line.to_string()),
            None => {
                if let Ok(v) = std::env::var(line.trim_end()) {
                    env.push(format!("{}={v}", line.trim_end()));
                }
            }
        }
    }
    Ok(env)
}

/// The labels berthd keeps --stop-signal and --stop-timeout as.
const STOP_SIGNAL_LABEL: &str = "io.berth.stop-signal";
const STOP_TIMEOUT_LABEL: &str = "io.berth.stop-timeout";

/// A container's stop signal and timeout as created (SIGTERM and none when
/// not given, or when it cannot be read: stop still stops).
pub fn stop_defaults(m: &berth_client::ManagerProxyBlocking, id: &str) -> (i32, Option<u64>) {
    // The container's object is on the bus only (not on berthd's private
    // socket, where `m` may be).
    let on_bus = m.inner().connection().unique_name().is_some();
    let bus = match on_bus {
        true => Some(m.inner().connection().clone()),
        false => zbus::blocking::Connection::system().ok(),
    };
    let labels = m.get_container(id).ok().and_then(|path| {
        berth_client::ContainerProxyBlocking::builder(bus.as_ref()?)
            .path(path)
            .ok()?
            .build()
            .ok()?
            .labels()
            .ok()
    });
    let label = |k: &str| labels.as_ref().and_then(|l| l.get(k).cloned());
    (
        label(STOP_SIGNAL_LABEL)
            .and_then(|s| s.parse().ok())
            .unwrap_or(libc::SIGTERM),
        label(STOP_TIMEOUT_LABEL).and_then(|s| s.parse().ok()),
    )
}

fn key_value_map(list: &[String], what: &str) -> Result<HashMap<String, String>> {
    crate::session::key_values(list, what)
}

impl SecurityOpts {
    /// The environment from --env-file, in order (later files win).
    pub fn file_env(&self) -> Result<Vec<String>> {
        let mut env = Vec::new();
        for f in &self.env_files {
            env.extend(read_env_file(f)?);
        }
        Ok(env)
    }

    /// Into CreateContainer's options; berthd checks the values.
    pub fn insert_into(&self, o: &mut HashMap<&'static str, Value<'static>>) -> Result<()> {
        let lists = [
            ("cap_add", &self.cap_add),
            ("cap_drop", &self.cap_drop),
            ("group_add", &self.group_add),
            ("ulimits", &self.ulimits),
        ];
        for (key, list) in lists {
            if !list.is_empty() {
                o.insert(key, Value::from(list.clone()));
            }
        }
        if self.privileged {
            o.insert("privileged", Value::from(true));
        }
        if self.init {
            o.insert("init", Value::from(true));
        }
        let mut opts = Vec::new();
        for opt in &self.security_opt {
            match opt.split_once(['=', ':']) {
                Some(("seccomp", p)) if p != "unconfined" => {
                    let text = std::fs::read_to_string(p)
                        .map_err(|e| Failed::new(format!("--security-opt seccomp={p}: {e}")))?;
                    o.insert("seccomp_profile", Value::from(text));
                }
                _ => opts.push(opt.clone()),
            }
        }
        if !opts.is_empty() {
            o.insert("security_opt", Value::from(opts));
        }
        if !self.sysctls.is_empty() {
            o.insert(
                "sysctls",
                Value::from(key_value_map(&self.sysctls, "sysctl")?),
            );
        }
        if !self.annotations.is_empty() {
            o.insert(
                "annotations",
                Value::from(key_value_map(&self.annotations, "annotation")?),
            );
        }
        if let Some(e) = &self.entrypoint {
            o.insert("entrypoint", Value::from(parse_entrypoint(e)));
        }
        if let Some(s) = &self.stop_signal {
            o.insert("stop_signal", Value::from(s.clone()));
        }
        if let Some(t) = self.stop_timeout {
            o.insert("stop_timeout", Value::from(t));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entrypoints() {
        assert_eq!(parse_entrypoint("/bin/app"), ["/bin/app"]);
        assert_eq!(parse_entrypoint(r#"["sh","-c"]"#), ["sh", "-c"]);
        assert!(parse_entrypoint("").is_empty());
    }

    #[test]
    fn env_files() {
        let dir = std::env::temp_dir().join(format!("berth-envfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("env");
        std::env::set_var("BERTH_ENVFILE_TEST", "from-caller");
        std::fs::write(
            &f,
            "# c\nA=1\n\nB=two words\nBERTH_ENVFILE_TEST\nUNSET_BERTH_X\n",
        )
        .unwrap();
        assert_eq!(
            read_env_file(&f).unwrap(),
            ["A=1", "B=two words", "BERTH_ENVFILE_TEST=from-caller"]
        );
        std::fs::write(&f, "=x\n").unwrap();
        assert!(read_env_file(&f).unwrap_err().msg.contains(":1:"));
        assert!(read_env_file(&dir.join("none")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
