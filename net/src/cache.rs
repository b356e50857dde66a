//! Each container's attachment on disk: the conflist it was added with, its
//! CNI arguments and (once ADD finished) the result. Written *before* ADD,
//! so a crash in the middle of a plugin chain still leaves what DEL needs;
//! removed only after DEL succeeded. berthd's recovery walks this directory
//! to release what a dead berthd left (leases, veths, port rules).
//!
//! The same idea as libcni's /var/lib/cni/results, in berth's own directory
//! so purging the package removes it.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub container_id: String,
    pub network: String,
    pub ifname: String,
    pub netns: PathBuf,
    /// The conflist as it was when ADD ran: a network changed or removed
    /// since must still be torn down the way it was set up.
    pub conflist: Value,
    #[serde(default)]
    pub runtime_config: Map<String, Value>,
    /// The ADD result; None while ADD runs (or if it failed half-way).
    #[serde(default)]
    pub result: Option<Value>,
}

impl Entry {
    /// The CNI arguments this attachment was (and is torn down) with.
    pub fn invocation(&self, plugin_dirs: &[PathBuf]) -> crate::cni::Invocation {
        crate::cni::Invocation {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: self.ifname.clone(),
            runtime_config: self.runtime_config.clone(),
            plugin_dirs: plugin_dirs.to_vec(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, container_id: &str) -> PathBuf {
        self.dir.join(format!("{container_id}.json"))
    }

    /// Writes `e` durably (temporary file, fsync, rename, fsync the dir).
    pub fn put(&self, e: &Entry) -> std::io::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let text = serde_json::to_vec(e).map_err(std::io::Error::other)?;
        let tmp = self.dir.join(format!(".{}.tmp", e.container_id));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&text)?;
        f.sync_all()?;
        std::fs::rename(&tmp, self.path(&e.container_id))?;
        std::fs::File::open(&self.dir)?.sync_all()
    }

    pub fn get(&self, container_id: &str) -> std::io::Result<Option<Entry>> {
        match std::fs::read(self.path(container_id)) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(std::io::Error::other),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub fn remove(&self, container_id: &str) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(container_id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The container ids with an entry (temporary files left by a crash
    /// are removed on the way).
    pub fn ids(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut ids = Vec::new();
        for ent in rd.flatten() {
            let name = ent.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.ends_with(".tmp") {
                let _ = std::fs::remove_file(ent.path());
            } else if let Some(id) = name.strip_suffix(".json") {
                ids.push(id.to_string());
            }
        }
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_remove_and_list() {
        let dir = std::env::temp_dir().join(format!("berth-net-cache-{}", std::process::id()));
        let c = Cache::new(&dir);
        let e = Entry {
            container_id: "a".into(),
            network: "n".into(),
            ..Default::default()
        };
        c.put(&e).unwrap();
        std::fs::write(dir.join(".b.tmp"), "x").unwrap();
        assert_eq!(c.get("a").unwrap(), Some(e));
        assert_eq!(c.ids(), vec!["a".to_string()]);
        assert!(!dir.join(".b.tmp").exists());
        c.remove("a").unwrap();
        c.remove("a").unwrap();
        assert_eq!(c.get("a").unwrap(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
