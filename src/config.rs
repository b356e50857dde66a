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
    /// Start and stop containers' scopes over systemd's private socket
    /// (/run/systemd/private) rather than the system bus: no dbus-daemon
    /// hop (berth_init::cgroups::systemd_private, docs/performance.md).
    #[serde(default = "yes")]
    pub systemd_private_socket: bool,
    /// Network namespaces berthd's exec server makes ahead, so a create
    /// joins one instead of setting one up (~0.5 ms; ~180 KiB of kernel
    /// memory each). 0: none.
    #[serde(default = "default_netns_pool")]
    pub netns_pool: usize,
    /// Registry mirrors for image pulls: containers-registries.conf's
    /// `[[registry]]` tables (berth_image::registries, docs/images.md).
    #[serde(default)]
    pub registry: Vec<berth_image::registries::Registry>,
}

fn yes() -> bool {
    true
}

/// Two: serial creates need one; a burst drains any pool.
pub const DEFAULT_NETNS_POOL: usize = 2;

fn default_netns_pool() -> usize {
    DEFAULT_NETNS_POOL
}

impl Default for Config {
    fn default() -> Self {
        Config {
            register_machines: true,
            systemd_private_socket: true,
            netns_pool: DEFAULT_NETNS_POOL,
            registry: Vec::new(),
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
    #[error("{path}: {source}")]
    Registries {
        path: PathBuf,
        source: berth_image::registries::RegistriesError,
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
    let config: Config = toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.into(),
        source,
    })?;
    // Checked now so that a wrong table stops berthd at start, named.
    config
        .registries()
        .map_err(|source| ConfigError::Registries {
            path: path.into(),
            source,
        })?;
    Ok(config)
}

impl Config {
    /// The `[[registry]]` tables, validated.
    pub fn registries(
        &self,
    ) -> Result<berth_image::Registries, berth_image::registries::RegistriesError> {
        berth_image::Registries::new(self.registry.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_the_switch() {
        assert_eq!(toml::from_str::<Config>("").unwrap(), Config::default());
        let c: Config = toml::from_str("register_machines = false\n").unwrap();
        assert!(!c.register_machines);
        assert!(c.systemd_private_socket);
        let c: Config = toml::from_str("systemd_private_socket = false\n").unwrap();
        assert!(!c.systemd_private_socket);
        assert_eq!(Config::default().netns_pool, 2);
        let c: Config = toml::from_str("netns_pool = 0\n").unwrap();
        assert_eq!(c.netns_pool, 0);
        assert!(toml::from_str::<Config>("netns_pool = -1\n").is_err());
        let e = toml::from_str::<Config>("register_machine = false\n").unwrap_err();
        assert!(e.to_string().contains("register_machine"), "{e}");
        assert_eq!(
            load(Path::new("/nonexistent/berthd.toml")).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn registry_mirrors_in_the_podman_format() {
        let c: Config = toml::from_str(
            r#"
[[registry]]
prefix = "registry.k8s.io"
[[registry.mirror]]
location = "127.0.0.1:5000/registry.k8s.io"
[[registry.mirror]]
location = "mirror.internal/k8s"
insecure = true
"#,
        )
        .unwrap();
        let r = berth_image::Reference::parse("registry.k8s.io/pause:3.9").unwrap();
        let e = c.registries().unwrap().endpoints(&r);
        assert_eq!(e.len(), 3);
        assert_eq!(
            (e[1].host.as_str(), e[1].repository.as_str(), e[1].insecure),
            ("mirror.internal", "k8s/pause", true)
        );
        let dir = std::env::temp_dir().join(format!("berthd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("berthd.toml");
        std::fs::write(&bad, "[[registry]]\nprefix = \"https://x.io\"\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(
            e.contains("berthd.toml") && e.contains("without a scheme"),
            "{e}"
        );
        std::fs::write(&bad, "[[registry]]\nprefix = \"x.io\"\nmirrors = []\n").unwrap();
        let e = load(&bad).unwrap_err().to_string();
        assert!(e.contains("mirrors"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
