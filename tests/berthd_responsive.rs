//! berthd keeps answering while it works: the blocking parts of a verb
//! (systemd round trips in berth-init, LMDB commits and their fsync) run on
//! tokio's blocking pool, so reads are not queued behind them. Measured end
//! to end from a client, in a box (issue 16).

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

/// Containers killed and deleted at once.
const CONTAINERS: usize = 16;
/// Generous: an idle berthd answers Info in about a millisecond, and a
/// read queued behind blocked executor threads waits for systemd's answers
/// to every kill and delete ahead of it.
const BOUND: Duration = Duration::from_secs(1);

#[test]
fn reads_are_answered_while_16_kills_and_deletes_run() {
    let Some(b) = berth_box::up_or_skip("reads_answered_during_deletes") else {
        return;
    };
    install_berthd(&b, "");
    let c = patient_bus(&b);
    let m = manager(&c);
    // berthd grew its fd table before it had threads: growing a shared
    // one later stalls the opening tokio worker for an RCU grace period.
    let fd_size = b.sh_ok(&format!(
        "awk '/^FDSize/ {{print $2}}' /proc/{}/status",
        main_pid(&b)
    ));
    let fd_size: u32 = fd_size.trim().parse().unwrap();
    assert!(
        fd_size >= 4096,
        "berthd's fd table has {fd_size} slots, not the 4096 reserved at start"
    );
    let bundle = busybox_bundle("d-responsive", &["sleep", "300"]);
    let ids: Vec<String> = (0..CONTAINERS).map(|i| format!("resp{i}")).collect();
    for id in &ids {
        m.create_container(id, bundle.path(), HashMap::new())
            .unwrap();
        m.start_container(id).unwrap();
    }

    // The same reads with nothing else to do: what the loaded figure is
    // compared with in the output.
    let idle = (0..20)
        .map(|_| {
            let t = Instant::now();
            m.info().unwrap();
            m.list_containers().unwrap();
            t.elapsed() / 2
        })
        .max()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let start = Arc::new(Barrier::new(CONTAINERS + 1));
    // The reader: its own connection, so nothing of the workers' traffic
    // queues ahead of it on the client side.
    let reader = {
        let (stop, start, c) = (stop.clone(), start.clone(), patient_bus(&b));
        std::thread::spawn(move || {
            let m = manager(&c);
            let (mut worst, mut calls) = (Duration::ZERO, 0u32);
            start.wait();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                m.info().unwrap();
                worst = worst.max(t.elapsed());
                let t = Instant::now();
                m.list_containers().unwrap();
                worst = worst.max(t.elapsed());
                calls += 2;
            }
            (worst, calls)
        })
    };
    let workers: Vec<_> = ids
        .iter()
        .map(|id| {
            let (id, start, c) = (id.clone(), start.clone(), patient_bus(&b));
            std::thread::spawn(move || {
                let m = manager(&c);
                start.wait();
                m.kill_container(&id, "all", libc::SIGKILL).unwrap();
                m.delete_container(&id, true).unwrap();
            })
        })
        .collect();
    let began = Instant::now();
    for w in workers {
        w.join().unwrap();
    }
    let took = began.elapsed();
    stop.store(true, Ordering::Relaxed);
    let (worst, calls) = reader.join().unwrap();
    println!(
        "{CONTAINERS} kills + deletes took {took:?}; {calls} Info/ListContainers calls, \
         the slowest answered in {worst:?} (idle: {idle:?})"
    );
    assert!(m.list_containers().unwrap().is_empty());
    assert!(
        worst < BOUND,
        "a read waited {worst:?} (bound {BOUND:?}) behind {CONTAINERS} kills and deletes"
    );
}
