//! berth-bench: runs inside the systemd box that `bench/run` boots. Installs
//! berthd from this build, finds the peers (runc, podman, containerd,
//! systemd-run), runs every scenario for berth and each peer interleaved,
//! prints each section as it finishes, and writes report.md, chart.svg and
//! samples.json into --out.

mod berth;
mod chart;
mod cri_env;
mod engines;
mod env;
mod measure;
mod report;
mod runc_no_cpu;
mod scenarios;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use engines::{Containerd, Engine, Podman, Runc, SystemdRun};
use env::{sh, Env};
use scenarios::Ctx;

#[derive(Parser, Debug)]
#[command(
    name = "berth-bench",
    about = "berth beside runc, podman, containerd and systemd-run"
)]
struct Args {
    /// The project's source tree.
    #[arg(long)]
    src: PathBuf,
    /// Where this build's berthd, berth-shim and berth-monitor are.
    #[arg(long)]
    bin: PathBuf,
    /// Where report.md, chart.svg and samples.json go.
    #[arg(long)]
    out: PathBuf,
    /// Samples per tool in the serial scenarios.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Containers in the scale scenarios.
    #[arg(long, default_value_t = 1000)]
    scale: usize,
    /// Clients at once in the concurrent lifecycle variants.
    #[arg(long, value_delimiter = ',', default_values_t = [16, 64])]
    concurrency: Vec<usize>,
    /// Only these scenarios (comma-separated names; default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Only draw OUT/chart.svg again from OUT/samples.json (no box needed).
    #[arg(long)]
    redraw: bool,
    /// The command line to print in the report.
    #[arg(long, default_value = "bench/run")]
    command: String,
}

fn main() -> ExitCode {
    if runc_no_cpu::invoked() {
        if let Err(e) = runc_no_cpu::main() {
            eprintln!("{}: {e:#}", runc_no_cpu::NAME);
        }
        return ExitCode::FAILURE;
    }
    let args = Args::parse();
    let outcome = if args.redraw {
        redraw(&args).map(|()| true)
    } else {
        run(&args)
    };
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("berth-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn redraw(args: &Args) -> Result<()> {
    let path = args.out.join("samples.json");
    let text = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
    let sections: Vec<measure::Section> = serde_json::from_slice(&text)?;
    chart::write(&args.out.join("chart.svg"), &sections)
}

fn version(program: &str, args: &[&str]) -> String {
    sh(program, args)
        .ok()
        .and_then(|o| o.lines().next().map(str::to_string))
        .unwrap_or_else(|| format!("{program}: unknown version"))
}

fn host() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let kernel = version("uname", &["-r"]);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    format!(
        "{cpus} CPUs, kernel {kernel}, load average at the start {} (other work on the host skews the figures)",
        load.join(" ")
    )
}

/// Runs the scenarios; Ok(false) when one failed (the others still ran and
/// the report says which).
fn run(args: &Args) -> Result<bool> {
    let for_host = host();
    println!("berth-bench: {for_host}");
    let env = Env::setup(&args.src, &args.bin).context("setting up the box")?;
    for m in &env.missing {
        println!("berth-bench: not measured: {m}");
    }
    let berth = berth::Berth::connect(env.bundles.clone())?;
    let mut engines: Vec<Box<dyn Engine + '_>> = vec![Box::new(berth.clone())];
    for peer in &env.peers {
        engines.push(match *peer {
            "runc" => Box::new(Runc { env: &env }),
            "podman" => Box::new(Podman { env: &env }),
            "containerd" => Box::new(Containerd { env: &env }),
            _ => Box::new(SystemdRun),
        });
    }
    let mut tools = vec![format!("berth {} (this build)", env!("CARGO_PKG_VERSION"))];
    for (peer, program, flag) in [
        ("runc", "runc", "--version"),
        ("podman", "podman", "--version"),
        ("podman", "conmon", "--version"),
        ("containerd", "containerd", "--version"),
        ("systemd-run", "systemctl", "--version"),
    ] {
        if env.peers.contains(&peer) {
            tools.push(version(program, &[flag]));
        }
    }
    let ctx = Ctx {
        env: &env,
        berth,
        engines,
        iterations: args.iterations.max(1),
        scale: args.scale.max(1),
        concurrency: args.concurrency.iter().map(|&n| n.max(1)).collect(),
    };
    let mut sections = Vec::new();
    let mut failed = Vec::new();
    for (name, scenario) in scenarios::ALL {
        if !args.only.is_empty() && !args.only.iter().any(|o| o == name) {
            continue;
        }
        println!("\nberth-bench: scenario {name}");
        match scenario(&ctx) {
            Ok(section) => {
                report::print_section(&section);
                sections.push(section);
            }
            Err(e) => {
                eprintln!("berth-bench: scenario {name} failed: {e:#}");
                failed.push(format!("{name}: {e:#}"));
            }
        }
    }
    std::fs::create_dir_all(&args.out)?;
    let header = report::Header {
        host: for_host,
        tools,
        command: args.command.clone(),
        iterations: ctx.iterations,
        scale: ctx.scale,
        missing: env.missing.clone(),
        failed: failed.clone(),
    };
    let md = report::markdown(&header, &sections);
    std::fs::write(args.out.join("report.md"), md)?;
    std::fs::write(
        args.out.join("samples.json"),
        serde_json::to_vec_pretty(&sections)?,
    )?;
    chart::write(&args.out.join("chart.svg"), &sections)?;
    println!(
        "\nberth-bench: wrote {}/report.md, chart.svg, samples.json",
        args.out.display()
    );
    Ok(failed.is_empty())
}
