//! `berthctl stats`: podman's one table (ID, NAME, CPU %, MEM USAGE / LIMIT,
//! MEM %, NET IO, BLOCK IO, PIDS), redrawn every --interval until ^C, or once
//! with --no-stream; --format json or a template.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use serde_json::{json, Value as Json};

use crate::cli::StatsOpts;
use crate::record::{self, dict_json};
use crate::{connect, format, when, Result};

const TABLE: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn header(field: &str) -> Option<&'static str> {
    Some(match field {
        "ID" => "ID",
        "Name" => "NAME",
        "CPUPerc" => "CPU %",
        "MemUsage" => "MEM USAGE / LIMIT",
        "MemPerc" => "MEM %",
        "NetIO" => "NET IO",
        "BlockIO" => "BLOCK IO",
        "PIDs" => "PIDS",
        _ => return None,
    })
}

/// podman's units: decimal, "1.5MB", "2.1GB", "512B".
fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1000.0 && i < units.len() - 1 {
        v /= 1000.0;
        i += 1;
    }
    if i == 0 {
        return format!("{n}B");
    }
    let num = format!("{v:.3}");
    format!(
        "{}{}",
        num.trim_end_matches('0').trim_end_matches('.'),
        units[i]
    )
}

/// The host's memory: the limit of a container without one, as podman says.
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time seen at an instant, to turn the next reading into a percentage.
type Seen = HashMap<String, (u64, Instant)>;

/// One row: podman's JSON names, with the raw figures beside them.
fn row(id: &str, started_at: u64, s: &Json, seen: &mut Seen, host_mem: u64) -> Json {
    let num = |k: &str| s[k].as_u64();
    let now = Instant::now();
    let cpu = num("cpu_usage_usec");
    // The first reading: the average since start (podman's --no-stream
    // figure); then the share of the interval.
    let cpu_perc = cpu.map(|c| match seen.insert(id.to_string(), (c, now)) {
        Some((prev, at)) => {
            let wall = now.duration_since(at).as_micros().max(1) as f64;
            c.saturating_sub(prev) as f64 * 100.0 / wall
        }
        None => {
            let wall = when::now_us().saturating_sub(started_at).max(1) as f64;
            c as f64 * 100.0 / wall
        }
    });
    let mem = num("memory_current");
    let limit = num("memory_max").unwrap_or(host_mem);
    let mem_perc = mem
        .filter(|_| limit > 0)
        .map(|m| m as f64 * 100.0 / limit as f64);
    let io = match (num("io_read_bytes"), num("io_write_bytes")) {
        (Some(r), Some(w)) => format!("{} / {}", bytes(r), bytes(w)),
        _ => "-- / --".into(),
    };
    let pct = |p: Option<f64>| p.map_or("--".into(), |p| format!("{p:.2}%"));
    json!({
        "ID": id.chars().take(12).collect::<String>(),
        "Id": id,
        "Name": id,
        "CPUPerc": pct(cpu_perc),
        "MemUsage": match mem {
            Some(m) => format!("{} / {}", bytes(m), bytes(limit)),
            None => "-- / --".into(),
        },
        "MemPerc": pct(mem_perc),
        // berthd has no networking yet: nothing to count.
        "NetIO": "-- / --",
        "BlockIO": io,
        "PIDs": num("pids_current").map_or("--".into(), |p| p.to_string()),
        "CPU": cpu_perc.unwrap_or(0.0),
        "MemUsageBytes": mem.unwrap_or(0),
        "MemLimitBytes": limit,
        "Raw": s,
    })
}

pub fn stats(opts: &StatsOpts) -> Result<u8> {
    let (conn, m) = connect()?;
    let format = if opts.json {
        Some("json")
    } else {
        opts.format.as_deref()
    };
    let once = opts.no_stream || opts.json;
    let tty = std::io::stdout().is_terminal();
    let host_mem = host_memory();
    let mut seen = Seen::new();
    let mut code = 0;
    loop {
        let records = record::all(&conn, &m)?;
        let ids: Vec<(String, u64)> = if opts.ids.is_empty() {
            records
                .iter()
                .filter(|r| opts.all || r.status == "running" || r.status == "paused")
                .map(|r| (r.id.clone(), r.started_at))
                .collect()
        } else {
            opts.ids
                .iter()
                .map(|id| {
                    let started = records
                        .iter()
                        .find(|r| &r.id == id)
                        .map_or(0, |r| r.started_at);
                    (id.clone(), started)
                })
                .collect()
        };
        let mut rows = Vec::new();
        for (id, started) in &ids {
            match m.get_container_stats(id) {
                Ok(s) => rows.push(row(id, *started, &dict_json(&s), &mut seen, host_mem)),
                // Named on the command line: say so. Listed: it went away.
                Err(e) if !opts.ids.is_empty() => {
                    eprintln!("berthctl: {id}: {}", berth_client::describe(&e));
                    code = crate::EXIT_FAILED;
                }
                Err(_) => {}
            }
        }
        if tty && !once {
            // Redraw in place, as podman does.
            print!("\x1b[2J\x1b[H");
        }
        format::print(&rows, format, TABLE, header)?;
        if once {
            return Ok(code);
        }
        std::thread::sleep(Duration::from_secs(opts.interval.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn podman_units() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(1_500_000), "1.5MB");
        assert_eq!(bytes(2_000_000_000), "2GB");
        assert_eq!(bytes(1_234_567), "1.235MB");
    }

    #[test]
    fn a_row_from_berthds_figures() {
        let s = json!({"cpu_usage_usec": 1_000_000u64, "memory_current": 1_000_000u64,
                       "memory_max": 4_000_000u64, "pids_current": 3u64,
                       "io_read_bytes": 0u64, "io_write_bytes": 2048u64});
        let mut seen = Seen::new();
        let r = row("web", when::now_us() - 10_000_000, &s, &mut seen, 8_000_000);
        assert_eq!(r["MemUsage"], "1MB / 4MB");
        assert_eq!(r["MemPerc"], "25.00%");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["BlockIO"], "0B / 2.048kB");
        let cpu = r["CPU"].as_f64().unwrap();
        assert!((9.0..=10.1).contains(&cpu), "{cpu}");
        let none = json!({"memory_current": "unavailable"});
        let r = row("x", 0, &none, &mut seen, 0);
        assert_eq!(r["MemUsage"], "-- / --");
        assert_eq!(r["CPUPerc"], "--");
    }
}
