//! The options run, create and exec share, and their value parsers. The
//! berth@ TOML (unit.rs) builds the same CreateOpts.

use std::path::PathBuf;

use clap::Args;

use crate::{Failed, Result};

/// How the process runs: shared by run, create and exec.
#[derive(Args, Debug, Clone, Default)]
pub struct ProcessOpts {
    /// Allocate a terminal.
    #[arg(short = 't', long)]
    pub tty: bool,
    /// Keep stdin open and feed it to the process.
    #[arg(short = 'i', long)]
    pub interactive: bool,
    /// Set an environment variable (NAME=VALUE), repeatable.
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long)]
    pub workdir: Option<String>,
}

/// What a container is made from and how it runs: shared by run and create.
/// One field per option: a new one (--publish, --network…) is a field here
/// and one line in session::create_options.
#[derive(Args, Debug, Clone, Default)]
pub struct CreateOpts {
    /// OCI bundle directory (config.json + rootfs).
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// Container id (default: a random one).
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub process: ProcessOpts,
    /// Memory limit (bytes, or with k, m, g suffix).
    #[arg(short = 'm', long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// CPU limit in CPUs (1.5 = one and a half).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Most tasks (processes + threads) the container may have.
    #[arg(long)]
    pub pids_limit: Option<i64>,
    /// The systemd slice the container's scope goes in (default
    /// berth.slice), e.g. kubepods-besteffort-pod1.slice; made by systemd
    /// with its parents when the scope starts.
    #[arg(long, visible_alias = "cgroup-parent", value_name = "SLICE")]
    pub slice: Option<String>,
    /// Label KEY=VALUE, repeatable.
    #[arg(short = 'l', long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// User (uid[:gid] or name[:group]) for a container from an image.
    #[arg(short = 'u', long)]
    pub user: Option<String>,
    #[command(flatten)]
    pub net: NetOpts,
    /// Capabilities, seccomp, groups, ulimits, sysctls, entrypoint, stop…
    #[command(flatten)]
    pub security: crate::security_opts::SecurityOpts,
    #[command(flatten)]
    pub lifecycle: crate::lifecycle::LifecycleOpts,
    #[command(flatten)]
    pub storage: StorageOpts,
    /// The image (without --bundle); with --bundle, the command's first word.
    /// Options go before it: what follows is the command's.
    #[arg(value_name = "IMAGE")]
    pub image: Option<String>,
    /// The command: replaces the image's Cmd (or the bundle's process.args).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    pub command: Vec<String>,
}

/// Networking and the namespaces shared (podman's names): shared by run,
/// create and berth@ units.
#[derive(Args, Debug, Clone, Default)]
pub struct NetOpts {
    /// Publish a port: [[HOST_IP:]HOST_PORT:]CONTAINER_PORT[/tcp|udp], repeatable.
    #[arg(short = 'p', long = "publish", value_name = "PORT")]
    pub publish: Vec<String>,
    /// berth (default for images), none, host, container:ID, or a network's name.
    #[arg(long, alias = "net", value_name = "MODE")]
    pub network: Option<String>,
    /// The container's hostname (default: its id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// A DNS server for /etc/resolv.conf, repeatable.
    #[arg(long, value_name = "IP")]
    pub dns: Vec<String>,
    /// A DNS search domain, repeatable ("." for none).
    #[arg(long, value_name = "DOMAIN")]
    pub dns_search: Vec<String>,
    /// A line in /etc/hosts: NAME:IP, repeatable.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    pub add_hosts: Vec<String>,
    /// The pid namespace: private (default), host, or container:ID.
    #[arg(long, value_name = "MODE")]
    pub pid: Option<String>,
    /// The IPC namespace: private (default), host, or container:ID.
    #[arg(long, value_name = "MODE")]
    pub ipc: Option<String>,
    /// The UTS namespace (hostname): private (default), host, or container:ID.
    #[arg(long, value_name = "MODE")]
    pub uts: Option<String>,
}

