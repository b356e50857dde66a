//! The scale run: N containers (ctx.scale, 1000 in the full run) running
//! `sleep` at once on this machine — created and started by CLIENTS clients,
//! listed, measured, restarted under, stopped and deleted, and then nothing
//! may be left. Scenarios memory, restart and stats measure on the way: the
//! containers are created once (the slow part) and every one of those
//! sections comes out of the same run, whichever of them `--only` names
//! first (the others then hand over what was measured).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};

use super::{memory, restart, stats, Ctx};
use crate::env::sh;
use crate::measure::{ms, percentile, pids_named, timed, Section, Unit};

/// Clients creating and deleting at once (the issue: 16–64).
pub const CLIENTS: usize = 16;
/// The level measured on the way up to N, and the peers' fleet size: podman
/// and containerd at 1000 would take most of the run's time on 2 cores.
pub const SMALL: usize = 100;
/// Clients at once for the peers (each create is a process tree of its own;
/// more only queue on 2 cores).
const PEER_CLIENTS: usize = 4;
/// How long leftovers (scopes being collected, say) may take to go.
const SETTLE: Duration = Duration::from_secs(30);

type Outcome = BTreeMap<&'static str, Result<Section, String>>;

/// Every section of the shared run, taken out as the scenarios ask.
static OUTCOME: Mutex<Option<Outcome>> = Mutex::new(None);

