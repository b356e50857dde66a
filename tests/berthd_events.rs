//! berthd's signals, in the order a client sees them: a subscriber that
//! listens before anything happens sees ContainerNew, then Status=running,
//! then ContainerExited, then ContainerRemoved — also for a container that
//! exits at once, and around an exec.

mod common;
#[allow(unused_imports)]
use common::*;

use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use berth_box::bundle::Bundle;
use berth_box::SystemdBox;
use serde_json::json;
use zbus::zvariant::{OwnedObjectPath, OwnedValue};

const CONTAINER: &str = "io.berth.Berth1.Container";

/// A signal of berthd, as the test cares about it.
#[derive(Debug, Clone, PartialEq)]
enum Event {
    New(String, String),
    Removed(String, String),
    Exited(String, i32, i32),
    /// PropertiesChanged on a container object: path, property, value.
    Prop(String, String, String),
}

/// Every signal under /io/berth/Berth1, in arrival order: subscribed (the
/// AddMatch is done) when `listen` returns, read by a thread of its own on a
/// connection of its own.
struct Events {
    rx: mpsc::Receiver<Event>,
    seen: Vec<Event>,
}

fn listen(b: &SystemdBox) -> Events {
    let conn = bus(b).unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .path_namespace(PATH)
        .unwrap()
        .build();
    let iter = zbus::blocking::MessageIterator::for_match_rule(rule, &conn, Some(4096)).unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _conn = conn;
        for msg in iter {
            let Ok(msg) = msg else { break };
            for ev in decode(&msg) {
                if tx.send(ev).is_err() {
                    return;
                }
            }
        }
    });
    Events {
        rx,
        seen: Vec::new(),
    }
}

fn decode(msg: &zbus::Message) -> Vec<Event> {
    let h = msg.header();
    let (Some(path), Some(iface), Some(member)) = (h.path(), h.interface(), h.member()) else {
        return vec![];
    };
    let body = msg.body();
    match (iface.as_str(), member.as_str()) {
        (MANAGER, "ContainerNew") => body
            .deserialize::<(String, OwnedObjectPath)>()
            .map(|(id, p)| vec![Event::New(id, p.to_string())])
            .unwrap_or_default(),
        (MANAGER, "ContainerRemoved") => body
            .deserialize::<(String, OwnedObjectPath)>()
            .map(|(id, p)| vec![Event::Removed(id, p.to_string())])
            .unwrap_or_default(),
        (MANAGER, "ContainerExited") => body
            .deserialize::<(String, i32, i32)>()
            .map(|(id, code, sig)| vec![Event::Exited(id, code, sig)])
            .unwrap_or_default(),
        ("org.freedesktop.DBus.Properties", "PropertiesChanged") => {
            let Ok((i, changed, _)) =
                body.deserialize::<(String, HashMap<String, OwnedValue>, Vec<String>)>()
            else {
                return vec![];
            };
            if i != CONTAINER {
                return vec![];
            }
            let mut names: Vec<_> = changed.into_iter().collect();
            names.sort_by(|a, b| a.0.cmp(&b.0));
            names
                .into_iter()
                .map(|(name, v)| {
                    let shown = match String::try_from(v.try_clone().unwrap()) {
                        Ok(s) => s,
                        Err(_) => format!("{v:?}"),
                    };
                    Event::Prop(path.to_string(), name, shown)
                })
                .collect()
        }
        _ => vec![],
    }
}

impl Events {
    /// Index (in arrival order) of the first event matching `want`, waiting
    /// up to 20 s for it.
    fn find(&mut self, what: &str, want: impl Fn(&Event) -> bool) -> usize {
        if let Some(i) = self.seen.iter().position(&want) {
            return i;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(ev) => {
                    let hit = want(&ev);
                    self.seen.push(ev);
                    if hit {
                        return self.seen.len() - 1;
                    }
                }
                Err(_) => panic!("no {what} within 20 s; signals seen:\n{:#?}", self.seen),
            }
        }
    }

    /// Takes in whatever arrived meanwhile (waiting `settle` for stragglers).
    fn drain(&mut self, settle: Duration) {
        while let Ok(ev) = self.rx.recv_timeout(settle) {
            self.seen.push(ev);
        }
    }

    fn count(&self, want: impl Fn(&Event) -> bool) -> usize {
        self.seen.iter().filter(|e| want(e)).count()
    }
}

