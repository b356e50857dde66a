//! A container's lifecycle: its states, the verbs that act on it, and the one
//! table of which verb is allowed in which state and what it leads to. Every
//! verb in daemon.rs, recovery.rs and shims.rs asks `transition` first, so
//! the rules live here and nowhere else (containerd's shim keeps its process
//! states the same way, and words its refusals alike).

use std::fmt;

/// Where a container is in its life, as stored (serde: the lowercase names,
/// the strings older records hold) and as the D-Bus Status property shows it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Intent recorded, the shim not done yet: a crash leaves this for
    /// recovery to undo.
    #[default]
    Creating,
    /// Made, its init blocked on the exec FIFO.
    Created,
    Running,
    /// Its scope frozen.
    Paused,
    /// Its init exited (or its shim died): the exit is recorded.
    Stopped,
}

impl Status {
    /// Every state, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Creating,
        Status::Created,
        Status::Running,
        Status::Paused,
        Status::Stopped,
    ];

    /// The name callers see (D-Bus Status, ListContainers, Info's
    /// `containers_<name>`), the same as the stored one (a unit test holds
    /// the two together).
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is done to a container: the callers' verbs and the events berthd
/// records (the shim's report, the shim's end, a start found by recovery).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// The shim reported the container made.
    Made,
    /// Start; also recovery recording a start cut short by a crash.
    Start,
    Kill,
    Pause,
    Resume,
    Exec,
    /// Reading the container's cgroup (GetContainerStats).
    Stats,
    /// The shim is gone: record the exit (from its record, or "shim died").
    Exit,
    Delete {
        force: bool,
    },
    /// Run a stopped container again (a restart policy, a health check's
    /// on_failure=restart): a new shim from the same bundle.
    Relaunch,
}

impl Verb {
    /// Every verb, for the table's tests.
    #[cfg(test)]
    pub const ALL: [Verb; 11] = [
        Verb::Made,
        Verb::Start,
        Verb::Kill,
        Verb::Pause,
        Verb::Resume,
        Verb::Exec,
        Verb::Stats,
        Verb::Exit,
        Verb::Delete { force: false },
        Verb::Delete { force: true },
        Verb::Relaunch,
    ];

    fn name(self) -> &'static str {
        match self {
            Verb::Made => "finish creating",
            Verb::Start => "start",
            Verb::Kill => "kill",
            Verb::Pause => "pause",
            Verb::Resume => "resume",
            Verb::Exec => "exec in",
            Verb::Stats => "read the cgroup of",
            Verb::Exit => "record the exit of",
            Verb::Delete { .. } => "delete",
            Verb::Relaunch => "restart",
        }
    }
}

/// What an allowed verb leads to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Go ahead; once done the container is in this state (for Kill, Exec
    /// and Stats the one it is in: the verb changes no state of its own).
    To(Status),
    /// Delete: the record goes; a process that may still be there is killed
    /// (and its exit awaited) first.
    Remove { kill_first: bool },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    #[error("cannot {} a container in {from} state", .verb.name())]
    NotAllowed { verb: Verb, from: Status },
    #[error("cannot delete a container in {from} state (use force)")]
    NeedsForce { from: Status },
    /// Exit of a stopped container: its exit is recorded already, and a
    /// second record would overwrite the first (the real one) with a guess.
    #[error("the exit of this container is recorded already")]
    ExitRecorded,
}

