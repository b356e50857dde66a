//! /etc/berth/berthd.toml: berthd's own settings, all optional. A missing
//! file is the defaults; an unreadable or wrong one stops berthd at start
//! with the file, line and key named (a typo silently ignored would leave
//! the host doing what its owner turned off).

use std::path::{Path, PathBuf};

/// The file berthd reads unless `--config` names another.
pub const DEFAULT_PATH: &str = "/etc/berth/berthd.toml";

#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Register running containers with systemd-machined (machined.rs).
    #[serde(default = "yes")]
    pub register_machines: bool,
}

fn yes() -> bool {
    true
}

impl Default for Config {
    fn default() -> Self {
        Config {
            register_machines: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Config::default()),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.into(),
                source,
            })
        }
    };
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_switch() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
        let c: Config = toml::from_str("register_machines = false\n").unwrap();
        assert!(!c.register_machines);
        let e = toml::from_str::<Config>("register_machine = false\n").unwrap_err();
        assert!(e.to_string().contains("register_machine"), "{e}");
        assert_eq!(
            load(Path::new("/nonexistent/berthd.toml")).unwrap(),
            Config::default()
        );
    }
}
