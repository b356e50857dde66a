//! A pod sandbox on the host: namespaces pinned to files with no process
//! in them (CRI-O's pinns way: no pause container to start, watch or pay
//! memory for), the pod's network from the first CNI config in
//! /etc/cni/net.d through berth-net's CNI caller and result cache, and the
//! files every container of the pod shares (hostname, hosts, resolv.conf).
//!
//! Layout: /run/berth/cri/pods/<id>/{net,ipc,uts,hostname,hosts,resolv.conf}
//! and `user` for a pod with a user namespace (pod_userns.rs).
//! Everything here is idempotent (a second teardown finds nothing and is
//! fine), which is what recovery after a kill -9 relies on.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_net::cache::{Cache, Entry};
use berth_net::cni;
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("pinning the pod's {what} namespace: {source}")]
    Pin {
        what: &'static str,
        source: nix::Error,
    },
    #[error(transparent)]
    Netns(#[from] berth_net::netns::NetnsError),
    #[error("CNI: {0}")]
    Cni(#[from] berth_net::cni::CniError),
    #[error("no CNI network config in {0} (the kubelet's convention: a .conflist there)")]
    NoNetwork(String),
    #[error("CNI config {path}: {msg}")]
    Config { path: String, msg: String },
    #[error("the namespace thread died")]
    Thread,
    #[error(transparent)]
    Userns(#[from] crate::pod_userns::UsernsError),
}

type Result<T> = std::result::Result<T, SandboxError>;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SandboxError + '_ {
    move |source| SandboxError::Io {
        path: path.display().to_string(),
        source,
    }
}

pub struct Sandboxes {
    pub run_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cache: Cache,
}

/// What a new pod asks for.
pub struct PodNet<'a> {
    pub id: &'a str,
    pub hostname: &'a str,
    pub host_network: bool,
    pub host_ipc: bool,
    /// (host port, container port, protocol, host ip) for portmap.
    pub ports: Vec<(i32, i32, &'static str, String)>,
    pub dns: Option<(&'a [String], &'a [String], &'a [String])>,
    /// A user namespace of the pod's own (UserNamespace mode POD): its uid
    /// and gid mapping. Its net, ipc and uts namespaces then belong to it.
    pub userns: Option<(crate::pod_userns::IdMap, crate::pod_userns::IdMap)>,
}

impl Sandboxes {
    pub fn dir(&self, id: &str) -> PathBuf {
        self.run_dir.join("pods").join(id)
    }

    pub fn ns_path(&self, id: &str, what: &str) -> PathBuf {
        self.dir(id).join(what)
    }

    /// Makes the pod's namespaces, files and network; returns its IPs.
    /// On failure the caller runs [`Sandboxes::teardown`] +
    /// [`Sandboxes::remove`], which undo any part made.
    pub fn setup(&self, p: &PodNet) -> Result<(String, Vec<String>)> {
        let dir = self.dir(p.id);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        self.write_files(p)?;
        if let Some((uid, gid)) = p.userns {
            crate::pod_userns::pin(&dir, uid, gid, p.hostname)?;
        }
        if !p.host_ipc || !p.host_network {
            pin_ipc_uts(
                &dir,
                (!p.host_ipc).then_some(()),
                (!p.host_network).then_some(p.hostname),
            )?;
        }
        if !p.host_ipc {
            mount_shm(&dir.join("shm"))?;
        }
        if p.host_network {
            return Ok((String::new(), Vec::new()));
        }
        let netns = self.ns_path(p.id, "net");
        if !berth_net::netns::is_pinned(&netns) {
            let _ = berth_net::netns::remove(&netns);
            berth_net::netns::create(&netns)?;
        }
        let (path, conflist) = self.conflist()?;
        let mut rc = Map::new();
        if !p.ports.is_empty() {
            let pm: Vec<Value> = p
                .ports
                .iter()
                .map(|(h, c, proto, ip)| {
                    json!({"hostPort": h, "containerPort": c, "protocol": proto, "hostIP": ip})
                })
                .collect();
            rc.insert("portMappings".into(), Value::Array(pm));
        }
        let name = conflist["name"].as_str().unwrap_or_default().to_string();
        let mut entry = Entry {
            container_id: p.id.into(),
            network: name.clone(),
            ifname: "eth0".into(),
            netns,
            conflist,
            runtime_config: rc,
            result: None,
        };
        // Before ADD: a crash in the chain still leaves what DEL needs.
        self.cache.put(&entry).map_err(io(&path))?;
        let inv = entry.invocation(&cni::plugin_dirs());
        let result = cni::add(&entry.conflist, &inv)?;
        let a = cni::addresses(&result);
        entry.result = Some(result);
        self.cache.put(&entry).map_err(io(&path))?;
        let ips = [a.ipv4, a.ipv6].into_iter().filter(|s| !s.is_empty());
        Ok((name, ips.collect()))
    }

    /// The first network config in the CNI directory (lexical order, as
    /// libcni's ConfFiles): a .conflist as it is, a .conf/.json wrapped.
    pub fn conflist(&self) -> Result<(PathBuf, Value)> {
        let d = &self.cni_conf_dir;
        let mut files: Vec<PathBuf> = std::fs::read_dir(d)
            .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.retain(|f| {
            matches!(
                f.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        });
        files.sort();
        let path = files
            .into_iter()
            .next()
            .ok_or_else(|| SandboxError::NoNetwork(d.display().to_string()))?;
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let bad = |msg: String| SandboxError::Config {
            path: path.display().to_string(),
            msg,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        let list = match v.get("plugins") {
            Some(_) => v,
            None => json!({
                "cniVersion": v["cniVersion"].as_str().unwrap_or(cni::CNI_VERSION),
                "name": v["name"],
                "plugins": [v],
            }),
        };
        if list["name"].as_str().is_none_or(str::is_empty) {
            return Err(bad("no \"name\"".into()));
        }
        Ok((path, list))
    }

    /// Whether a CNI config is in place (Status' NetworkReady).
    pub fn network_ready(&self) -> std::result::Result<(), String> {
        self.conflist().map(drop).map_err(|e| e.to_string())
    }

    /// Releases the network (CNI DEL from the cached attachment, then the
    /// netns). Idempotent.
    pub fn teardown(&self, id: &str) -> Result<()> {
        if let Ok(Some(e)) = self.cache.get(id) {
            let inv = e.invocation(&cni::plugin_dirs());
            cni::del(&e.conflist, &inv, e.result.as_ref())?;
            let _ = self.cache.remove(id);
        }
        let netns = self.ns_path(id, "net");
        berth_net::netns::remove(&netns).map_err(io(&netns))
    }

    /// Unpins the rest and removes the pod's directory. Idempotent.
    pub fn remove(&self, id: &str) -> Result<()> {
        self.teardown(id)?;
        let shm = self.dir(id).join("shm");
        match nix::mount::umount2(&shm, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(io(&shm)(e.into())),
        }
        for ns in ["ipc", "uts", "user"] {
            let p = self.ns_path(id, ns);
            berth_net::netns::remove(&p).map_err(io(&p))?;
        }
        let dir = self.dir(id);
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&dir)(e)),
            _ => Ok(()),
        }
    }

    /// Pod ids with a directory here (recovery compares them to the store).
    pub fn on_disk(&self) -> Vec<String> {
        std::fs::read_dir(self.run_dir.join("pods"))
            .map(|r| {
                r.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn write_files(&self, p: &PodNet) -> Result<()> {
        let dir = self.dir(p.id);
        let resolv = match p.dns {
            Some((servers, searches, options))
                if !(servers.is_empty() && searches.is_empty() && options.is_empty()) =>
            {
                let mut s = String::new();
                if !searches.is_empty() {
                    s += &format!("search {}\n", searches.join(" "));
                }
                for n in servers {
                    s += &format!("nameserver {n}\n");
                }
                if !options.is_empty() {
                    s += &format!("options {}\n", options.join(" "));
                }
                s
            }
            _ => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        };
        let hostname = match p.host_network {
            true => nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default(),
            false => p.hostname.to_string(),
        };
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{hostname}\n"
        );
        for (name, text) in [
            ("resolv.conf", resolv),
            ("hostname", format!("{hostname}\n")),
            ("hosts", hosts),
        ] {
            let path = dir.join(name);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o644)
                .open(&path)
                .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
                .map_err(io(&path))?;
        }
        Ok(())
    }
}

/// Pins a new IPC namespace at `dir`/ipc and a new UTS namespace (with the
/// pod's hostname set in it) at `dir`/uts, from a thread of their own that
/// ends after: those namespaces are per thread, so no other thread of
/// berth-cri ever runs in them.
fn pin_ipc_uts(dir: &Path, ipc: Option<()>, uts: Option<&str>) -> Result<()> {
    let dir = dir.to_owned();
    let hostname = uts.map(str::to_string);
    let want_ipc = ipc.is_some();
    std::thread::spawn(move || -> Result<()> {
        if want_ipc {
            pin_one(&dir, "ipc", CloneFlags::CLONE_NEWIPC, || Ok(()))?;
        }
        if let Some(h) = hostname {
            pin_one(&dir, "uts", CloneFlags::CLONE_NEWUTS, || {
                nix::unistd::sethostname(&h)
            })?;
        }
        Ok(())
    })
    .join()
    .unwrap_or(Err(SandboxError::Thread))
}

fn pin_one(
    dir: &Path,
    what: &'static str,
    flag: CloneFlags,
    inside: impl FnOnce() -> nix::Result<()>,
) -> Result<()> {
    let path = dir.join(what);
    if berth_net::netns::is_pinned(&path) {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o444)
        .open(&path)
        .map_err(io(&path))?;
    let pin = || -> nix::Result<()> {
        unshare(flag)?;
        inside()?;
        mount(
            Some(format!("/proc/thread-self/ns/{what}").as_str()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
    };
    pin().map_err(|source| SandboxError::Pin { what, source })
}

/// The pod's /dev/shm, shared by its containers as its IPC namespace is
/// (64 MiB, docker's and containerd's size).
fn mount_shm(path: &Path) -> Result<()> {
    if nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC)
        .unwrap_or(false)
    {
        return Ok(());
    }
    std::fs::create_dir_all(path).map_err(io(path))?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| io(path)(e.into()))
}