/// Section `id` of the shared run, running it first if nobody has yet.
pub fn shared(ctx: &Ctx, id: &'static str) -> Result<Section> {
    let mut guard = OUTCOME
        .lock()
        .map_err(|_| anyhow!("the scale run panicked"))?;
    let outcome = guard.get_or_insert_with(|| run_all(ctx));
    match outcome.remove(id) {
        Some(Ok(s)) => Ok(s),
        Some(Err(e)) => Err(anyhow!(e)),
        None => bail!("section {id} was already reported"),
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    shared(ctx, "scale")
}

/// The sections being filled, and which failed (first error each).
pub struct Parts {
    pub memory: Section,
    pub restart: Section,
    pub stats: Section,
    pub scale: Section,
    failed: BTreeMap<&'static str, String>,
}

impl Parts {
    fn fail(&mut self, id: &'static str, e: &anyhow::Error) {
        println!("  {id}: {e:#}");
        self.failed.entry(id).or_insert_with(|| format!("{e:#}"));
    }
}

fn section() -> Section {
    Section::new(
        "scale",
        "Scale: N containers running at once",
        Unit::Ms,
        "N containers running `sleep` (busybox bundle) created and started by \
         16 clients at once over one connection to berthd's private socket (CreateContainer + \
         StartContainer per container, timed together), up to 100 and then N; at \
         N, a serial probe (one client) creates+starts and deletes containers \
         beside the N; then all N are deleted by 16 clients (DeleteContainer \
         force=true: SIGKILL, wait for the exit, remove) and the box is checked \
         for leftovers: units `berth-*.scope`, /run/berth/*, /var/lib/berth/bundles/*, \
         ListContainers, Info counts, berth-monitor processes.",
    )
}

/// The whole shared run: berth's N, then each peer's SMALL. Whatever
/// fails, berth's containers are deleted and the peers' removed.
fn run_all(ctx: &Ctx) -> Outcome {
    let mut p = Parts {
        memory: memory::section(),
        restart: restart::section(),
        stats: stats::section(),
        scale: section(),
        failed: BTreeMap::new(),
    };
    // The peers first: a ramp measures systemd's and a daemon's growth, and
    // after berth's teardown of N their heaps would hold room for the
    // peers' SMALL for free.
    for peer in ["podman", "containerd"] {
        if ctx.engine(peer).is_some() {
            if let Err(e) = peer_run(ctx, &mut p, peer) {
                p.memory.note(format!("{peer}: not measured: {e:#}"));
            }
        }
    }
    let fleet = Mutex::new(Vec::new());
    if let Err(e) = berth_levels(ctx, &mut p, &fleet) {
        // The fleet never reached N: no section is complete.
        for id in ["memory", "restart", "stats", "scale"] {
            p.fail(id, &e);
        }
    }
    let ids = fleet.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Err(e) = teardown(ctx, &mut p.scale, &ids) {
        p.fail("scale", &e);
    }
    if let Err(e) = nothing_left(ctx, &mut p) {
        p.fail("scale", &e);
    }
    memory::goals(ctx, &mut p.memory);
    restart::goals(ctx, &mut p.restart);
    let Parts {
        memory,
        restart,
        stats,
        scale,
        failed,
    } = p;
    [
        ("memory", memory),
        ("restart", restart),
        ("stats", stats),
        ("scale", scale),
    ]
    .into_iter()
    .map(|(id, s)| match failed.get(id) {
        Some(e) => (id, Err(e.clone())),
        None => (id, Ok(s)),
    })
    .collect()
}

/// berthd idle, then up to SMALL and N: at each level memory, stats and
/// restarts. The ids created are in `fleet` (for the teardown) as soon as
/// their create returned.
fn berth_levels(ctx: &Ctx, p: &mut Parts, fleet: &Mutex<Vec<String>>) -> Result<()> {
    let n = ctx.scale;
    if let Err(e) = memory::berthd_idle(ctx, &mut p.memory) {
        p.fail("memory", &e);
    }
    let mut levels = vec![SMALL.min(n), n];
    levels.dedup();
    let mut create_lat = Vec::new();
    let t_ramp = Instant::now();
    for &level in &levels {
        let from = fleet.lock().map_err(|_| anyhow!("poisoned"))?.len();
        println!("  creating and starting containers {from}..{level} with {CLIENTS} clients");
        let (lat, err, wall) = pool(CLIENTS, level - from, |k| {
            let id = format!("scale-{}", from + k);
            timed(|| {
                ctx.berth.create(&id, &ctx.env.bundles.sleep)?;
                if let Ok(mut f) = fleet.lock() {
                    f.push(id.clone());
                }
                ctx.berth.start(&id)
            })
        });
        create_lat.extend(lat);
        let rate = (level - from) as f64 * 1000.0 / wall;
        p.scale.note(format!(
            "create+start {from}→{level}: {wall:.0} ms wall, {rate:.1} containers/s"
        ));
        if level == n && err.is_none() {
            p.scale.goal(
                &format!("create+start throughput, {from}→{n} running"),
                "≥ 150 containers/s",
                format!("{rate:.1}/s"),
                rate >= 150.0,
                &format!("{CLIENTS} clients; wall time of the leg to N"),
            );
        }
        if let Some(e) = err {
            p.scale.push("berth", &ramp_variant(), create_lat);
            return Err(e.context(format!("creating and starting containers {from}..{level}")));
        }
        let ids: Vec<String> = fleet.lock().map_err(|_| anyhow!("poisoned"))?.clone();
        if level == n {
            p.scale
                .push("berth", &ramp_variant(), std::mem::take(&mut create_lat));
            p.scale.note(format!(
                "0→{n} took {:.1} s in all (measurements at {} included)",
                t_ramp.elapsed().as_secs_f64(),
                SMALL.min(n)
            ));
            if let Err(e) = probe(ctx, &mut p.scale, n) {
                p.fail("scale", &e);
            }
            if let Err(e) = listing(ctx, &mut p.scale, &ids) {
                p.fail("scale", &e);
            }
            // The store's high-water mark, against its map size (256 MiB).
            if let Ok(meta) = std::fs::metadata("/var/lib/berth/data.mdb") {
                p.scale.note(format!(
                    "the metadata store (LMDB data.mdb) is {} KiB with {n} containers",
                    meta.len() / 1024
                ));
            }
        }
        // Monitors and berthd's heap settle after the burst.
        std::thread::sleep(Duration::from_secs(1));
        if let Err(e) = memory::berth_at(ctx, &mut p.memory, level) {
            p.fail("memory", &e);
        }
        if let Err(e) = stats::berth_at(ctx, &mut p.stats, &ids) {
            p.fail("stats", &e);
        }
        if let Err(e) = restart::berth_at(ctx, &mut p.restart, &ids) {
            p.fail("restart", &e);
        }
        if let Err(e) = memory::berthd_after_restart(ctx, &mut p.memory, level) {
            p.fail("memory", &e);
        }
    }
    Ok(())
}

fn ramp_variant() -> String {
    format!("create+start, {CLIENTS} clients")
}

/// With N running: containers created+started, then deleted, one at a
/// time — the cost of one more at scale, without queueing behind others.
fn probe(ctx: &Ctx, s: &mut Section, n: usize) -> Result<()> {
    let rounds = ctx.iterations.min(30);
    let (mut up, mut down) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let id = format!("probe-{i}");
        up.push(timed(|| {
            ctx.berth.create(&id, &ctx.env.bundles.sleep)?;
            ctx.berth.start(&id)
        })?);
        down.push(timed(|| ctx.berth.delete(&id, true))?);
    }
    s.push("berth", &format!("create+start, 1 client, {n} running"), up);
    s.push("berth", &format!("delete, 1 client, {n} running"), down);
    Ok(())
}

