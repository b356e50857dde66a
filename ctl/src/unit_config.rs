//! /etc/berth/containers/NAME.toml: what a container unit runs. One parser
//! for its two readers: `berthctl run-unit NAME` (the main process of
//! berth@NAME.service and of the generated berth-NAME.service) and
//! berth-generator, which reads only `[unit]` and `[install]`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// NAME.toml: `bundle` or `image`, the rest optional. Unknown keys are
/// errors, so a typo does not silently do nothing.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct UnitConfig {
    /// OCI bundle directory.
    pub bundle: Option<PathBuf>,
    /// An image in berthd's store (berthctl image pull/import).
    pub image: Option<String>,
    /// For an image: uid[:gid] or name[:group].
    pub user: Option<String>,
    /// Replaces the bundle's process.args (the image's Cmd).
    #[serde(default)]
    pub command: Vec<String>,
    #[serde(default)]
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// "64m", "1g", or bytes.
    pub memory: Option<String>,
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The container sends READY=1 itself (NOTIFY_SOCKET is set inside).
    #[serde(default)]
    pub notify: bool,
    /// Seconds between SIGTERM and SIGKILL on stop (default 10).
    pub stop_timeout: Option<u64>,
    /// berth (default for images), none, host, container:ID, a network.
    pub network: Option<String>,
    /// Published ports, as `-p` takes them.
    #[serde(default)]
    pub ports: Vec<String>,
    pub hostname: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub dns_search: Vec<String>,
    /// NAME:IP lines for /etc/hosts.
    #[serde(default)]
    pub add_hosts: Vec<String>,
    /// The pid, IPC and UTS namespaces: private, host, or container:ID.
    pub pid: Option<String>,
    pub ipc: Option<String>,
    pub uts: Option<String>,
    /// Security and process options, as berthctl run's flags (podman's).
    #[serde(default)]
    pub cap_add: Vec<String>,
    #[serde(default)]
    pub cap_drop: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    /// no-new-privileges, seccomp=unconfined|PROFILE.json, mask=, unmask=.
    #[serde(default)]
    pub security_opt: Vec<String>,
    #[serde(default)]
    pub group_add: Vec<String>,
    /// NAME=SOFT[:HARD], as --ulimit.
    #[serde(default)]
    pub ulimits: Vec<String>,
    /// Namespaced sysctls only.
    #[serde(default)]
    pub sysctls: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Replaces the image's Entrypoint (and drops its Cmd).
    pub entrypoint: Option<Vec<String>>,
    /// The signal the unit's stop sends first (default SIGTERM).
    pub stop_signal: Option<String>,
    /// NAME=VALUE files read into env (env wins over them).
    #[serde(default)]
    pub env_file: Vec<PathBuf>,
    /// catatonit as pid 1 (reaps, forwards signals).
    #[serde(default)]
    pub init: bool,
    /// The health check (berthctl run's --health-*; durations as "30s").
    /// A unit's restarts are systemd's Restart=, not a restart policy.
    pub health_cmd: Option<String>,
    pub health_interval: Option<String>,
    pub health_retries: Option<u32>,
    pub health_start_period: Option<String>,
    pub health_timeout: Option<String>,
    /// none, kill, restart, stop.
    pub health_on_failure: Option<String>,
    /// `-v` entries: SRC:DST[:OPTS] (a host path or a named volume).
    #[serde(default)]
    pub volumes: Vec<String>,
    /// `--mount` entries: type=bind|volume|tmpfs,source=…,destination=….
    #[serde(default)]
    pub mounts: Vec<String>,
    /// `--tmpfs` entries: DST[:OPTS].
    #[serde(default)]
    pub tmpfs: Vec<String>,
    /// A read-only root (with /run, /tmp, /var/tmp on tmpfs).
    #[serde(default)]
    pub read_only: bool,
    /// /dev/shm's size: "64m", "1g", or bytes.
    pub shm_size: Option<String>,
    /// `--device` entries: HOST[:CONTAINER][:rwm].
    #[serde(default)]
    pub devices: Vec<String>,
    /// The generated unit's [Unit] section (berth-generator only).
    #[serde(default)]
    pub unit: UnitSection,
    /// Where the generated unit is pulled in (berth-generator only).
    #[serde(default)]
    pub install: InstallSection,
}

