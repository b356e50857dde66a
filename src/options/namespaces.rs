//! CreateContainer's `pid`, `ipc` and `uts` options (s, podman's `--pid`,
//! `--ipc`, `--uts`): `private` (a namespace of its own), `host` (the
//! host's: no namespace in the spec), `container:<id>` (another running
//! container's). Checked here, before anything is made; berthd resolves a
//! `container:` to its init's namespace (crate::namespaces) and
//! bundle::edit applies the result.

use zbus::zvariant::OwnedValue;

use super::{typed, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &["pid", "ipc", "uts"];

/// One namespace option's value.
#[derive(Debug, Clone, PartialEq)]
pub enum NsMode {
    Private,
    Host,
    Container(String),
}

impl NsMode {
    pub fn parse(key: &str, s: &str) -> Result<NsMode, OptionError> {
        match s {
            "private" => Ok(NsMode::Private),
            "host" => Ok(NsMode::Host),
            other => match other.strip_prefix("container:") {
                Some(id) if !id.is_empty() => Ok(NsMode::Container(id.into())),
                _ => Err(OptionError::Namespace {
                    key: key.to_string(),
                    value: brief(s).into(),
                }),
            },
        }
    }

    pub fn label(&self) -> String {
        match self {
            NsMode::Private => "private".into(),
            NsMode::Host => "host".into(),
            NsMode::Container(id) => format!("container:{id}"),
        }
    }
}

/// The namespace kinds these options name, as /proc/<pid>/ns/ names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NsKind {
    Pid,
    Ipc,
    Uts,
}

impl NsKind {
    pub fn name(self) -> &'static str {
        match self {
            NsKind::Pid => "pid",
            NsKind::Ipc => "ipc",
            NsKind::Uts => "uts",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct NamespaceOptions {
    pub pid: Option<NsMode>,
    pub ipc: Option<NsMode>,
    pub uts: Option<NsMode>,
}

impl NamespaceOptions {
    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let s: String = typed(key, value, "s")?;
        let mode = Some(NsMode::parse(key, &s)?);
        match key {
            "pid" => self.pid = mode,
            "ipc" => self.ipc = mode,
            "uts" => self.uts = mode,
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// The options given, by kind.
    pub fn given(&self) -> impl Iterator<Item = (NsKind, &NsMode)> {
        [
            (NsKind::Pid, &self.pid),
            (NsKind::Ipc, &self.ipc),
            (NsKind::Uts, &self.uts),
        ]
        .into_iter()
        .filter_map(|(k, m)| m.as_ref().map(|m| (k, m)))
    }

    pub fn any(&self) -> bool {
        self.given().next().is_some()
    }

    /// Whether the container's hostname is not its own to set: a shared
    /// UTS namespace keeps the host's or the other container's.
    pub fn shares_uts(&self) -> bool {
        matches!(self.uts, Some(NsMode::Host | NsMode::Container(_)))
    }

    /// Options that contradict these: `hostname` with a shared UTS
    /// namespace; a restart policy with a `container:` one (the spec names
    /// the other container's init by pid: a relaunch could find that pid
    /// gone, or another process's).
    pub fn check(&self, hostname: Option<&str>, restarts: bool) -> Result<(), OptionError> {
        if let (Some(m @ (NsMode::Host | NsMode::Container(_))), Some(_)) = (&self.uts, hostname) {
            return Err(OptionError::Conflict(format!(
                "option hostname goes not with uts {}: the hostname is that namespace's",
                m.label()
            )));
        }
        let joined = self
            .given()
            .find(|(_, m)| matches!(m, NsMode::Container(_)));
        match joined {
            Some((kind, m)) if restarts => Err(OptionError::Conflict(format!(
                "option restart goes not with {} {} (a relaunch cannot tell that container's init from a reused pid)",
                kind.name(),
                m.label()
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use zbus::zvariant::{OwnedValue, Value};

    use super::*;
    use crate::options::CreateOptions;

    fn parse(pairs: &[(&str, &str)]) -> Result<CreateOptions, OptionError> {
        let map: HashMap<String, OwnedValue> = pairs
            .iter()
            .map(|(k, v)| {
                let v = OwnedValue::try_from(Value::from(v.to_string())).unwrap();
                (k.to_string(), v)
            })
            .collect();
        CreateOptions::parse(&map)
    }

    #[test]
    fn each_mode_is_taken() {
        let o = parse(&[("pid", "host"), ("ipc", "container:a"), ("uts", "private")]).unwrap();
        assert_eq!(o.ns.pid, Some(NsMode::Host));
        assert_eq!(o.ns.ipc, Some(NsMode::Container("a".into())));
        assert_eq!(o.ns.uts, Some(NsMode::Private));
        // Nothing resolved yet: berthd fills ns_spec.
        assert_eq!(o.ns_spec, None);
    }

    #[test]
    fn unknown_modes_are_named_errors() {
        for bad in ["", "hostt", "container:", "ns:/proc/1/ns/pid"] {
            let e = parse(&[("ipc", bad)]).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("option ipc {bad:?}: want private, host or container:<id>")
            );
        }
        let e = CreateOptions::parse(&HashMap::from([(
            "pid".to_string(),
            OwnedValue::from(true),
        )]))
        .unwrap_err();
        assert_eq!(e.to_string(), "option pid must be s");
    }

    #[test]
    fn a_shared_uts_namespace_takes_no_hostname() {
        for uts in ["host", "container:a"] {
            let e = parse(&[("uts", uts), ("hostname", "web")]).unwrap_err();
            assert!(matches!(e, OptionError::Conflict(_)), "{e}");
            assert!(e.to_string().contains(&format!("uts {uts}")), "{e}");
        }
        parse(&[("uts", "private"), ("hostname", "web")]).unwrap();
    }

    #[test]
    fn a_joined_namespace_takes_no_restart_policy() {
        let e = parse(&[("pid", "container:a"), ("restart", "always")]).unwrap_err();
        assert!(
            e.to_string()
                .contains("restart goes not with pid container:a"),
            "{e}"
        );
        parse(&[("pid", "host"), ("restart", "always")]).unwrap();
        parse(&[("pid", "container:a"), ("restart", "no")]).unwrap();
    }
}
