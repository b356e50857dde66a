//! An OCI runtime spec (config.json) for a container of an image: berth's
//! base spec (oci-spec's default mounts, namespaces, capabilities and masked
//! paths; version 1.2.0, hostname "berth", as berth-runtime's `spec`) with
//! the image config's Entrypoint + Cmd, Env, WorkingDir, User and Labels, and
//! the caller's overrides on top. ExposedPorts, Volumes, Healthcheck and
//! StopSignal are not part of a runtime spec and are ignored here.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{RootBuilder, Spec, UserBuilder};

use crate::oci::ImageConfig;

pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("the image has no Entrypoint or Cmd and no command was given")]
    NoCommand,
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("user {0:?} is not uid[:gid] or name[:group]")]
    BadUser(String),
    #[error("env entry {0:?} is not NAME=VALUE")]
    BadEnv(String),
    #[error("working dir {0:?} is not absolute")]
    BadWorkdir(String),
    #[error("cannot build the spec: {0}")]
    Build(String),
}

/// What the caller sets over the image's config (podman run's flags).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecOptions {
    /// Replaces the image's Cmd (`run IMAGE ARGS…`).
    pub args: Option<Vec<String>>,
    /// Replaces the image's Entrypoint (and drops its Cmd, as docker does).
    pub entrypoint: Option<Vec<String>>,
    /// NAME=VALUE entries set over the image's Env.
    pub env: Vec<String>,
    pub workdir: Option<String>,
    /// `uid[:gid]` or `name[:group]`, over the image's User.
    pub user: Option<String>,
    pub terminal: bool,
    pub hostname: Option<String>,
}

/// The process's command: Entrypoint + Cmd with the overrides applied.
pub fn command(cfg: &ImageConfig, opts: &SpecOptions) -> Result<Vec<String>, SpecError> {
    let entrypoint = opts.entrypoint.as_ref().unwrap_or(&cfg.config.entrypoint);
    let cmd: &[String] = match (&opts.args, &opts.entrypoint) {
        (Some(a), _) => a,
        (None, Some(_)) => &[],
        (None, None) => &cfg.config.cmd,
    };
    let args: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

fn set_env(env: &mut Vec<String>, entry: &str) -> Result<(), SpecError> {
    let (name, _) = entry
        .split_once('=')
        .filter(|(n, _)| !n.is_empty())
        .ok_or_else(|| SpecError::BadEnv(entry.to_owned()))?;
    env.retain(|e| e.split('=').next() != Some(name));
    env.push(entry.to_owned());
    Ok(())
}

/// Resolved user: uid, gid, supplementary groups, home.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: Option<String>,
}

/// Resolves `user` (`uid`, `uid:gid`, `name`, `name:group`, …) against the
/// image's /etc/passwd and /etc/group, read inside `rootfs` (symlinks in the
/// image resolved within it, never on the host).
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, SpecError> {
    if user.is_empty() {
        return Ok(ResolvedUser {
            home: passwd_entries(rootfs)
                .into_iter()
                .find(|p| p.uid == 0)
                .map(|p| p.home),
            ..ResolvedUser::default()
        });
    }
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if u.is_empty() || g == Some("") {
        return Err(SpecError::BadUser(user.to_owned()));
    }
    let passwd = passwd_entries(rootfs);
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p.uid == uid),
        Err(_) => Some(
            passwd
                .iter()
                .find(|p| p.name == u)
                .ok_or_else(|| SpecError::UnknownUser(u.to_owned()))?,
        ),
    };
    let uid = entry.map_or_else(|| u.parse().unwrap_or(0), |p| p.uid);
    let groups = group_entries(rootfs);
    let gid = match g {
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup(g.to_owned()))?,
        },
        None => entry.map_or(0, |p| p.gid),
    };
    // Supplementary groups as docker computes them: the user's memberships,
    // when the group was not given explicitly.
    let mut additional_gids: Vec<u32> = match (g, entry) {
        (None, Some(p)) => groups
            .iter()
            .filter(|e| e.members.iter().any(|m| m == &p.name) && e.gid != gid)
            .map(|e| e.gid)
            .collect(),
        _ => Vec::new(),
    };
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home: entry.map(|p| p.home.clone()),
    })
}

