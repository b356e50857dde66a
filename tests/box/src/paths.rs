//! Where things are: the launcher binary, the project, the cargo target dir.

use std::env;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// systemd's binary on Debian.
pub const SYSTEMD: &str = "/lib/systemd/systemd";

/// The `berth-box` binary that launches boxes. Tests run from
/// `target/<profile>/deps/`, the binary sits in `target/<profile>/`.
pub fn launcher_path() -> Result<PathBuf> {
    if let Some(p) = env::var_os("BERTH_BOX_BIN") {
        return Ok(PathBuf::from(p));
    }
    let exe = env::current_exe().map_err(|e| Error::io("locating the current executable", e))?;
    if exe.file_name().is_some_and(|n| n == "berth-box") {
        return Ok(exe);
    }
    exe.ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join("berth-box"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "the berth-box launcher was not found next to {} (cargo build -p berth-box, or set BERTH_BOX_BIN)",
                exe.display()
            ))
        })
}

/// The workspace root: the outermost ancestor of the current directory (or of the
/// running executable) that holds a Cargo.toml with a `[workspace]` table.
pub fn project_root() -> Option<PathBuf> {
    if let Some(p) = env::var_os("BERTH_PROJECT_DIR") {
        return Some(PathBuf::from(p));
    }
    let starts = [env::current_dir().ok(), env::current_exe().ok()];
    starts
        .into_iter()
        .flatten()
        .find_map(|start| workspace_above(&start))
}

fn workspace_above(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .filter(|d| {
            std::fs::read_to_string(d.join("Cargo.toml"))
                .map(|t| t.lines().any(|l| l.trim() == "[workspace]"))
                .unwrap_or(false)
        })
        .last()
        .map(Path::to_path_buf)
}

/// The cargo target directory the running binaries came from.
pub fn target_dir() -> Option<PathBuf> {
    if let Some(p) = env::var_os("CARGO_TARGET_DIR") {
        return std::fs::canonicalize(p).ok();
    }
    let exe = env::current_exe().ok()?;
    // cargo marks its target dir with CACHEDIR.TAG; a copied target dir may
    // lack it, so the parent of the profile dir (debug/release) also counts.
    exe.ancestors()
        .find(|d| d.join("CACHEDIR.TAG").exists())
        .or_else(|| {
            exe.ancestors()
                .find(|d| {
                    matches!(
                        d.file_name().and_then(|n| n.to_str()),
                        Some("debug" | "release")
                    )
                })
                .and_then(Path::parent)
        })
        .map(Path::to_path_buf)
}