/// ListContainers returns every one of `ids`, running; timed.
fn listing(ctx: &Ctx, s: &mut Section, ids: &[String]) -> Result<()> {
    let mut lat = Vec::new();
    for _ in 0..10 {
        let t0 = Instant::now();
        let list = ctx.berth.list()?;
        lat.push(ms(t0.elapsed()));
        let running: std::collections::HashSet<&str> = list
            .iter()
            .filter(|(_, status, _)| status == "running")
            .map(|(id, _, _)| id.as_str())
            .collect();
        if let Some(missing) = ids.iter().find(|id| !running.contains(id.as_str())) {
            bail!("ListContainers: {missing} is not listed as running");
        }
    }
    s.push(
        "berth",
        &format!("ListContainers, {} running", ids.len()),
        lat,
    );
    Ok(())
}

/// Deletes every container of the fleet (force) with CLIENTS clients; a
/// failed delete is retried once, one at a time.
fn teardown(ctx: &Ctx, s: &mut Section, ids: &[String]) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    println!("  deleting {} containers with {CLIENTS} clients", ids.len());
    let failed = Mutex::new(Vec::new());
    let (lat, _, wall) = pool_all(CLIENTS, ids.len(), |k| {
        let r = timed(|| ctx.berth.delete(&ids[k], true));
        if let Err(e) = &r {
            if let Ok(mut f) = failed.lock() {
                f.push((k, format!("{e:#}")));
            }
        }
        r
    });
    s.push("berth", &format!("delete, {CLIENTS} clients"), lat);
    s.note(format!(
        "delete {}→0: {:.0} ms wall, {:.1} containers/s",
        ids.len(),
        wall,
        ids.len() as f64 * 1000.0 / wall
    ));
    let failed = failed.into_inner().unwrap_or_else(|p| p.into_inner());
    if let Some((_, first)) = failed.first() {
        s.note(format!(
            "{} deletes failed (retried one at a time); first: {first}",
            failed.len()
        ));
        for (k, _) in &failed {
            ctx.berth.delete(&ids[*k], true)?;
        }
    }
    Ok(())
}