impl NetOpts {
    /// Into CreateContainer's options (network, ports, hostname, dns,
    /// dns_search, add_hosts, pid, ipc, uts): berthd checks them.
    pub fn insert_into(
        &self,
        o: &mut std::collections::HashMap<&'static str, zbus::zvariant::Value<'static>>,
    ) {
        use zbus::zvariant::Value;
        let lists = [
            ("ports", &self.publish),
            ("dns", &self.dns),
            ("dns_search", &self.dns_search),
            ("add_hosts", &self.add_hosts),
        ];
        for (key, list) in lists {
            if !list.is_empty() {
                o.insert(key, Value::from(list.clone()));
            }
        }
        let single = [
            ("network", &self.network),
            ("hostname", &self.hostname),
            ("pid", &self.pid),
            ("ipc", &self.ipc),
            ("uts", &self.uts),
        ];
        for (key, value) in single {
            if let Some(v) = value {
                o.insert(key, Value::from(v.clone()));
            }
        }
    }
}

/// Mounts and the root's writability (podman's names): shared by run,
/// create and berth@ units. berthd parses the entries.
#[derive(Args, Debug, Clone, Default)]
pub struct StorageOpts {
    /// Mount SRC (an absolute host path, or a named volume, made on first
    /// use) at DST: SRC:DST[:ro|rw|z|nocopy|…], repeatable.
    #[arg(short = 'v', long = "volume", value_name = "SRC:DST[:OPTS]")]
    pub volumes: Vec<String>,
    /// type=bind|volume|tmpfs,source=…,destination=…[,ro][,…], repeatable.
    #[arg(long = "mount", value_name = "type=…,src=…,dst=…")]
    pub mounts: Vec<String>,
    /// A tmpfs at DST: DST[:size=64m,mode=1777,…], repeatable.
    #[arg(long, value_name = "DST[:OPTS]")]
    pub tmpfs: Vec<String>,
    /// A read-only root (/run, /tmp and /var/tmp get a tmpfs each).
    #[arg(long)]
    pub read_only: bool,
    /// /dev/shm's size (bytes, or with k, m, g suffix).
    #[arg(long, value_parser = parse_size, value_name = "SIZE")]
    pub shm_size: Option<u64>,
    /// A host device: HOST[:CONTAINER][:rwm], repeatable.
    #[arg(long = "device", value_name = "HOST[:CONTAINER][:PERMS]")]
    pub devices: Vec<String>,
}

impl StorageOpts {
    /// Into CreateContainer's options (volumes, mounts, tmpfs, read_only,
    /// shm_size, devices).
    pub fn insert_into(
        &self,
        o: &mut std::collections::HashMap<&'static str, zbus::zvariant::Value<'static>>,
    ) {
        use zbus::zvariant::Value;
        for (key, list) in [
            ("volumes", &self.volumes),
            ("mounts", &self.mounts),
            ("tmpfs", &self.tmpfs),
            ("devices", &self.devices),
        ] {
            if !list.is_empty() {
                o.insert(key, Value::from(list.clone()));
            }
        }
        if self.read_only {
            o.insert("read_only", Value::from(true));
        }
        if let Some(s) = self.shm_size {
            o.insert("shm_size", Value::from(s));
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct RunOpts {
    #[command(flatten)]
    pub create: CreateOpts,
    /// Remove the container when it exits.
    #[arg(long)]
    pub rm: bool,
    /// Detach: start and print the id.
    #[arg(short = 'd', long)]
    pub detach: bool,
}

#[derive(Args, Debug, Clone)]
pub struct ExecOpts {
    #[command(flatten)]
    pub process: ProcessOpts,
    /// Run detached: print the exec id and return.
    #[arg(short = 'd', long)]
    pub detach: bool,
    pub id: String,
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    pub cmd: Vec<String>,
}

/// "64m" → 67108864. Suffixes k, m, g, t (powers of 1024), optional "b".
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, shift) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 10),
        Some('m') => (&t[..t.len() - 1], 20),
        Some('g') => (&t[..t.len() - 1], 30),
        Some('t') => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (like 512k, 64m, 1g)"))?;
    if !(n.is_finite() && n > 0.0) {
        return Err(format!("{s:?} must be positive"));
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

/// "TERM", "SIGTERM", "term" or "15" → 15.
pub fn parse_signal(s: &str) -> Result<i32> {
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| Failed::new(format!("unknown signal {n}")));
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| Failed::new(format!("unknown signal {s:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512kb"), Ok(512 << 10));
        assert_eq!(parse_size("1000"), Ok(1000));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("-1m").is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("TERM").unwrap(), 15);
        assert_eq!(parse_signal("sigkill").unwrap(), 9);
        assert_eq!(parse_signal("2").unwrap(), 2);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("99").is_err());
    }
}
