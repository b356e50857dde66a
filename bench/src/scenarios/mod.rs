//! The scenarios of the benchmark, one module each. A scenario gets the
//! context (engines, berth's client, sizes) and returns one section of the
//! report; it cleans up what it made, even when it fails half-way.

use anyhow::Result;

use crate::berth::Berth;
use crate::engines::{Engine, Op};
use crate::env::Env;
use crate::measure::Section;

pub mod cpu;
pub mod cri;
pub mod cri_exec;
pub mod exec;
pub mod first_line;
pub mod image_run;
pub mod lifecycle;
pub mod memory;
pub mod network;
pub mod resident;
pub mod restart;
pub mod scale;
pub mod stats;
pub mod storage;

pub struct Ctx<'e> {
    pub env: &'e Env,
    pub berth: Berth,
    /// berth first, then the peers this machine has.
    pub engines: Vec<Box<dyn Engine + 'e>>,
    /// Samples per tool in serial scenarios.
    pub iterations: usize,
    /// Containers in the scale scenarios (1000 in the full run).
    pub scale: usize,
    /// Clients at once in the concurrent lifecycle variants (16 and 64).
    pub concurrency: Vec<usize>,
}

impl Ctx<'_> {
    /// The engines that can do `op`, berth first.
    pub fn engines_for(&self, op: Op) -> Vec<&dyn Engine> {
        self.engines
            .iter()
            .map(|e| e.as_ref())
            .filter(|e| e.can(op))
            .collect()
    }

    pub fn engine(&self, name: &str) -> Option<&dyn Engine> {
        self.engines
            .iter()
            .map(|e| e.as_ref())
            .find(|e| e.name() == name)
    }
}

pub type Scenario = fn(&Ctx) -> Result<Section>;

/// Every scenario, in the report's order: (name for --only, function).
pub const ALL: &[(&str, Scenario)] = &[
    ("lifecycle", lifecycle::run),
    ("cpu", cpu::run),
    ("exec", exec::run),
    ("first-line", first_line::run),
    ("network", network::run),
    ("cri", cri::run),
    ("storage", storage::run),
    ("image-run", image_run::run),
    // Scenarios 5–7 and scale share one run of ctx.scale containers
    // (scale.rs): the first of them asked runs it all.
    ("memory", memory::run),
    ("restart", restart::run),
    ("stats", stats::run),
    ("scale", scale::run),
];
