//! Registry mirrors: where a pull of `registry.k8s.io/pause:3.9` asks
//! first. The tables are containers-registries.conf(5)'s (v2) `[[registry]]`
//! `prefix` / `location` / `insecure` and `[[registry.mirror]]` `location` /
//! `insecure` — the format podman and CRI-O users know — read from berthd's
//! own berthd.toml (docs/images.md).
//!
//! A reference's `registry/repository` is matched against every `prefix`
//! (whole path components only; the longest wins). Its mirrors are tried in
//! order, then the registry itself (or its `location`, which replaces the
//! prefix): the first that serves the manifest serves the blobs too. The
//! image keeps the name it was asked for. Plain HTTP is used only for a
//! loopback host or an `insecure = true` entry.

use serde::Deserialize;

use crate::reference::Reference;

/// One `[[registry]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// The names it applies to: `registry.k8s.io`, `docker.io/library`.
    /// Defaults to `location`, as in containers-registries.conf.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Where the registry itself is; defaults to the prefix.
    #[serde(default)]
    pub location: Option<String>,
    /// Plain HTTP to `location`.
    #[serde(default)]
    pub insecure: bool,
    /// Tried in order before `location`.
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mirror {
    /// `host[:port][/path]`: replaces the registry's prefix.
    pub location: String,
    /// Plain HTTP to this mirror.
    #[serde(default)]
    pub insecure: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RegistriesError {
    #[error("[[registry]] {which}: {reason}")]
    Invalid { which: String, reason: String },
    #[error("[[registry]] prefix {0:?} appears twice")]
    Duplicate(String),
}

/// Where one attempt of a pull goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` (`docker.io` stays `docker.io`: the client knows its
    /// API host).
    pub host: String,
    /// The repository on that host.
    pub repository: String,
    /// Plain HTTP even though the host is not loopback.
    pub insecure: bool,
    /// A mirror (a failure there falls through to the next endpoint).
    pub mirror: bool,
}

fn direct_endpoint(r: &Reference) -> Endpoint {
    Endpoint {
        host: r.registry.clone(),
        repository: r.repository.clone(),
        insecure: false,
        mirror: false,
    }
}

/// The validated `[[registry]]` tables.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Registries {
    entries: Vec<(String, Registry)>,
}

/// Checks `host[:port][/path]`: what a prefix or a location may be.
fn check_location(which: &str, loc: &str) -> Result<(), RegistriesError> {
    let invalid = |reason: &str| RegistriesError::Invalid {
        which: which.to_owned(),
        reason: reason.to_owned(),
    };
    if loc.is_empty() {
        return Err(invalid("is empty"));
    }
    if loc.contains("://") {
        return Err(invalid(
            "is host[:port][/path] without a scheme (insecure = true means plain HTTP)",
        ));
    }
    if loc.contains('@') || loc.ends_with('/') || loc.starts_with('*') {
        return Err(invalid(
            "is host[:port][/path]: no tag, digest, wildcard or trailing /",
        ));
    }
    // A reference under it must parse: the location's host and path
    // components follow the reference rules.
    let probe = if loc.contains('/') || loc.contains('.') || loc.contains(':') {
        format!("{loc}/x")
    } else {
        // A bare word is a registry host here (`localhost`, `mirror`).
        format!("{loc}.invalid/x")
    };
    let r = Reference::parse(&probe).map_err(|e| invalid(&e.to_string()))?;
    if r.tag.as_deref() != Some("latest") || r.digest.is_some() {
        return Err(invalid("names a tag"));
    }
    Ok(())
}