/// Generates the spec: root.path is `rootfs` (also where the image's
/// /etc/passwd and /etc/group are read from).
pub fn generate(cfg: &ImageConfig, rootfs: &Path, opts: &SpecOptions) -> Result<Spec, SpecError> {
    let build = |e: oci_spec::OciSpecError| SpecError::Build(e.to_string());
    let args = command(cfg, opts)?;
    let mut env: Vec<String> = Vec::new();
    for e in &cfg.config.env {
        set_env(&mut env, e)?;
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    for e in &opts.env {
        set_env(&mut env, e)?;
    }
    let user = opts.user.as_deref().unwrap_or(&cfg.config.user);
    let resolved = resolve_user(rootfs, user)?;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", resolved.home.as_deref().unwrap_or("/")));
    }
    if opts.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let cwd = match opts.workdir.as_deref() {
        Some(w) if !w.starts_with('/') => return Err(SpecError::BadWorkdir(w.to_owned())),
        Some(w) => w.to_owned(),
        None if cfg.config.working_dir.is_empty() => "/".to_owned(),
        // Docker allows a relative WorkingDir in a config; it means from /.
        None => Path::new("/")
            .join(&cfg.config.working_dir)
            .to_string_lossy()
            .into_owned(),
    };

    let mut spec = Spec::default();
    spec.set_version("1.2.0".into());
    spec.set_hostname(Some(
        opts.hostname.clone().unwrap_or_else(|| "berth".into()),
    ));
    let root = RootBuilder::default()
        .path(rootfs.to_path_buf())
        .readonly(false)
        .build()
        .map_err(build)?;
    spec.set_root(Some(root));
    let user = UserBuilder::default()
        .uid(resolved.uid)
        .gid(resolved.gid)
        .additional_gids(resolved.additional_gids.clone())
        .build()
        .map_err(build)?;
    let process = spec
        .process_mut()
        .as_mut()
        .ok_or_else(|| SpecError::Build("the default spec has no process".into()))?;
    process.set_args(Some(args));
    process.set_env(Some(env));
    process.set_cwd(PathBuf::from(cwd));
    process.set_user(user);
    process.set_terminal(Some(opts.terminal));
    if !cfg.config.labels.is_empty() {
        let ann: HashMap<String, String> = cfg.config.labels.clone().into_iter().collect();
        spec.set_annotations(Some(ann));
    }
    Ok(spec)
}

#[derive(Debug)]
struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

#[derive(Debug)]
struct Group {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn passwd_entries(rootfs: &Path) -> Vec<Passwd> {
    let text = read_in_root(rootfs, "/etc/passwd").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Passwd {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
                home: f.get(5).map_or("/".into(), |h| h.to_string()),
            })
        })
        .collect()
}

