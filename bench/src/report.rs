//! The report: a table per section on the console as it finishes, and
//! target/bench/report.md (with every goal, met or missed) at the end.

use std::fmt::Write as _;

use crate::measure::{median, percentile, Section, Unit};

/// Rows of a section: (variant, tool, n, median, p99, berth/tool).
fn rows(s: &Section) -> Vec<(String, String, usize, f64, f64, Option<f64>)> {
    s.series
        .iter()
        .map(|x| {
            let ratio = (x.tool != "berth")
                .then(|| s.ratio(&x.tool, &x.variant))
                .flatten();
            (
                x.variant.clone(),
                x.tool.clone(),
                x.samples.len(),
                median(&x.samples).unwrap_or(f64::NAN),
                percentile(&x.samples, 0.99).unwrap_or(f64::NAN),
                ratio,
            )
        })
        .collect()
}

fn fmt_value(v: f64, unit: Unit) -> String {
    match unit {
        Unit::Ms if v < 10.0 => format!("{v:.2}"),
        Unit::Ms => format!("{v:.1}"),
        Unit::KiB => format!("{v:.0}"),
    }
}

/// The section as a plain table for the console.
pub fn print_section(s: &Section) {
    println!("\n== {} ({})", s.title, s.unit.label());
    println!(
        "  {:<24} {:<12} {:>5} {:>10} {:>10} {:>11}",
        "variant", "tool", "n", "median", "p99", "berth/tool"
    );
    for (variant, tool, n, p50, p99, ratio) in rows(s) {
        println!(
            "  {variant:<24} {tool:<12} {n:>5} {:>10} {:>10} {:>11}",
            fmt_value(p50, s.unit),
            fmt_value(p99, s.unit),
            ratio.map_or("".into(), |r| format!("{r:.2}×"))
        );
    }
}

pub struct Header {
    pub host: String,
    pub tools: Vec<String>,
    pub command: String,
    pub iterations: usize,
    pub scale: usize,
    pub missing: Vec<String>,
    pub failed: Vec<String>,
}

pub fn markdown(h: &Header, sections: &[Section]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# berth benchmark report\n");
    let _ = writeln!(out, "Command: `{}`  ", h.command);
    let _ = writeln!(out, "Host: {}  ", h.host);
    let _ = writeln!(
        out,
        "Samples: {} per tool in serial scenarios; scale scenarios with {} containers.  ",
        h.iterations, h.scale
    );
    let _ = writeln!(
        out,
        "All tools ran in the same systemd box in the same run, interleaved \
         (tools take turns, the order rotating). Ratios are berth's median over \
         the peer's (below 1: berth is faster or smaller).\n"
    );
    let _ = writeln!(out, "Tools:\n");
    for t in &h.tools {
        let _ = writeln!(out, "- {t}");
    }
    for m in &h.missing {
        let _ = writeln!(out, "- not measured: {m}");
    }
    for f in &h.failed {
        let _ = writeln!(out, "- **scenario failed**: {f}");
    }
    let _ = writeln!(out, "\n![chart](chart.svg)\n");

    let _ = writeln!(out, "## Goals\n");
    let _ = writeln!(out, "| goal | target | measured | | how / why |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for s in sections {
        for g in &s.goals {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                g.what,
                g.target,
                g.measured,
                if g.met { "met" } else { "**missed**" },
                g.why
            );
        }
    }
    for s in sections {
        let _ = writeln!(out, "\n## {}\n", s.title);
        let _ = writeln!(out, "{}\n", s.method);
        let _ = writeln!(
            out,
            "| variant | tool | n | median ({u}) | p99 ({u}) | berth/tool |",
            u = s.unit.label()
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|");
        for (variant, tool, n, p50, p99, ratio) in rows(s) {
            let _ = writeln!(
                out,
                "| {variant} | {tool} | {n} | {} | {} | {} |",
                fmt_value(p50, s.unit),
                fmt_value(p99, s.unit),
                ratio.map_or("".into(), |r| format!("{r:.2}×"))
            );
        }
        if !s.notes.is_empty() {
            let _ = writeln!(out);
            for n in &s.notes {
                let _ = writeln!(out, "- {n}");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_has_ratios_and_goals() {
        let mut s = Section::new("l", "Lifecycle", Unit::Ms, "how");
        s.push("berth", "serial", vec![10.0, 12.0, 11.0]);
        s.push("runc", "serial", vec![20.0, 22.0, 24.0]);
        s.goal("vs runc", "≤ 0.5×", "0.50×".into(), true, "medians");
        let h = Header {
            host: "h".into(),
            tools: vec!["runc 1".into()],
            command: "bench/run".into(),
            iterations: 3,
            scale: 10,
            missing: vec![],
            failed: vec![],
        };
        let md = markdown(&h, &[s]);
        assert!(
            md.contains("| serial | runc | 3 | 22.0 | 24.0 | 0.50× |"),
            "{md}"
        );
        assert!(
            md.contains("| vs runc | ≤ 0.5× | 0.50× | met | medians |"),
            "{md}"
        );
    }
}
