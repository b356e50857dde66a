//! `runc-no-cpu`: runc for containerd's CRI plugin in the box, without
//! the CPU weight. containerd 1.6 gives every pod sandbox a CPU weight
//! (cpu shares 2) that runc writes to cpu.weight, and the box's cgroup tree
//! has no cpu controller, so no pod would start (../shared/tools/README.md).
//! berth-bench is installed as a symlink of that name (the runtime's
//! BinaryName in containerd's config); called so, it drops
//! linux.resources.cpu from the bundle's config.json on `create`/`run` and
//! execs the real runc with the same arguments.

use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{Context, Result};

pub const NAME: &str = "runc-no-cpu";

/// True when this process was started under the wrapper's name.
pub fn invoked() -> bool {
    std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n == NAME))
        .unwrap_or(false)
}

/// Edits the bundle, then becomes runc (returns only on failure).
pub fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "create" || a == "run") {
        let bundle = args
            .iter()
            .position(|a| a == "--bundle" || a == "-b")
            .and_then(|i| args.get(i + 1));
        if let Some(bundle) = bundle {
            let path = Path::new(bundle).join("config.json");
            let text = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
            let mut config: serde_json::Value = serde_json::from_slice(&text)?;
            if let Some(r) = config
                .pointer_mut("/linux/resources")
                .and_then(|r| r.as_object_mut())
            {
                r.remove("cpu");
            }
            std::fs::write(&path, serde_json::to_vec(&config)?)?;
        }
    }
    let err = std::process::Command::new("runc").args(&args).exec();
    Err(err).context("exec runc")
}
