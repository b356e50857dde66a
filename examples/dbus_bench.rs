//! A small D-Bus client for bench/berthd.sh: times the container lifecycle
//! CreateContainer → StartContainer → WaitContainer → DeleteContainer on
//! berthd's Manager, without a busctl process per call.
//!
//!   dbus_bench --bundle DIR [--iterations N] [--workers W] [--prefix P]
//!              [--samples FILE] [--shared-connection]
//!   dbus_bench --bundle DIR --serve        (one lifecycle per id read
//!              from stdin, its "total create start wait delete" µs line on
//!              stdout: lets a script interleave berthd with other tools)
//!   dbus_bench --bundle DIR --exec-into ID  (N × ExecContainer of
//!              /bin/true into running container ID + WaitExec, back to
//!              back; "total exec wait" µs per exec to --samples;
//!              with --and-wait one ExecContainerAndWait each, "total total 0")
//!   dbus_bench --bundle DIR --write-spec   (config.json running `true`, as
//!              `berth-runtime spec` writes it, then exit)
//!
//! Each worker is a thread running its own loop of N lifecycles (ids
//! `P-<worker>-<i>`) on its own system-bus connection (with
//! --shared-connection, all workers share one). Prints median, p90 and p99 of
//! the lifecycle and of each call, the throughput, and a `RESULT k=v …` line;
//! --samples appends one line per lifecycle to FILE: its latency, then that of
//! each of the four calls (µs, space-separated).

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use zbus::zvariant::{OwnedObjectPath, Value};

const DEST: &str = "io.berth.Berth1";
const PATH: &str = "/io/berth/Berth1";
const MANAGER: &str = "io.berth.Berth1.Manager";
const STEPS: [&str; 4] = ["create", "start", "wait", "delete"];

type Res<T> = Result<T, String>;

#[derive(Parser, Debug)]
#[command(
    name = "dbus_bench",
    about = "Times berthd's create → start → wait → delete over D-Bus"
)]
struct Args {
    /// OCI bundle whose process exits by itself (e.g. /bin/true).
    #[arg(long)]
    bundle: String,
    /// Lifecycles per worker.
    #[arg(long, default_value_t = 30)]
    iterations: usize,
    /// Concurrent workers (threads).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Container id prefix (ids are PREFIX-WORKER-I).
    #[arg(long, default_value = "bench")]
    prefix: String,
    /// Append "total create start wait delete" (µs) per lifecycle to this file.
    #[arg(long)]
    samples: Option<std::path::PathBuf>,
    /// One connection shared by every worker instead of one each.
    #[arg(long)]
    shared_connection: bool,
    /// The bus to use (default: the system bus); `private`: berthd's
    /// private socket (/run/berth/.private, root only).
    #[arg(long)]
    address: Option<String>,
    /// Write DIR/config.json (berth's default spec, no terminal, args
    /// ["true"]) and exit; the rootfs is the caller's.
    #[arg(long)]
    write_spec: bool,
    /// Read container ids from stdin, one a line; run one lifecycle each on
    /// one connection and answer "total create start wait delete" (µs).
    #[arg(long)]
    serve: bool,
    /// Time ExecContainer of /bin/true + WaitExec into this running
    /// container instead of lifecycles.
    #[arg(long)]
    exec_into: Option<String>,
    /// With --exec-into: one ExecContainerAndWait per exec instead.
    #[arg(long)]
    and_wait: bool,
}

fn sample_line(us: &[u64; 4]) -> String {
    let sum: u64 = us.iter().sum();
    format!("{sum} {} {} {} {}\n", us[0], us[1], us[2], us[3])
}

fn micros(steps: [Duration; 4]) -> [u64; 4] {
    steps.map(|d| d.as_micros() as u64)
}

fn serve(args: &Args) -> Res<()> {
    let c = connect(args.address.as_deref())?;
    let mut out = std::io::stdout().lock();
    for line in std::io::stdin().lines() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        let id = line.trim();
        if id.is_empty() {
            continue;
        }
        let us = micros(lifecycle(&c, id, &args.bundle)?);
        out.write_all(sample_line(&us).as_bytes())
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}

