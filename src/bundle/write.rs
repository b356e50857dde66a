//! Writing the rewritten bundle. Synchronous on purpose: it fsyncs, which
//! must not stall an async executor thread — callers run it on tokio's
//! blocking pool (spawn_blocking).

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::Error;
use crate::options::CreateOptions;

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// The user's config.json cannot be read.
    #[error("{}/config.json: {source}", bundle.display())]
    Read {
        bundle: PathBuf,
        source: std::io::Error,
    },
    #[error("config.json: {0}")]
    Parse(serde_json::Error),
    /// The copy cannot be written (berthd's own state directory).
    #[error("{}: {source}", dir.display())]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", dir.display())]
    Serialize {
        dir: PathBuf,
        source: serde_json::Error,
    },
    /// The result, read as the runtime will, is not a valid spec.
    /// Security options that cannot apply to this spec (a sysctl of a
    /// namespace shared with the host, no default seccomp profile).
    #[error(transparent)]
    Security(#[from] super::SecurityApplyError),
    #[error(transparent)]
    Init(#[from] super::init::InitError),
    #[error(transparent)]
    Invalid(#[from] crate::init_calls::spec::SpecError),
}

impl From<BundleError> for Error {
    fn from(e: BundleError) -> Self {
        match e {
            BundleError::Write { .. }
            | BundleError::Serialize { .. }
            | BundleError::Init(super::init::InitError::Copy { .. }) => {
                Error::Internal(e.to_string())
            }
            _ => Error::InvalidArgument(e.to_string()),
        }
    }
}

/// Applies `opts` to `bundle`'s config.json and writes the result into
/// `dir` (created 0700); returns `dir`, the bundle to create from.
pub fn write_from(opts: &CreateOptions, bundle: &Path, dir: &Path) -> Result<PathBuf, BundleError> {
    let text = std::fs::read_to_string(bundle.join("config.json")).map_err(|source| {
        BundleError::Read {
            bundle: bundle.to_owned(),
            source,
        }
    })?;
    let spec: Spec = serde_json::from_str(&text).map_err(BundleError::Parse)?;
    write_spec(opts, spec, bundle, dir)
}

/// Applies `opts` to `spec` (relative paths meaning `bundle`'s) and writes
/// it as `dir`/config.json; returns `dir`.
pub fn write_spec(
    opts: &CreateOptions,
    mut spec: Spec,
    bundle: &Path,
    dir: &Path,
) -> Result<PathBuf, BundleError> {
    super::apply(opts, &mut spec, bundle);
    // After the other edits: the network may add the namespace a sysctl
    // needs, and seccomp's rules depend on the capabilities kept.
    // A caller's whole spec (CRI) says its own seccomp: none (Unconfined),
    // a profile (Localhost), or the runtime/default annotation.
    let image_default = opts.image.is_some() && opts.cri.spec.is_none();
    super::security::apply(&opts.security, image_default, &mut spec)?;
    if opts.security.init {
        super::init::edit(&mut spec, dir)?;
    }
    let text = serde_json::to_vec(&spec).map_err(|source| BundleError::Serialize {
        dir: dir.to_owned(),
        source,
    })?;
    write_atomically(dir, &text).map_err(|source| BundleError::Write {
        dir: dir.to_owned(),
        source,
    })?;
    if opts.security.init {
        super::init::copy_into(dir)?;
    }
    // Check the result as the runtime will read it.
    crate::init_calls::spec::load(dir)?;
    Ok(dir.to_owned())
}

/// Writes `text` as `dir`/config.json: a temporary file made durable, then
/// renamed over, so a crash leaves the old file or the new one, never a
/// torn one (recovery may meet either).
pub(crate) fn write_atomically(dir: &Path, text: &[u8]) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(".config.json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join("config.json"))?;
    // The rename is only durable once the directory is.
    std::fs::File::open(dir)?.sync_all()
}
