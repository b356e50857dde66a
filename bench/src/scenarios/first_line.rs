//! Scenario 4: from the order to start a created container to the first
//! line of its output reaching the client.

use anyhow::Result;

use super::Ctx;
use crate::engines::Op;
use crate::measure::{interleave, Section, Unit};

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "first-line",
        "Start → first line of output",
        Unit::Ms,
        "A container running `echo hi` is created (untimed); the clock runs from the \
         start order to the line reaching the client. berth: AttachContainer's stream, \
         then StartContainer; runc: `runc create` with a pipe as its stdio, then \
         `runc start`; podman: `podman create`, then `podman start --attach`. \
         containerd is left out: `ctr task start` creates the task as well.",
    );
    let engines = ctx.engines_for(Op::FirstLine);
    let names: Vec<&str> = engines.iter().map(|e| e.name()).collect();
    for e in &engines {
        e.first_line(&format!("fl-warm-{}", e.name()))?;
    }
    let samples = interleave(&names, ctx.iterations, |tool, i| {
        let e = ctx
            .engine(tool)
            .ok_or_else(|| anyhow::anyhow!("no engine {tool}"))?;
        e.first_line(&format!("fl-{tool}-{i}"))
    })?;
    for (tool, v) in samples {
        s.push(&tool, "start → first line", v);
    }
    Ok(s)
}