fn status_is<'a>(path: &'a str, status: &'static str) -> impl Fn(&Event) -> bool + 'a {
    move |e| matches!(e, Event::Prop(p, n, v) if p == path && n == "Status" && v == status)
}

/// One container, create → start → exits 7 → delete, as a subscriber sees it.
fn exit_7_in_order(c: &zbus::blocking::Connection, ev: &mut Events, bundle: &Bundle, id: &str) {
    let path: OwnedObjectPath =
        call(c, "CreateContainer", &(id, bundle.path(), no_options())).unwrap();
    let p = path.to_string();
    let () = call(c, "StartContainer", &(id,)).unwrap();
    let (code, signal): (i32, i32) = call(c, "WaitContainer", &(id,)).unwrap();
    assert_eq!((code, signal), (7, 0));
    assert!(
        prop::<u64>(c, &path, "ExitedAt") >= prop::<u64>(c, &path, "StartedAt"),
        "{id}: ExitedAt before StartedAt"
    );
    let () = call(c, "DeleteContainer", &(id, false)).unwrap();

    let new = ev.find("ContainerNew", |e| *e == Event::New(id.into(), p.clone()));
    let running = ev.find("Status=running", status_is(&p, "running"));
    let exited = ev.find("ContainerExited(7, 0)", |e| {
        *e == Event::Exited(id.into(), 7, 0)
    });
    let stopped = ev.find("Status=stopped", status_is(&p, "stopped"));
    let removed = ev.find("ContainerRemoved", |e| {
        *e == Event::Removed(id.into(), p.clone())
    });
    ev.drain(Duration::from_millis(300));
    let mine: Vec<_> = ev
        .seen
        .iter()
        .filter(|e| match e {
            Event::New(i, _) | Event::Removed(i, _) | Event::Exited(i, _, _) => i == id,
            Event::Prop(q, _, _) => *q == p,
        })
        .collect();
    eprintln!("{id}: {mine:?}");
    assert!(
        new < running && running < exited && exited < removed,
        "{id}: want New < Status=running < Exited < Removed, got {new} {running} {exited} {removed}:\n{mine:#?}"
    );
    assert!(
        running < stopped && stopped < removed,
        "{id}: Status=stopped at {stopped}"
    );
    assert_eq!(
        ev.count(|e| matches!(e, Event::Exited(i, _, _) if i == id)),
        1,
        "{id}: ContainerExited once: {mine:#?}"
    );
    assert!(
        !ev.seen[removed + 1..]
            .iter()
            .any(|e| matches!(e, Event::Prop(q, _, _) if *q == p)),
        "{id}: PropertiesChanged after ContainerRemoved: {mine:#?}"
    );
}

