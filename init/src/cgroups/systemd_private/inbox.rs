//! What the private connection receives: the framing of a message off the
//! socket, and the filing of replies and of our jobs' JobRemoved in the
//! state callers wait on (the reader thread of `super` runs these).

use std::collections::HashMap;
use std::io::Read;

use zbus::zvariant::serialized::{Context, Data};
use zbus::zvariant::{Endian, ObjectPath, Value};

/// The D-Bus specification's limit on one message.
const MAX_MESSAGE: usize = 128 * 1024 * 1024;

/// A reply as the reader filed it.
pub(super) enum Reply {
    /// A method return; for a job call, the job's path.
    Return(Option<String>),
    Error {
        name: String,
        message: String,
    },
}

/// What the reader expects a serial's reply to carry.
#[derive(Clone, Copy)]
pub(super) enum Expect {
    Nothing,
    Job,
}

/// A job of ours. systemd answers two requests for the same change (two
/// stops of one unit) with the same job, so a job may have two waiters.
#[derive(Debug, Default, PartialEq)]
pub(super) struct JobSlot {
    pub(super) waiters: u32,
    /// None while the job runs; its result ("done", "failed", …) once removed.
    pub(super) result: Option<String>,
}

#[derive(Default)]
pub(super) struct State {
    /// Calls sent and not yet answered.
    pub(super) expected: HashMap<u32, Expect>,
    /// Answers not yet taken by their caller.
    pub(super) replies: HashMap<u32, Reply>,
    /// Jobs we made, until their waiters take them.
    pub(super) jobs: HashMap<String, JobSlot>,
    /// Why the connection ended, once it has.
    pub(super) closed: Option<String>,
}

/// One waiter's results of `jobs`, each slot dropped with its last waiter.
pub(super) fn take_results(state: &mut State, jobs: &[&str]) -> Vec<Option<String>> {
    jobs.iter()
        .map(|j| {
            let slot = state.jobs.get_mut(*j)?;
            slot.waiters = slot.waiters.saturating_sub(1);
            let result = slot.result.clone();
            if slot.waiters == 0 {
                state.jobs.remove(*j);
            }
            result
        })
        .collect()
}

/// One message's bytes and endianness.
pub(super) struct Message {
    pub(super) bytes: Vec<u8>,
    pub(super) endian: Endian,
    pub(super) body_at: usize,
}

pub(super) fn read_message(reader: &mut impl Read) -> std::result::Result<Message, String> {
    let mut fixed = [0u8; 16];
    reader
        .read_exact(&mut fixed)
        .map_err(|e| format!("reading: {e}"))?;
    let endian = match fixed[0] {
        b'l' => Endian::Little,
        b'B' => Endian::Big,
        other => return Err(format!("a message with endianness byte {other:#x}")),
    };
    let word = |at: usize| {
        let b = [fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]];
        match endian {
            Endian::Little => u32::from_le_bytes(b),
            Endian::Big => u32::from_be_bytes(b),
        }
    };
    let (body_len, fields_len) = (word(4) as usize, word(12) as usize);
    let body_at = (16 + fields_len).next_multiple_of(8);
    let total = body_at.saturating_add(body_len);
    if total > MAX_MESSAGE {
        return Err(format!("a message of {total} bytes"));
    }
    let mut bytes = vec![0u8; total];
    bytes[..16].copy_from_slice(&fixed);
    reader
        .read_exact(&mut bytes[16..])
        .map_err(|e| format!("reading: {e}"))?;
    Ok(Message {
        bytes,
        endian,
        body_at,
    })
}

/// The header's fixed part and fields, as the specification lays them out.
pub(super) type Header<'a> = (u8, u8, u8, u8, u32, u32, Vec<(u8, Value<'a>)>);

pub(super) const METHOD_RETURN: u8 = 2;
pub(super) const ERROR: u8 = 3;
pub(super) const SIGNAL: u8 = 4;
pub(super) const FIELD_MEMBER: u8 = 3;
pub(super) const FIELD_ERROR_NAME: u8 = 4;
pub(super) const FIELD_REPLY_SERIAL: u8 = 5;

/// Files `message` in `state`; true if a waiter may care. A message that
/// does not parse is dropped: it cannot be ours.
pub(super) fn file(state: &mut State, message: &Message) -> bool {
    // systemd sends every unit's signals here; most are not JobRemoved and
    // are dropped before a parse (the member is in the header's fields).
    let fields = message.bytes.get(16..message.body_at).unwrap_or_default();
    if message.bytes.get(1) == Some(&SIGNAL) && !fields.windows(10).any(|w| w == b"JobRemoved") {
        return false;
    }
    let data = Data::new(&message.bytes[..], Context::new_dbus(message.endian, 0));
    let Ok(((_, kind, _, _, _, _, fields), _)) = data.deserialize::<Header<'_>>() else {
        return false;
    };
    let field = |code: u8| fields.iter().find(|(c, _)| *c == code).map(|(_, v)| v);
    let body = Data::new(
        &message.bytes[message.body_at..],
        Context::new_dbus(message.endian, 0),
    );
    match kind {
        METHOD_RETURN | ERROR => {
            let Some(Value::U32(serial)) = field(FIELD_REPLY_SERIAL) else {
                return false;
            };
            let Some(expect) = state.expected.remove(serial) else {
                return false;
            };
            let reply = if kind == ERROR {
                let name = match field(FIELD_ERROR_NAME) {
                    Some(Value::Str(s)) => s.to_string(),
                    _ => "org.freedesktop.DBus.Error.Failed".into(),
                };
                let message = body
                    .deserialize::<String>()
                    .map(|(m, _)| m)
                    .unwrap_or_default();
                Reply::Error { name, message }
            } else if let Expect::Job = expect {
                // Filed before the next message is read: the job's
                // JobRemoved comes after this reply on the connection.
                let job = body.deserialize::<ObjectPath<'_>>().ok();
                let job = job.map(|(p, _)| p.to_string());
                if let Some(job) = &job {
                    state.jobs.entry(job.clone()).or_default().waiters += 1;
                }
                Reply::Return(job)
            } else {
                Reply::Return(None)
            };
            state.replies.insert(*serial, reply);
            true
        }
        SIGNAL => {
            if !matches!(field(FIELD_MEMBER), Some(Value::Str(m)) if m.as_str() == "JobRemoved") {
                return false;
            }
            let Ok(((_id, job, _unit, result), _)) =
                body.deserialize::<(u32, ObjectPath<'_>, &str, &str)>()
            else {
                return false;
            };
            match state.jobs.get_mut(job.as_str()) {
                Some(slot) => {
                    slot.result = Some(result.to_string());
                    true
                }
                None => false,
            }
        }
        _ => false,
    }
}