/// `[unit]`: entries name other containers (`db` → berth-db.service) or any
/// unit (`network-online.target`, `postgresql.service`).
#[derive(Debug, serde::Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct UnitSection {
    pub description: Option<String>,
    #[serde(default)]
    pub after: Vec<String>,
    #[serde(default)]
    pub before: Vec<String>,
    #[serde(default)]
    pub requires: Vec<String>,
    #[serde(default)]
    pub wants: Vec<String>,
}

/// `[install]`: a `.wants`/`.requires` link the generator makes, since a
/// generated unit cannot be `systemctl enable`d.
#[derive(Debug, serde::Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InstallSection {
    #[serde(default)]
    pub wanted_by: Vec<String>,
    #[serde(default)]
    pub required_by: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// toml's message already holds the line, column and the text there.
    #[error("{path}:{line}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

impl ConfigError {
    /// The line the error is on (1-based), when it is about one.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Parse { line, .. } => Some(*line),
            ConfigError::Read { .. } => None,
        }
    }
}

pub fn parse(path: &Path, text: &str) -> Result<UnitConfig, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::Parse {
        path: path.into(),
        line: e.span().map_or(1, |s| {
            1 + text[..s.start.min(text.len())].matches('\n').count()
        }),
        message: e.message().to_string(),
    })
}

pub fn load(path: &Path) -> Result<UnitConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    parse(path, &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_parses_and_refuses_unknown_keys() {
        let c: UnitConfig = toml::from_str(
            "bundle = \"/srv/web\"\ncommand = [\"httpd\", \"-f\"]\nmemory = \"64m\"\nnotify = true\n[labels]\napp = \"web\"\n",
        )
        .unwrap();
        assert_eq!(c.bundle, Some(PathBuf::from("/srv/web")));
        assert_eq!(c.command, ["httpd", "-f"]);
        assert!(c.notify);
        assert_eq!(c.labels["app"], "web");
        let err = toml::from_str::<UnitConfig>("bundle = \"/b\"\nmemroy = \"1g\"\n").unwrap_err();
        assert!(err.to_string().contains("memroy"));
        let c: UnitConfig = toml::from_str("image = \"busybox\"\nuser = \"1000\"\n").unwrap();
        assert_eq!(c.image.as_deref(), Some("busybox"));
        let c: UnitConfig = toml::from_str(
            "image = \"x\"\ncap_add = [\"NET_ADMIN\"]\nsecurity_opt = [\"no-new-privileges\"]\n[sysctls]\n\"net.ipv4.ip_forward\" = \"1\"\n",
        )
        .unwrap();
        assert_eq!(c.cap_add, ["NET_ADMIN"]);
        assert_eq!(c.sysctls["net.ipv4.ip_forward"], "1");
        let c: UnitConfig = toml::from_str(
            "image = \"x\"\nhealth_cmd = \"true\"\nhealth_interval = \"5s\"\nhealth_retries = 2\n",
        )
        .unwrap();
        assert_eq!(c.health_cmd.as_deref(), Some("true"));
        assert_eq!(c.health_retries, Some(2));
        assert!(toml::from_str::<UnitConfig>("image = \"x\"\nhealth_command = \"y\"\n").is_err());
    }

    #[test]
    fn unit_sections_and_error_lines() {
        let c = parse(
            Path::new("web.toml"),
            "image = \"x\"\n[unit]\ndescription = \"Web\"\nafter = [\"db\"]\n[install]\nwanted_by = [\"multi-user.target\"]\n",
        )
        .unwrap();
        assert_eq!(c.unit.after, ["db"]);
        assert_eq!(c.install.wanted_by, ["multi-user.target"]);
        let e = parse(
            Path::new("bad.toml"),
            "image = \"x\"\n\n[unit]\nafterr = []\n",
        )
        .unwrap_err();
        assert_eq!(e.line(), Some(4), "{e}");
        assert!(e.to_string().starts_with("bad.toml:4: "), "{e}");
        let e = parse(Path::new("bad.toml"), "image = \"x\"\nwhat is this\n").unwrap_err();
        assert_eq!(e.line(), Some(2), "{e}");
    }
}
