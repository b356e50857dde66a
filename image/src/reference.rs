//! Image references, normalized the way docker and podman do:
//! `busybox` → `docker.io/library/busybox:latest`,
//! `localhost:5000/app@sha256:…` keeps its registry and digest.

use std::fmt;

use crate::digest::Digest;

pub const DEFAULT_REGISTRY: &str = "docker.io";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("image reference {0:?} is empty")]
    Empty(String),
    #[error("image reference {reference:?}: {reason}")]
    Invalid { reference: String, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `quay.io`.
    pub registry: String,
    /// `library/busybox`.
    pub repository: String,
    /// `latest` when neither tag nor digest was given.
    pub tag: Option<String>,
    pub digest: Option<Digest>,
}

fn invalid(reference: &str, reason: impl Into<String>) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        reason: reason.into(),
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ separated by ".", "_", "__" or "-"s, as the distribution spec has it.
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && t.bytes().next().is_some_and(|b| b != b'.' && b != b'-')
}

fn valid_registry(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 255
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

impl Reference {
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty(s.to_owned()));
        }
        if s.len() > 1024 {
            return Err(invalid(s, "longer than 1024 bytes"));
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => (
                n,
                Some(Digest::parse(d).map_err(|e| invalid(s, e.to_string()))?),
            ),
            None => (s, None),
        };
        // A tag follows the last ':' that comes after the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name[last_slash..].rfind(':') {
            Some(i) => {
                let tag = &name[last_slash + i + 1..];
                if !valid_tag(tag) {
                    return Err(invalid(s, format!("bad tag {tag:?}")));
                }
                (&name[..last_slash + i], Some(tag.to_owned()))
            }
            None => (name, None),
        };
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DEFAULT_REGISTRY.to_owned(), name.to_owned()),
        };
        if !valid_registry(&registry) {
            return Err(invalid(s, format!("bad registry {registry:?}")));
        }
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !repository.split('/').all(valid_component) {
            return Err(invalid(
                s,
                "repository components are lowercase letters, digits and . _ -",
            ));
        }
        let tag = match (&tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            _ => tag,
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(invalid(tag, "bad tag"));
        }
        Ok(Reference {
            tag: Some(tag.to_owned()),
            digest: None,
            ..self.clone()
        })
    }

    /// Whether `s` is a bare tag (as OCI layouts name their images).
    pub fn is_bare_tag(s: &str) -> bool {
        valid_tag(s) && !s.contains('/')
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).unwrap().to_string()
    }

    #[test]
    fn references_normalize_like_docker() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("me/app"), "docker.io/me/app:latest");
        assert_eq!(norm("localhost:5000/app"), "localhost:5000/app:latest");
        assert_eq!(norm("127.0.0.1:5000/a/b:v1"), "127.0.0.1:5000/a/b:v1");
        let d = format!("quay.io/x/y@{}", Digest::of(b"x"));
        assert_eq!(norm(&d), d);
        for bad in [
            "",
            "Upper",
            "a//b",
            "a:bad tag",
            "x@sha256:12",
            "a/../b",
            "-a",
        ] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
        assert!(Reference::is_bare_tag("latest"));
        assert!(!Reference::is_bare_tag("a/b"));
    }
}
