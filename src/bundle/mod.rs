//! The rewritten bundle a container is created from when its options change
//! the spec: the user's config.json (or an image's generated spec), with the
//! options applied (edit.rs), written to `<state dir>/bundles/<id>/` (write.rs).
//! The user's bundle is never written; the copy's root.path is made absolute
//! so it still names the original rootfs.

mod edit;
pub mod init;
mod security;
mod storage;
mod write;

#[cfg(test)]
mod namespaces_tests;
#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;

pub(crate) use edit::bare_linux;
pub use edit::{apply, set_env};
pub use security::SecurityApplyError;
pub(crate) use write::write_atomically;
pub use write::{write_from, write_spec};