/// Whether `name` (`registry/repository`) is under `prefix`: equal, or
/// followed by a `/` (whole components only: `quay.io/a` is not under
/// `quay.io/ab`).
fn under(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// `location` + what follows the prefix in `name`, split into host and
/// repository.
fn rewrite(name: &str, prefix: &str, location: &str, insecure: bool, mirror: bool) -> Endpoint {
    let full = format!("{location}{}", &name[prefix.len()..]);
    let (host, repository) = full.split_once('/').unwrap_or((&full, ""));
    Endpoint {
        host: host.to_owned(),
        repository: repository.to_owned(),
        insecure,
        mirror,
    }
}

impl Registries {
    /// Validates the tables: each names a prefix or a location, locations
    /// are `host[:port][/path]`, no prefix twice.
    pub fn new(tables: Vec<Registry>) -> Result<Registries, RegistriesError> {
        let mut entries: Vec<(String, Registry)> = Vec::new();
        for (i, t) in tables.into_iter().enumerate() {
            let Some(prefix) = t.prefix.clone().or_else(|| t.location.clone()) else {
                return Err(RegistriesError::Invalid {
                    which: format!("#{}", i + 1),
                    reason: "has neither prefix nor location".into(),
                });
            };
            let which = format!("prefix {prefix:?}");
            check_location(&which, &prefix)?;
            if let Some(l) = &t.location {
                check_location(&format!("{which} location"), l)?;
            }
            for m in &t.mirror {
                check_location(&format!("{which} mirror"), &m.location)?;
            }
            if entries.iter().any(|(p, _)| *p == prefix) {
                return Err(RegistriesError::Duplicate(prefix));
            }
            entries.push((prefix, t));
        }
        Ok(Registries { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Where a pull of `r` asks, in order: its mirrors, then the registry
    /// (its `location` if one is set). Never empty.
    pub fn endpoints(&self, r: &Reference) -> Vec<Endpoint> {
        let name = r.name();
        let direct = direct_endpoint(r);
        let best = self
            .entries
            .iter()
            .filter(|(p, _)| under(&name, p))
            .max_by_key(|(p, _)| p.len());
        let Some((prefix, reg)) = best else {
            return vec![direct];
        };
        let mut out: Vec<Endpoint> = reg
            .mirror
            .iter()
            .map(|m| rewrite(&name, prefix, &m.location, m.insecure, true))
            .collect();
        out.push(match &reg.location {
            Some(l) => rewrite(&name, prefix, l, reg.insecure, false),
            None => Endpoint {
                insecure: reg.insecure,
                ..direct
            },
        });
        // A host-only location for a prefix naming a whole repository
        // leaves no repository to ask for: such an endpoint is skipped.
        out.retain(|e| !e.repository.is_empty());
        if out.is_empty() {
            out.push(direct_endpoint(r));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(prefix: &str, mirrors: &[(&str, bool)]) -> Registry {
        Registry {
            prefix: Some(prefix.into()),
            location: None,
            insecure: false,
            mirror: mirrors
                .iter()
                .map(|(l, i)| Mirror {
                    location: (*l).into(),
                    insecure: *i,
                })
                .collect(),
        }
    }

    fn hosts(rs: &Registries, reference: &str) -> Vec<String> {
        rs.endpoints(&Reference::parse(reference).unwrap())
            .into_iter()
            .map(|e| {
                format!(
                    "{}/{}{}",
                    e.host,
                    e.repository,
                    if e.insecure { " (insecure)" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn mirrors_first_then_the_registry_longest_prefix_wins() {
        let rs = Registries::new(vec![
            reg(
                "registry.k8s.io",
                &[("127.0.0.1:5000/registry.k8s.io", false)],
            ),
            reg(
                "gcr.io/k8s-staging-cri-tools",
                &[("mirror.example/cri", true), ("127.0.0.1:5000/gcr", false)],
            ),
            reg("gcr.io", &[("127.0.0.1:5000/gcr.io", false)]),
            reg("docker.io", &[("mirror.gcr.io", false)]),
        ])
        .unwrap();
        assert_eq!(
            hosts(&rs, "registry.k8s.io/pause:3.9"),
            [
                "127.0.0.1:5000/registry.k8s.io/pause",
                "registry.k8s.io/pause"
            ]
        );
        assert_eq!(
            hosts(&rs, "gcr.io/k8s-staging-cri-tools/test-image-1"),
            [
                "mirror.example/cri/test-image-1 (insecure)",
                "127.0.0.1:5000/gcr/test-image-1",
                "gcr.io/k8s-staging-cri-tools/test-image-1"
            ]
        );
        assert_eq!(
            hosts(&rs, "gcr.io/other/x"),
            ["127.0.0.1:5000/gcr.io/other/x", "gcr.io/other/x"]
        );
        assert_eq!(
            hosts(&rs, "busybox"),
            ["mirror.gcr.io/library/busybox", "docker.io/library/busybox"]
        );
        // Not under any prefix: the registry alone.
        assert_eq!(hosts(&rs, "quay.io/a/b"), ["quay.io/a/b"]);
        // Whole components only.
        assert_eq!(
            hosts(&rs, "registry.k8s.io.evil/x"),
            ["registry.k8s.io.evil/x"]
        );
        assert_eq!(hosts(&Registries::default(), "a.io/b"), ["a.io/b"]);
    }

    #[test]
    fn a_location_replaces_the_registry_and_insecure_is_per_entry() {
        let rs = Registries::new(vec![Registry {
            prefix: Some("example.com/team".into()),
            location: Some("registry.internal:8443/mirror/team".into()),
            insecure: true,
            mirror: vec![],
        }])
        .unwrap();
        assert_eq!(
            hosts(&rs, "example.com/team/app:1"),
            ["registry.internal:8443/mirror/team/app (insecure)"]
        );
        // The prefix defaults to the location.
        let rs = Registries::new(vec![Registry {
            prefix: None,
            location: Some("quay.io".into()),
            insecure: false,
            mirror: vec![Mirror {
                location: "localhost:5000".into(),
                insecure: false,
            }],
        }])
        .unwrap();
        assert_eq!(
            hosts(&rs, "quay.io/a/b"),
            ["localhost:5000/a/b", "quay.io/a/b"]
        );
    }

    #[test]
    fn bad_tables_are_named() {
        let bad = |t: Registry| Registries::new(vec![t]).unwrap_err().to_string();
        assert!(bad(reg("https://x.io", &[])).contains("without a scheme"));
        assert!(bad(reg("x.io", &[("http://m", false)])).contains("mirror"));
        assert!(bad(reg("x.io/a:tag", &[])).contains("prefix"));
        assert!(bad(reg("*.x.io", &[])).contains("wildcard"));
        assert!(bad(reg("x.io/", &[])).contains("trailing"));
        assert!(bad(reg("x.io", &[("", false)])).contains("empty"));
        assert!(bad(reg("X.io/Upper", &[])).contains("prefix"));
        let none = Registry {
            prefix: None,
            location: None,
            insecure: false,
            mirror: vec![],
        };
        assert!(bad(none).contains("neither prefix nor location"));
        assert_eq!(
            Registries::new(vec![reg("x.io", &[]), reg("x.io", &[])]),
            Err(RegistriesError::Duplicate("x.io".into()))
        );
    }
}
