//! The framing and filing of the private connection, against a peer that
//! speaks the wire protocol from a test thread (the real systemd is in the
//! integration tests: berthd places and deletes every container this way).

use std::os::unix::net::UnixListener;

use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{ObjectPath, Value};

use super::inbox::*;
use super::*;

const JOB: &str = "/org/freedesktop/systemd1/job/42";

fn call(serial: u32) -> zbus::Message {
    zbus::Message::method_call(MANAGER_PATH, "StopUnit")
        .and_then(|b| b.interface(MANAGER))
        .unwrap()
        .serial(NonZeroU32::new(serial).unwrap())
        .build(&("x.scope", "replace"))
        .unwrap()
}

fn job_removed(job: &str, result: &str) -> zbus::Message {
    zbus::Message::signal(MANAGER_PATH, MANAGER, "JobRemoved")
        .unwrap()
        .build(&(42u32, ObjectPath::try_from(job).unwrap(), "x.scope", result))
        .unwrap()
}

fn parsed(m: &zbus::Message) -> Message {
    read_message(&mut m.data().bytes()).unwrap()
}

#[test]
fn replies_are_filed_by_serial_and_only_our_jobs_are_kept() {
    let mut state = State::default();
    state.expected.insert(7, Expect::Job);
    state.expected.insert(8, Expect::Nothing);
    let ret = zbus::Message::method_return(&call(7).header())
        .unwrap()
        .build(&ObjectPath::try_from(JOB).unwrap())
        .unwrap();
    assert!(file(&mut state, &parsed(&ret)));
    assert!(matches!(state.replies.get(&7), Some(Reply::Return(Some(j))) if j == JOB));
    let running = JobSlot {
        waiters: 1,
        result: None,
    };
    assert_eq!(state.jobs.get(JOB), Some(&running));
    // A second request answered with the same job: two waiters.
    state.expected.insert(9, Expect::Job);
    let same = zbus::Message::method_return(&call(9).header())
        .unwrap()
        .build(&ObjectPath::try_from(JOB).unwrap())
        .unwrap();
    assert!(file(&mut state, &parsed(&same)));
    assert_eq!(state.jobs.get(JOB).map(|s| s.waiters), Some(2));

    let err = zbus::Message::error(&call(8).header(), "org.freedesktop.systemd1.NoSuchUnit")
        .unwrap()
        .build(&("Unit x.scope not loaded.",))
        .unwrap();
    assert!(file(&mut state, &parsed(&err)));
    match state.replies.get(&8) {
        Some(Reply::Error { name, message }) => {
            assert_eq!(name, "org.freedesktop.systemd1.NoSuchUnit");
            assert_eq!(message, "Unit x.scope not loaded.");
        }
        _ => panic!("the error reply was not filed"),
    }

    // Another signal, someone else's job, and a reply nobody waits for:
    // dropped.
    let other = zbus::Message::signal(MANAGER_PATH, MANAGER, "UnitNew")
        .unwrap()
        .build(&("x.scope", ObjectPath::try_from(JOB).unwrap()))
        .unwrap();
    assert!(!file(&mut state, &parsed(&other)));
    assert!(!file(
        &mut state,
        &parsed(&job_removed("/org/freedesktop/systemd1/job/9", "done"))
    ));
    assert!(!state.jobs.contains_key("/org/freedesktop/systemd1/job/9"));
    assert!(!file(&mut state, &parsed(&ret)));
    // Ours: its result is kept for its waiter.
    assert!(file(&mut state, &parsed(&job_removed(JOB, "failed"))));
    assert_eq!(
        state.jobs.get(JOB).and_then(|s| s.result.as_deref()),
        Some("failed")
    );
    // Each waiter gets the result; the last one drops the slot.
    assert_eq!(
        take_results(&mut state, &[JOB]),
        vec![Some("failed".into())]
    );
    assert_eq!(
        take_results(&mut state, &[JOB]),
        vec![Some("failed".into())]
    );
    assert!(state.jobs.is_empty());
}

#[test]
fn a_truncated_or_foreign_stream_ends_the_connection() {
    let bytes = call(1).data().bytes().to_vec();
    assert!(read_message(&mut &bytes[..bytes.len() - 1]).is_err());
    let mut foreign = bytes.clone();
    foreign[0] = b'x';
    assert!(read_message(&mut &foreign[..]).is_err());
}