/// What berth left behind, by kind (empty: nothing).
fn leftovers(ctx: &Ctx) -> Vec<String> {
    let mut left = Vec::new();
    let mut kind = |what: &str, items: Vec<String>| {
        if !items.is_empty() {
            let some: Vec<&str> = items.iter().take(3).map(String::as_str).collect();
            left.push(format!("{} {what} ({}…)", items.len(), some.join(", ")));
        }
    };
    let units = sh(
        "systemctl",
        &[
            "list-units",
            "--all",
            "--plain",
            "--no-legend",
            "berth-*.scope",
        ],
    )
    .unwrap_or_else(|e| format!("systemctl failed: {e:#}"));
    kind(
        "units berth-*.scope",
        units
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.trim().to_string())
            .collect(),
    );
    let entries = |dir: &str| -> Vec<String> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            // berthd's own: the compiled seccomp programs' cache
            // (init/src/seccomp/cache.rs, bounded) and its private socket.
            .filter(|n| n != ".seccomp" && n != ".private")
            .collect()
    };
    kind("entries in /run/berth", entries("/run/berth"));
    kind(
        "entries in /var/lib/berth/bundles",
        entries("/var/lib/berth/bundles"),
    );
    match ctx.berth.list() {
        Ok(list) => kind(
            "containers listed",
            list.into_iter().map(|(id, _, _)| id).collect(),
        ),
        Err(e) => kind("ListContainers errors", vec![format!("{e:#}")]),
    }
    match ctx.berth.info() {
        Ok(info) => {
            let count = info
                .get("containers")
                .and_then(|v| u32::try_from(v).ok())
                .unwrap_or(u32::MAX);
            if count != 0 {
                kind("containers in Info", vec![count.to_string()]);
            }
        }
        Err(e) => kind("Info errors", vec![format!("{e:#}")]),
    }
    kind(
        "berth-monitor processes",
        pids_named("berth-monitor")
            .iter()
            .map(u32::to_string)
            .collect(),
    );
    left
}

/// After the teardown: nothing of berth's may remain (scopes get SETTLE to
/// be collected by systemd).
fn nothing_left(ctx: &Ctx, p: &mut Parts) -> Result<()> {
    let t0 = Instant::now();
    let mut left = leftovers(ctx);
    while !left.is_empty() && t0.elapsed() < SETTLE {
        std::thread::sleep(Duration::from_millis(200));
        left = leftovers(ctx);
    }
    let checked = "units berth-*.scope, /run/berth/*, /var/lib/berth/bundles/*, ListContainers, \
                   Info containers, berth-monitor processes";
    let left_behind = left.join("; ");
    let measured = if left.is_empty() {
        format!(
            "nothing left ({:.1} s after the last delete)",
            t0.elapsed().as_secs_f64()
        )
    } else {
        left_behind.clone()
    };
    p.scale.goal(
        &format!("nothing left after {} containers", ctx.scale),
        "no unit, dir, record or process",
        measured,
        left.is_empty(),
        checked,
    );
    if let Err(e) = memory::berthd_at_end(ctx, &mut p.memory) {
        p.fail("memory", &e);
    }
    let lat = p
        .scale
        .find("berth", &ramp_variant())
        .and_then(|s| percentile(&s.samples, 0.99));
    if let Some(p99) = lat {
        let p50 = p
            .scale
            .find("berth", &ramp_variant())
            .and_then(|s| percentile(&s.samples, 0.5))
            .unwrap_or(f64::NAN);
        p.scale.goal(
            &format!("create+start p99, 0→{} running", ctx.scale),
            "≤ 100 ms",
            format!("{p99:.1} ms (median {p50:.1})"),
            p99 <= 100.0,
            &format!(
                "{CLIENTS} clients at once on 2 cores: a latency is the queue ahead \
                 of it plus the work (see the 1-client probe at N for the work alone)"
            ),
        );
    }
    // A leftover is a bug, not a figure: the scenario fails (the goal above
    // says what was left).
    if !left_behind.is_empty() {
        bail!("left behind after the teardown: {left_behind}");
    }
    Ok(())
}