/// The bundle config of bench/runtime-inner.sh (`berth-runtime spec`, then
/// terminal off and `true` for `sh`), without building berth-runtime.
fn write_spec(bundle: &str) -> Res<()> {
    let mut config =
        serde_json::to_value(berth_init::spec::default_spec(false)).map_err(|e| e.to_string())?;
    config["process"]["terminal"] = serde_json::json!(false);
    config["process"]["args"] = serde_json::json!(["true"]);
    let path = std::path::Path::new(bundle).join("config.json");
    let json = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(&path, json + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

fn connect(address: Option<&str>) -> Res<zbus::blocking::Connection> {
    match address {
        Some("private") => berth_client::private_connection()
            .map_err(|e| format!("{}: {e}", berth_client::PRIVATE_SOCKET)),
        Some(a) => zbus::blocking::connection::Builder::address(a)
            .and_then(|b| b.build())
            .map_err(|e| format!("connecting to {a}: {e}")),
        None => zbus::blocking::Connection::system().map_err(|e| format!("system bus: {e}")),
    }
}

fn call<R>(
    c: &zbus::blocking::Connection,
    method: &str,
    body: &(impl serde::Serialize + zbus::zvariant::DynamicType),
) -> Res<R>
where
    R: for<'d> zbus::zvariant::DynamicDeserialize<'d>,
{
    let reply = c
        .call_method(Some(DEST), PATH, Some(MANAGER), method, body)
        .map_err(|e| format!("{method}: {e}"))?;
    reply
        .body()
        .deserialize()
        .map_err(|e| format!("{method} reply: {e}"))
}

/// One lifecycle: the duration of each of the four calls.
fn lifecycle(c: &zbus::blocking::Connection, id: &str, bundle: &str) -> Res<[Duration; 4]> {
    let no_options: HashMap<String, Value<'static>> = HashMap::new();
    let t0 = Instant::now();
    let _: OwnedObjectPath = call(c, "CreateContainer", &(id, bundle, no_options))?;
    let t1 = Instant::now();
    let () = call(c, "StartContainer", &(id,))?;
    let t2 = Instant::now();
    let (code, signal): (i32, i32) = call(c, "WaitContainer", &(id,))?;
    let t3 = Instant::now();
    if (code, signal) != (0, 0) {
        return Err(format!("{id} exited with code {code}, signal {signal}"));
    }
    let () = call(c, "DeleteContainer", &(id, false))?;
    let t4 = Instant::now();
    Ok([t1 - t0, t2 - t1, t3 - t2, t4 - t3])
}

/// Appends sample lines to --samples' file, if one was given.
fn append_samples(path: Option<&std::path::Path>, lines: &str) -> Res<()> {
    let Some(path) = path else { return Ok(()) };
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(lines.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// N execs of /bin/true into `id`, one after the other on one connection.
fn execs(args: &Args, id: &str) -> Res<()> {
    let c = connect(args.address.as_deref())?;
    let process = r#"{"args":["/bin/true"],"cwd":"/"}"#;
    let (mut total, mut lines) = (Vec::new(), String::new());
    for _ in 0..args.iterations {
        let no_options: HashMap<String, Value<'static>> = HashMap::new();
        let t0 = Instant::now();
        let (exec_id, code, signal, t1) = match args.and_wait {
            true => {
                let (exec_id, code, signal): (String, i32, i32) =
                    call(&c, "ExecContainerAndWait", &(id, process, no_options))?;
                (exec_id, code, signal, Instant::now())
            }
            false => {
                let exec_id: String = call(&c, "ExecContainer", &(id, process, no_options))?;
                let t1 = Instant::now();
                let (code, signal): (i32, i32) = call(&c, "WaitExec", &(id, exec_id.as_str()))?;
                (exec_id, code, signal, t1)
            }
        };
        let t2 = Instant::now();
        if (code, signal) != (0, 0) {
            return Err(format!(
                "exec {exec_id} exited with code {code}, signal {signal}"
            ));
        }
        let (e, w) = ((t1 - t0).as_micros() as u64, (t2 - t1).as_micros() as u64);
        total.push(e + w);
        lines += &format!("{} {e} {w}\n", e + w);
    }
    append_samples(args.samples.as_deref(), &lines)?;
    total.sort_unstable();
    println!(
        "RESULT execs={} median_us={} p90_us={}",
        total.len(),
        pct(&total, 0.5),
        pct(&total, 0.9)
    );
    Ok(())
}

/// Nearest-rank percentile of sorted µs samples (as bench/berthd-inner.sh).
fn pct(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dbus_bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Res<()> {
    if args.write_spec {
        return write_spec(&args.bundle);
    }
    if args.serve {
        return serve(args);
    }
    if let Some(id) = &args.exec_into {
        return execs(args, id);
    }
    let workers = args.workers.max(1);
    let shared = if args.shared_connection {
        Some(connect(args.address.as_deref())?)
    } else {
        None
    };
    // Connect every worker before the clock starts.
    let conns = (0..workers)
        .map(|_| match &shared {
            Some(c) => Ok(c.clone()),
            None => connect(args.address.as_deref()),
        })
        .collect::<Res<Vec<_>>>()?;
    let barrier = std::sync::Barrier::new(workers + 1);
    let (results, wall) = std::thread::scope(|s| {
        let handles: Vec<_> = conns
            .into_iter()
            .enumerate()
            .map(|(w, c)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    let mut out = Vec::with_capacity(args.iterations);
                    for i in 0..args.iterations {
                        let id = format!("{}-{w}-{i}", args.prefix);
                        out.push(lifecycle(&c, &id, &args.bundle)?);
                    }
                    Ok::<_, String>(out)
                })
            })
            .collect();
        barrier.wait();
        let t0 = Instant::now();
        let results: Vec<Res<Vec<[Duration; 4]>>> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a worker panicked".into())))
            .collect();
        (results, t0.elapsed())
    });
    let mut per_step: [Vec<u64>; 4] = Default::default();
    let mut total = Vec::new();
    let mut lines = String::new();
    for r in results {
        for steps in r? {
            let us = micros(steps);
            for (k, v) in us.iter().enumerate() {
                per_step[k].push(*v);
            }
            total.push(us.iter().sum());
            lines += &sample_line(&us);
        }
    }
    append_samples(args.samples.as_deref(), &lines)?;
    total.sort_unstable();
    let ops = total.len() as f64 / wall.as_secs_f64();
    println!(
        "berthd over D-Bus: {} lifecycles, {workers} worker(s) ({}), {:.0} ms wall, {ops:.1} lifecycles/s",
        total.len(),
        if args.shared_connection || workers == 1 {
            "one connection"
        } else {
            "one connection each"
        },
        wall.as_secs_f64() * 1000.0
    );
    println!("  {:<10} {:>9} {:>9} {:>9}", "ms", "median", "p90", "p99");
    for (name, v) in STEPS.iter().zip(per_step.iter_mut()) {
        v.sort_unstable();
        println!(
            "  {name:<10} {:>9.2} {:>9.2} {:>9.2}",
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99))
        );
    }
    println!(
        "  {:<10} {:>9.2} {:>9.2} {:>9.2}",
        "lifecycle",
        ms(pct(&total, 0.5)),
        ms(pct(&total, 0.9)),
        ms(pct(&total, 0.99))
    );
    let step_medians: Vec<String> = STEPS
        .iter()
        .zip(per_step.iter())
        .map(|(name, v)| format!("{name}_us={}", pct(v, 0.5)))
        .collect();
    println!(
        "RESULT n={} workers={workers} wall_us={} median_us={} p90_us={} p99_us={} {}",
        total.len(),
        wall.as_micros(),
        pct(&total, 0.5),
        pct(&total, 0.9),
        pct(&total, 0.99),
        step_medians.join(" ")
    );
    Ok(())
}