/// A peer that authenticates like systemd, answers the first call with a
/// job, removes the job, answers the second with an error, then hangs up.
fn fake_systemd(listener: UnixListener) -> thread::JoinHandle<Vec<String>> {
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        let mut auth = Vec::new();
        reader.read_until(b'\n', &mut auth).unwrap();
        assert!(auth.starts_with(b"\0AUTH EXTERNAL "), "{auth:?}");
        out.write_all(b"OK 0123456789abcdef0123456789abcdef\r\n")
            .unwrap();
        let mut begin = String::new();
        reader.read_line(&mut begin).unwrap();
        assert_eq!(begin, "BEGIN\r\n");
        let mut members = Vec::new();
        for n in 0..3 {
            let m = read_message(&mut reader).unwrap();
            let data = Data::new(&m.bytes[..], Context::new_dbus(m.endian, 0));
            let ((_, _, flags, _, _, serial, fields), _) =
                data.deserialize::<Header<'_>>().unwrap();
            let member = fields.iter().find(|(c, _)| *c == FIELD_MEMBER).unwrap();
            let Value::Str(member) = &member.1 else {
                panic!("member {:?}", member.1)
            };
            members.push(format!("{member} flags={flags}"));
            let call = call(serial);
            let reply = match n {
                0 => zbus::Message::method_return(&call.header())
                    .unwrap()
                    .build(&ObjectPath::try_from(JOB).unwrap())
                    .unwrap(),
                1 => continue, // the no-reply call
                _ => zbus::Message::error(&call.header(), "org.freedesktop.systemd1.NoSuchUnit")
                    .unwrap()
                    .build(&("gone",))
                    .unwrap(),
            };
            out.write_all(reply.data().bytes()).unwrap();
            if n == 0 {
                let other = job_removed("/org/freedesktop/systemd1/job/1", "done");
                out.write_all(other.data().bytes()).unwrap();
                out.write_all(job_removed(JOB, "done").data().bytes())
                    .unwrap();
            }
        }
        members
    })
}

#[test]
fn calls_jobs_errors_and_the_end_of_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("private");
    let peer = fake_systemd(UnixListener::bind(&socket).unwrap());
    let bus = PrivateBus::connect(&socket).unwrap();

    let job = bus.call_job("StopUnit", &("x.scope", "replace")).unwrap();
    assert_eq!(job, JOB);
    let results = bus
        .wait_jobs(&[&job], Instant::now() + Duration::from_secs(10))
        .unwrap();
    assert_eq!(results, vec![Some("done".to_string())]);
    bus.call_noreply("KillUnit", &("x.scope", "all", 9i32))
        .unwrap();
    let e = bus.call("ResetFailedUnit", &("x.scope",)).unwrap_err();
    assert_eq!(e.name(), Some("org.freedesktop.systemd1.NoSuchUnit"));

    let members = peer.join().unwrap();
    assert_eq!(
        members,
        [
            "StopUnit flags=0",
            "KillUnit flags=1",
            "ResetFailedUnit flags=0"
        ]
    );
    // The peer hung up: a waiter is told at once, not at its deadline.
    let t0 = Instant::now();
    let e = bus
        .wait_jobs(&["/x"], Instant::now() + Duration::from_secs(10))
        .map(drop);
    let e = match e {
        Err(e) => e,
        // The reader may not have seen the end yet: a call surely fails.
        Ok(()) => bus.call("ResetFailedUnit", &("x.scope",)).unwrap_err(),
    };
    assert!(
        matches!(e, PrivateBusError::Closed(_) | PrivateBusError::Write(_)),
        "{e}"
    );
    assert!(t0.elapsed() < Duration::from_secs(5));
    assert!(bus.is_closed() || matches!(e, PrivateBusError::Write(_)));
}

#[test]
fn a_peer_that_never_answers_fails_the_connect_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("private");
    let listener = UnixListener::bind(&socket).unwrap();
    let t0 = Instant::now();
    let e = PrivateBus::connect_within(&socket, Duration::from_millis(200)).err();
    assert!(matches!(e, Some(PrivateBusError::Connect(_))), "{e:?}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    drop(listener);
}
