//! Scenario 3: exec of /bin/true into a running container, to its exit.

use anyhow::Result;

use super::Ctx;
use crate::engines::{Engine, Op};
use crate::measure::{interleave, timed, Section, Unit};

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "exec",
        "Exec of /bin/true into a running container",
        Unit::Ms,
        "Each engine runs one `sleep` container; then, tools taking turns, one exec \
         of /bin/true into it, timed to the exec'd process's exit. berth: \
         ExecContainerAndWait on berthd's private socket (the exec and its exit in one call); runc: `runc exec`; podman: `podman \
         exec`; containerd: `ctr task exec`.",
    );
    let engines = ctx.engines_for(Op::Exec);
    let mut running: Vec<&dyn Engine> = Vec::new();
    let result = (|| {
        for e in &engines {
            e.run_sleeping(&format!("exec-{}", e.name()))?;
            running.push(*e);
        }
        let names: Vec<&str> = engines.iter().map(|e| e.name()).collect();
        // Warm-up round, not counted.
        for e in &engines {
            e.exec_true(&format!("exec-{}", e.name()), "warm")?;
        }
        interleave(&names, ctx.iterations, |tool, i| {
            let e = ctx
                .engine(tool)
                .ok_or_else(|| anyhow::anyhow!("no engine {tool}"))?;
            timed(|| e.exec_true(&format!("exec-{tool}"), &format!("e{i}")))
        })
    })();
    for e in running {
        if let Err(err) = e.remove(&format!("exec-{}", e.name())) {
            s.note(format!("{}: removing its container: {err:#}", e.name()));
        }
    }
    for (tool, samples) in result? {
        s.push(&tool, "exec", samples);
    }
    if let Some(r) = s.ratio("runc", "exec") {
        s.goal(
            "exec vs runc",
            "≤ 0.2× `runc exec`",
            format!("{r:.2}×"),
            r <= 0.2,
            "medians; berth's execs go through berthd's exec server (docs/performance.md)",
        );
    }
    Ok(s)
}