fn group_entries(rootfs: &Path) -> Vec<Group> {
    let text = read_in_root(rootfs, "/etc/group").unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(Group {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Resolves `path` inside `root` as the container would see it: symlinks in
/// the image (absolute or relative) stay inside `root`, `..` stops at it.
/// Returns the host path of a final component that is not a symlink.
pub fn resolve_in_root(root: &Path, path: &str) -> io::Result<PathBuf> {
    let mut pending: Vec<String> = components(path);
    pending.reverse();
    let mut cur: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = pending.pop() {
        match c.as_str() {
            ".." => {
                cur.pop();
            }
            _ => {
                let host = root.join(cur.iter().collect::<PathBuf>()).join(&c);
                match fs::symlink_metadata(&host) {
                    Ok(m) if m.file_type().is_symlink() => {
                        hops += 1;
                        if hops > 40 {
                            return Err(io::Error::from_raw_os_error(libc::ELOOP));
                        }
                        let target = fs::read_link(&host)?;
                        let t = target.to_string_lossy();
                        if t.starts_with('/') {
                            cur.clear();
                        }
                        let mut more = components(&t);
                        more.reverse();
                        pending.extend(more);
                    }
                    Ok(_) => cur.push(c),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => cur.push(c),
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(root.join(cur.iter().collect::<PathBuf>()))
}

fn components(p: &str) -> Vec<String> {
    Path::new(p)
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect()
}

/// Reads a small regular file of the image (1 MiB at most); None if it is
/// missing or not a regular file.
fn read_in_root(root: &Path, path: &str) -> Option<String> {
    let host = resolve_in_root(root, path).ok()?;
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(host)
        .ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut s = String::new();
    f.take(1 << 20).read_to_string(&mut s).ok()?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::RunConfig;

    fn rootfs(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-spec-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("etc")).unwrap();
        d
    }

    #[test]
    fn spec_from_config_and_overrides() {
        let root = rootfs("gen");
        fs::write(
            root.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            root.join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\n",
        )
        .unwrap();
        let cfg = ImageConfig {
            config: RunConfig {
                entrypoint: vec!["/bin/app".into()],
                cmd: vec!["--serve".into()],
                env: vec!["A=1".into(), "PATH=/bin".into()],
                user: "app".into(),
                working_dir: "/srv".into(),
                labels: [("l".to_string(), "v".to_string())].into(),
                ..RunConfig::default()
            },
            ..ImageConfig::default()
        };
        let spec = generate(&cfg, &root, &SpecOptions::default()).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/app", "--serve"]);
        assert_eq!(p.cwd(), Path::new("/srv"));
        assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
        assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[10]);
        let env = p.env().as_ref().unwrap();
        assert!(
            env.contains(&"HOME=/home/app".to_string()) && env.contains(&"PATH=/bin".to_string())
        );
        assert_eq!(spec.annotations().as_ref().unwrap()["l"], "v");
        assert_eq!(spec.root().as_ref().unwrap().path(), &root);

        let opts = SpecOptions {
            args: Some(vec!["x".into()]),
            env: vec!["A=2".into()],
            user: Some("0:wheel".into()),
            workdir: Some("/tmp".into()),
            ..SpecOptions::default()
        };
        let spec = generate(&cfg, &root, &opts).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(p.args().as_ref().unwrap(), &["/bin/app", "x"]);
        assert_eq!((p.user().uid(), p.user().gid()), (0, 10));
        assert!(p.env().as_ref().unwrap().contains(&"A=2".to_string()));
        let ep = SpecOptions {
            entrypoint: Some(vec!["sh".into()]),
            ..SpecOptions::default()
        };
        assert_eq!(command(&cfg, &ep).unwrap(), ["sh"]);
        assert!(matches!(
            resolve_user(&root, "nobody"),
            Err(SpecError::UnknownUser(_))
        ));
        assert!(matches!(
            resolve_user(&root, "0:nogroup"),
            Err(SpecError::UnknownGroup(_))
        ));
        assert_eq!(resolve_user(&root, "4242:7").unwrap().uid, 4242);
        let empty = ImageConfig::default();
        assert!(matches!(
            generate(&empty, &root, &SpecOptions::default()),
            Err(SpecError::NoCommand)
        ));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn image_symlinks_stay_inside_the_rootfs() {
        let root = rootfs("links");
        // /etc/passwd → /etc/real (absolute: must mean <root>/etc/real).
        fs::write(
            root.join("etc/real"),
            "root:x:0:0::/r00t:/bin/sh\nu:x:5:5::/h:/bin/sh\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("/etc/real", root.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc", root.join("up")).unwrap();
        assert_eq!(resolve_user(&root, "u").unwrap().uid, 5);
        assert_eq!(
            resolve_in_root(&root, "/up/real").unwrap(),
            root.join("etc/real")
        );
        // A loop is refused, not followed forever.
        std::os::unix::fs::symlink("loop", root.join("loop")).unwrap();
        assert!(resolve_in_root(&root, "/loop").is_err());
        fs::remove_dir_all(&root).unwrap();
    }
}