#[test]
fn signals_arrive_in_order() {
    let Some(b) = berth_box::up_or_skip("signals_arrive_in_order") else {
        return;
    };
    let c = berthd(&b);
    let mut ev = listen(&b);

    // A process that runs a moment: every step announced, in order. Several
    // rounds: a race between Start's announcement and the exit's shows up.
    let bundle = busybox_bundle("ev-exit7", &["sh", "-c", "exit 7"]);
    for i in 0..5 {
        exit_7_in_order(&c, &mut ev, &bundle, &format!("seven{i}"));
    }

    // A process that exits at once: ContainerExited is not missed, and
    // comes after ContainerNew.
    let instant = busybox_bundle("ev-true", &["true"]);
    for i in 0..5 {
        let id = format!("quick{i}");
        let path: OwnedObjectPath = call(
            &c,
            "CreateContainer",
            &(id.as_str(), instant.path(), no_options()),
        )
        .unwrap();
        let () = call(&c, "StartContainer", &(id.as_str(),)).unwrap();
        let (code, signal): (i32, i32) = call(&c, "WaitContainer", &(id.as_str(),)).unwrap();
        assert_eq!((code, signal), (0, 0));
        let new = ev.find("ContainerNew", |e| {
            *e == Event::New(id.clone(), path.to_string())
        });
        let exited = ev.find("ContainerExited(0, 0)", |e| {
            *e == Event::Exited(id.clone(), 0, 0)
        });
        assert!(new < exited, "{id}: New {new}, Exited {exited}");
        let () = call(&c, "DeleteContainer", &(id.as_str(), false)).unwrap();
        let removed = ev.find("ContainerRemoved", |e| {
            *e == Event::Removed(id.clone(), path.to_string())
        });
        assert!(exited < removed, "{id}: Exited {exited}, Removed {removed}");
    }
    ev.drain(Duration::from_millis(300));
    for i in 0..5 {
        let id = format!("quick{i}");
        assert_eq!(
            ev.count(|e| matches!(e, Event::Exited(x, _, _) if *x == id)),
            1,
            "{id}: ContainerExited once"
        );
    }
}

#[test]
fn an_exec_exits_before_its_container() {
    let Some(b) = berth_box::up_or_skip("an_exec_exits_before_its_container") else {
        return;
    };
    let c = berthd(&b);
    let mut ev = listen(&b);
    let bundle = busybox_bundle("ev-exec", &["sleep", "30"]);
    let path: OwnedObjectPath =
        call(&c, "CreateContainer", &("ex1", bundle.path(), no_options())).unwrap();
    let p = path.to_string();
    let () = call(&c, "StartContainer", &("ex1",)).unwrap();
    let init_pid: u32 = prop(&c, &path, "Pid");
    let process = json!({
        "args": ["sh", "-c", "exit 5"],
        "cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"],
    })
    .to_string();
    let exec_id: String = call(
        &c,
        "ExecContainer",
        &("ex1", process.as_str(), no_options()),
    )
    .unwrap();
    let (code, signal): (i32, i32) = call(&c, "WaitExec", &("ex1", exec_id.as_str())).unwrap();
    assert_eq!((code, signal), (5, 0));
    // The exec's exit is not the container's: still running, same init, and
    // no ContainerExited yet.
    assert_eq!(prop::<String>(&c, &path, "Status"), "running");
    assert_eq!(prop::<u32>(&c, &path, "Pid"), init_pid);
    ev.drain(Duration::from_millis(300));
    assert_eq!(
        ev.count(|e| matches!(e, Event::Exited(..))),
        0,
        "an exec's exit announced as the container's: {:#?}",
        ev.seen
    );
    // berthd has no signal for an exec's exit (WaitExec is the only way to
    // learn it), so "the exec's exit precedes the init's" is: WaitExec
    // answered (above) before the init's ContainerExited (below).
    let () = call(&c, "KillContainer", &("ex1", "init", 9)).unwrap();
    let (code, signal): (i32, i32) = call(&c, "WaitContainer", &("ex1",)).unwrap();
    assert_eq!((code, signal), (137, 9));
    let () = call(&c, "DeleteContainer", &("ex1", false)).unwrap();
    let new = ev.find("ContainerNew", |e| {
        *e == Event::New("ex1".into(), p.clone())
    });
    let running = ev.find("Status=running", status_is(&p, "running"));
    let exited = ev.find("ContainerExited(137, 9)", |e| {
        *e == Event::Exited("ex1".into(), 137, 9)
    });
    let removed = ev.find("ContainerRemoved", |e| {
        *e == Event::Removed("ex1".into(), p.clone())
    });
    assert!(
        new < running && running < exited && exited < removed,
        "{:#?}",
        ev.seen
    );
}
