//! berth-generator NORMAL [EARLY LATE]: systemd's generator for berth
//! (installed in /usr/lib/systemd/system-generators/); the work is in
//! berthctl's library, generator.rs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use berthctl::{generator, genlog};

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let Some(out) = args.first() else {
        eprintln!("usage: berth-generator NORMAL-DIR [EARLY-DIR LATE-DIR]");
        return ExitCode::from(2);
    };
    // berthctl beside us (a development tree, tests), else the packaged one.
    let berthctl = std::env::current_exe()
        .ok()
        .and_then(|e| std::fs::canonicalize(e).ok())
        .map(|e| e.with_file_name("berthctl"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/berthctl"));
    let outcome = generator::generate(Path::new(generator::CONFIG_DIR), out, &berthctl);
    for (path, e) in &outcome.failed {
        genlog::error(&format!("{e}; no unit made for it"), path, e.line());
    }
    // Non-zero makes systemd log the failure too; what was written is used.
    match outcome.failed.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}
