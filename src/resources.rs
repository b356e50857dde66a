//! UpdateContainer: new resource limits for a live container (`podman
//! update`, CRI UpdateContainerResources). The change goes to the scope with
//! systemd's SetUnitProperties (runtime) through berth-init's cgroup driver —
//! the same property mapping and ControllerUnavailable check as create — and
//! then into the container's config.json copy and its LMDB record, so a
//! restarted berthd, a relaunch by the restart policy and the `Resources`
//! property all see the new values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxResources, Spec};
use zbus::zvariant::{OwnedValue, Value};

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::init_calls;
use crate::lifecycle::Status;
use crate::options::resources::UpdateOptions;
use crate::store::ContainerRecord;

impl Daemon {
    /// Applies `req` to container `id`'s scope, then records it.
    pub async fn update_resources(&self, id: &str, req: UpdateOptions) -> Result<ContainerRecord> {
        let rec = self.get(id)?;
        if !matches!(
            rec.status,
            Status::Created | Status::Running | Status::Paused
        ) {
            return Err(Error::FailedPrecondition(format!(
                "container {id} is {}: only a created, running or paused container's \
                 resources can be updated",
                rec.status.as_str()
            )));
        }
        let (spec_path, mut spec) = self.spec_of(&rec).await?;
        let current = current_resources(&rec, &spec);
        let delta = req.delta(&current);
        init_calls::update(&self.run_dir, id, delta)
            .await
            .map_err(|e| self.exited_meanwhile(id, e))?;
        let mut now = current;
        req.apply(&mut now);
        // The copy berthd wrote is its own; a bundle the user gave is not
        // rewritten (the record and the Resources property say the values).
        if let Some(dir) = spec_path {
            let linux = spec
                .linux_mut()
                .get_or_insert_with(crate::bundle::bare_linux);
            linux.set_resources(Some(now.clone()));
            write_spec(dir, spec).await?;
        }
        Ok(self
            .store
            .update(id, move |r| r.resources = Some(now))
            .await?)
    }

    /// The container's config.json: (berthd's copy's directory, when it
    /// runs from one; the spec).
    async fn spec_of(&self, rec: &ContainerRecord) -> Result<(Option<PathBuf>, Spec)> {
        let derived = self.bundles_dir.join(&rec.id);
        let given = PathBuf::from(&rec.bundle);
        tokio::task::spawn_blocking(move || {
            let (own, dir) = match derived.join("config.json").exists() {
                true => (true, derived),
                false => (false, given),
            };
            let spec = Spec::load(dir.join("config.json"))
                .map_err(|e| Error::Internal(format!("reading {}: {e}", dir.display())))?;
            Ok((own.then_some(dir), spec))
        })
        .await
        .map_err(|e| Error::Internal(format!("reading config.json: {e}")))?
    }

    /// The container's resources as last set: the record's after an update,
    /// else its spec's (read from config.json, off the executor).
    pub async fn resources_of(&self, id: &str) -> Result<LinuxResources> {
        let rec = self.get(id)?;
        if let Some(r) = rec.resources {
            return Ok(r);
        }
        let (_, spec) = self.spec_of(&rec).await?;
        Ok(current_resources(&rec, &spec))
    }
}

fn current_resources(rec: &ContainerRecord, spec: &Spec) -> LinuxResources {
    rec.resources.clone().unwrap_or_else(|| {
        spec.linux()
            .as_ref()
            .and_then(|l| l.resources().clone())
            .unwrap_or_default()
    })
}

async fn write_spec(dir: PathBuf, spec: Spec) -> Result<()> {
    tokio::task::spawn_blocking(move || {
        let text = serde_json::to_vec(&spec).map_err(|e| Error::Internal(e.to_string()))?;
        crate::bundle::write_atomically(Path::new(&dir), &text)
            .map_err(|e| Error::Internal(format!("writing {}/config.json: {e}", dir.display())))
    })
    .await
    .map_err(|e| Error::Internal(format!("writing config.json: {e}")))?
}

/// `resources` as the `Resources` property shows them: UpdateContainer's
/// keys, only those set.
pub fn to_dict(r: &LinuxResources) -> HashMap<String, OwnedValue> {
    let mut d: HashMap<String, Value<'static>> = HashMap::new();
    if let Some(m) = r.memory() {
        if let Some(l) = m.limit() {
            d.insert("memory".into(), Value::from(l));
        }
        if let Some(s) = m.swap() {
            d.insert("memory_swap".into(), Value::from(s));
        }
    }
    if let Some(c) = r.cpu() {
        if let Some(s) = c.shares() {
            d.insert("cpu_shares".into(), Value::from(s));
        }
        if let Some(q) = c.quota() {
            d.insert("cpu_quota".into(), Value::from(q));
        }
        if let Some(p) = c.period() {
            d.insert("cpu_period".into(), Value::from(p));
        }
        if let Some(s) = c.cpus() {
            d.insert("cpuset_cpus".into(), Value::from(s.clone()));
        }
        if let Some(s) = c.mems() {
            d.insert("cpuset_mems".into(), Value::from(s.clone()));
        }
    }
    if let Some(p) = r.pids() {
        d.insert("pids_limit".into(), Value::from(p.limit()));
    }
    d.into_iter()
        .filter_map(|(k, v)| OwnedValue::try_from(v).ok().map(|v| (k, v)))
        .collect()
}
