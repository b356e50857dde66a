//! What a scenario measures and hands to the report: sections of series of
//! samples, with the percentiles and ratios computed the same way everywhere.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// The unit of a section's samples (all series of a section share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Unit {
    Ms,
    KiB,
}

impl Unit {
    pub fn label(self) -> &'static str {
        match self {
            Unit::Ms => "ms",
            Unit::KiB => "KiB",
        }
    }
}

/// One tool's samples in one variant of a scenario ("serial", "16
/// concurrent", "100 running").
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Series {
    pub tool: String,
    pub variant: String,
    pub samples: Vec<f64>,
}

/// A goal from the issue, checked against a measured figure.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Goal {
    pub what: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
    /// Why it is missed (or how it was measured), when that needs saying.
    pub why: String,
}

/// One scenario's results.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Section {
    pub id: String,
    pub title: String,
    pub unit: Unit,
    /// How it was measured, for the reader of the report.
    pub method: String,
    pub series: Vec<Series>,
    pub goals: Vec<Goal>,
    /// Skipped peers, errors seen, limits hit.
    pub notes: Vec<String>,
}

impl Section {
    pub fn new(id: &str, title: &str, unit: Unit, method: &str) -> Self {
        Section {
            id: id.into(),
            title: title.into(),
            unit,
            method: method.into(),
            series: Vec::new(),
            goals: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn push(&mut self, tool: &str, variant: &str, samples: Vec<f64>) {
        self.series.push(Series {
            tool: tool.into(),
            variant: variant.into(),
            samples,
        });
    }

    pub fn note(&mut self, text: impl Into<String>) {
        let text = text.into();
        println!("  note: {text}");
        self.notes.push(text);
    }

    pub fn goal(&mut self, what: &str, target: &str, measured: String, met: bool, why: &str) {
        println!(
            "  goal {what}: {target} — measured {measured}: {}",
            if met { "met" } else { "MISSED" }
        );
        self.goals.push(Goal {
            what: what.into(),
            target: target.into(),
            measured,
            met,
            why: why.into(),
        });
    }

    /// The series of `tool` in `variant`, if measured.
    pub fn find(&self, tool: &str, variant: &str) -> Option<&Series> {
        self.series
            .iter()
            .find(|s| s.tool == tool && s.variant == variant)
    }

    /// Median of berth's series over the peer's in `variant`.
    pub fn ratio(&self, peer: &str, variant: &str) -> Option<f64> {
        let b = median(&self.find("berth", variant)?.samples)?;
        let p = median(&self.find(peer, variant)?.samples)?;
        (p > 0.0).then(|| b / p)
    }
}

/// Nearest-rank percentile (p in 0..=1) of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
    Some(v[rank - 1])
}

pub fn median(samples: &[f64]) -> Option<f64> {
    percentile(samples, 0.5)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Times `f`, in ms.
pub fn timed(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let t0 = Instant::now();
    f()?;
    Ok(ms(t0.elapsed()))
}

/// Runs `f(tool, i)` `rounds` times for every tool, the tools taking turns
/// (and the order rotating each round, so no tool always runs right after
/// the same other one): interleaved, as the issue asks, so drift in the
/// machine's load hits every tool alike. Returns the samples per tool.
pub fn interleave<T: AsRef<str>>(
    tools: &[T],
    rounds: usize,
    mut f: impl FnMut(&str, usize) -> Result<f64>,
) -> Result<BTreeMap<String, Vec<f64>>> {
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (i, k) in rotation(tools.len(), rounds) {
        let tool = tools[k].as_ref();
        let v = f(tool, i).with_context(|| format!("{tool}, round {i}"))?;
        out.entry(tool.to_string()).or_default().push(v);
    }
    Ok(out)
}

/// (round, tool index) pairs: every tool once a round, starting one further
/// each round.
pub fn rotation(tools: usize, rounds: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rounds).flat_map(move |i| (0..tools).map(move |k| (i, (i + k) % tools)))
}

/// `workers` threads each running `per_worker` operations `f(worker, i)`
/// (each returning its latency in ms) at once; returns the latencies and
/// the wall time in ms.
pub fn concurrent(
    workers: usize,
    per_worker: usize,
    f: impl Fn(usize, usize) -> Result<f64> + Sync,
) -> Result<(Vec<f64>, f64)> {
    let barrier = std::sync::Barrier::new(workers + 1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (f, barrier) = (&f, &barrier);
                s.spawn(move || {
                    barrier.wait();
                    (0..per_worker)
                        .map(|i| f(w, i))
                        .collect::<Result<Vec<f64>>>()
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let mut all = Vec::with_capacity(workers * per_worker);
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(v)) => all.extend(v),
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(anyhow::anyhow!("a worker panicked"))),
            }
        }
        let wall = ms(t0.elapsed());
        match first_err {
            Some(e) => Err(e),
            None => Ok((all, wall)),
        }
    })
}

/// VmRSS and Pss (KiB) of a process, from /proc (smaps_rollup for Pss).
pub fn rss_pss(pid: u32) -> Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("/proc/{pid}/smaps_rollup"))?;
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let rss = field(&status, "VmRSS:").context("no VmRSS")?;
    let pss = field(&rollup, "Pss:").context("no Pss")?;
    Ok((rss, pss))
}

/// Pids whose /proc/PID/comm is `comm`.
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 0.5), Some(50.0));
        assert_eq!(percentile(&v, 0.99), Some(99.0));
        assert_eq!(percentile(&v, 1.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 0.99), Some(7.0));
        assert_eq!(percentile(&[], 0.5), None);
    }

    #[test]
    fn interleaving_rotates_the_order() {
        let mut order = Vec::new();
        let out = interleave(&["a", "b", "c"], 3, |t, _| {
            order.push(t.to_string());
            Ok(1.0)
        })
        .expect("no errors");
        assert_eq!(order.join(""), "abcbcacab");
        assert_eq!(out["a"].len(), 3);
    }

    #[test]
    fn ratio_of_medians() {
        let mut s = Section::new("x", "x", Unit::Ms, "");
        s.push("berth", "serial", vec![1.0, 2.0, 3.0]);
        s.push("runc", "serial", vec![4.0, 4.0, 8.0]);
        assert_eq!(s.ratio("runc", "serial"), Some(0.5));
        assert_eq!(s.ratio("podman", "serial"), None);
    }
}