/// A peer's SMALL containers: created, measured, removed.
fn peer_run(ctx: &Ctx, p: &mut Parts, peer: &'static str) -> Result<()> {
    let engine = ctx
        .engine(peer)
        .ok_or_else(|| anyhow!("no engine {peer}"))?;
    let n = SMALL.min(ctx.scale);
    memory::peer_before(&mut p.memory, peer)?;
    println!("  {peer}: starting {n} containers with {PEER_CLIENTS} clients");
    let made = Mutex::new(Vec::new());
    let (lat, err, wall) = pool(PEER_CLIENTS, n, |k| {
        let id = format!("{peer}-scale-{k}");
        let r = timed(|| engine.run_sleeping(&id));
        // Removed afterwards even when the run failed half-way.
        if let Ok(mut m) = made.lock() {
            m.push(id);
        }
        r
    });
    let result = match err {
        Some(e) => Err(e),
        None => {
            p.scale.note(format!(
                "{peer}: {n} detached runs with {PEER_CLIENTS} clients: median {:.0} ms, \
                 {:.1} containers/s",
                percentile(&lat, 0.5).unwrap_or(f64::NAN),
                n as f64 * 1000.0 / wall
            ));
            std::thread::sleep(Duration::from_secs(1));
            peer_measure(p, peer, n)
        }
    };
    let made = made.into_inner().unwrap_or_else(|p| p.into_inner());
    println!("  {peer}: removing {} containers", made.len());
    let (_, _, _) = pool_all(PEER_CLIENTS, made.len(), |k| {
        if let Err(e) = engine.remove(&made[k]) {
            println!("  {peer}: removing {}: {e:#}", made[k]);
        }
        Ok(0.0)
    });
    result
}

fn peer_measure(p: &mut Parts, peer: &'static str, n: usize) -> Result<()> {
    let ids: Vec<String> = (0..n).map(|k| format!("{peer}-scale-{k}")).collect();
    if let Err(e) = memory::peer_at(&mut p.memory, peer, n) {
        p.memory.note(format!("{peer}: {e:#}"));
    }
    if let Err(e) = stats::peer(&mut p.stats, peer, &ids) {
        p.stats.note(format!("{peer}: {e:#}"));
    }
    if peer == "containerd" {
        if let Err(e) = restart::containerd(&mut p.restart, &ids) {
            p.restart.note(format!("containerd: {e:#}"));
        }
    }
    Ok(())
}

/// Runs `f(k)` for k in 0..items on `clients` threads, each taking the next
/// item; after the first error no new item is handed out. Returns the
/// latencies of the items that succeeded, the first error and the wall time
/// (ms).
pub fn pool(
    clients: usize,
    items: usize,
    f: impl Fn(usize) -> Result<f64> + Sync,
) -> (Vec<f64>, Option<anyhow::Error>, f64) {
    run_pool(clients, items, true, f)
}

/// As `pool`, but every item is tried whatever failed before.
pub fn pool_all(
    clients: usize,
    items: usize,
    f: impl Fn(usize) -> Result<f64> + Sync,
) -> (Vec<f64>, Option<anyhow::Error>, f64) {
    run_pool(clients, items, false, f)
}

fn run_pool(
    clients: usize,
    items: usize,
    stop_at_error: bool,
    f: impl Fn(usize) -> Result<f64> + Sync,
) -> (Vec<f64>, Option<anyhow::Error>, f64) {
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let t0 = Instant::now();
    let results: Vec<(Vec<f64>, Option<anyhow::Error>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients.min(items).max(1))
            .map(|_| {
                let (f, next, stop) = (&f, &next, &stop);
                s.spawn(move || {
                    let (mut lat, mut err) = (Vec::new(), None);
                    while !stop.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= items {
                            break;
                        }
                        match f(k) {
                            Ok(v) => lat.push(v),
                            Err(e) => {
                                stop.store(stop_at_error, Ordering::Relaxed);
                                err = err.or(Some(e));
                            }
                        }
                    }
                    (lat, err)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (Vec::new(), Some(anyhow!("a client thread panicked"))))
            })
            .collect()
    });
    let wall = ms(t0.elapsed());
    let mut all = Vec::with_capacity(items);
    let mut first = None;
    for (lat, err) in results {
        all.extend(lat);
        first = first.or(err);
    }
    (all, first, wall)
}