/// The lifecycle: state × verb → the step, or why not.
pub fn transition(from: Status, verb: Verb) -> Result<Step, LifecycleError> {
    use Status::*;
    let not_allowed = Err(LifecycleError::NotAllowed { verb, from });
    match (from, verb) {
        (Creating, Verb::Made) => Ok(Step::To(Created)),
        (Created, Verb::Start) => Ok(Step::To(Running)),
        (Running, Verb::Pause) => Ok(Step::To(Paused)),
        (Paused, Verb::Resume) => Ok(Step::To(Running)),
        // A paused container's processes take signals once thawed; SIGKILL
        // ends them frozen or not.
        (Created | Running | Paused, Verb::Kill | Verb::Stats) => Ok(Step::To(from)),
        (Running, Verb::Exec) => Ok(Step::To(Running)),
        // Creating too: a shim that died inside a create leaves the record
        // that says so.
        (Creating | Created | Running | Paused, Verb::Exit) => Ok(Step::To(Stopped)),
        (Stopped, Verb::Exit) => Err(LifecycleError::ExitRecorded),
        (Stopped, Verb::Relaunch) => Ok(Step::To(Created)),
        (Stopped, Verb::Delete { .. }) => Ok(Step::Remove { kill_first: false }),
        // Its create is under way (a record left creating by a crash is
        // recovery's at the next start): removing its files now would fail
        // the create half-way. It can be deleted once made.
        (Creating, Verb::Delete { .. }) => not_allowed,
        // A created container never ran: deleting it is always fine.
        (Created, Verb::Delete { .. }) | (_, Verb::Delete { force: true }) => {
            Ok(Step::Remove { kill_first: true })
        }
        (_, Verb::Delete { force: false }) => Err(LifecycleError::NeedsForce { from }),
        (
            _,
            Verb::Made
            | Verb::Start
            | Verb::Pause
            | Verb::Resume
            | Verb::Kill
            | Verb::Exec
            | Verb::Stats
            | Verb::Relaunch,
        ) => not_allowed,
    }
}

/// The state `from` moves to on `verb`, or `from` itself if the verb is not
/// allowed there: for recording an event that may have been overtaken (a
/// start whose container exited before the record was written stays stopped).
pub fn after(from: Status, verb: Verb) -> Status {
    match transition(from, verb) {
        Ok(Step::To(to)) => to,
        _ => from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn to(s: Status) -> Result<Step, LifecycleError> {
        Ok(Step::To(s))
    }

    fn no(verb: Verb, from: Status) -> Result<Step, LifecycleError> {
        Err(LifecycleError::NotAllowed { verb, from })
    }

    #[test]
    fn every_state_and_verb_has_its_step() {
        let remove = |kill_first| Ok(Step::Remove { kill_first });
        let force = |from| Err(LifecycleError::NeedsForce { from });
        for from in Status::ALL {
            for verb in Verb::ALL {
                let want = match (verb, from) {
                    (Verb::Made, Creating) => to(Created),
                    (Verb::Start, Created) => to(Running),
                    (Verb::Pause, Running) => to(Paused),
                    (Verb::Resume, Paused) => to(Running),
                    (Verb::Kill | Verb::Stats, Created | Running | Paused) => to(from),
                    (Verb::Exec, Running) => to(Running),
                    (Verb::Exit, Stopped) => Err(LifecycleError::ExitRecorded),
                    (Verb::Exit, _) => to(Stopped),
                    (Verb::Delete { .. }, Stopped) => remove(false),
                    (Verb::Delete { .. }, Creating) => no(verb, from),
                    (Verb::Delete { .. }, Created) => remove(true),
                    (Verb::Delete { force: true }, _) => remove(true),
                    (Verb::Delete { force: false }, _) => force(from),
                    (Verb::Relaunch, Stopped) => to(Created),
                    _ => no(verb, from),
                };
                assert_eq!(transition(from, verb), want, "{verb:?} in {from}");
            }
        }
    }

    #[test]
    fn refusals_name_the_verb_and_the_state() {
        let e = transition(Created, Verb::Pause).unwrap_err();
        assert_eq!(e.to_string(), "cannot pause a container in created state");
        let e = transition(Running, Verb::Delete { force: false }).unwrap_err();
        assert_eq!(
            e.to_string(),
            "cannot delete a container in running state (use force)"
        );
    }

    #[test]
    fn an_overtaken_event_leaves_the_state() {
        assert_eq!(after(Created, Verb::Start), Running);
        assert_eq!(after(Stopped, Verb::Start), Stopped);
        assert_eq!(after(Paused, Verb::Start), Paused);
    }

    #[test]
    fn stored_names_are_the_shown_names() {
        for s in Status::ALL {
            let stored = serde_json::to_string(&s).unwrap();
            assert_eq!(stored, format!("\"{}\"", s.as_str()));
            assert_eq!(serde_json::from_str::<Status>(&stored).unwrap(), s);
        }
        assert!(serde_json::from_str::<Status>("\"exploded\"").is_err());
    }
}
