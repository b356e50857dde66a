//! The calls that make and wait for systemd jobs (a scope's start and stop),
//! over whichever connection serves them best: systemd's private socket
//! when this process asked for it ([`use_private_bus`]; berthd does) and it
//! answers, else the system bus. Everything else (freeze, properties,
//! GetUnit) stays on the system bus: it is not on the create/delete path.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use zbus::export::futures_core::Stream;
use zbus::zvariant::{ObjectPath, Value};
use zbus::MessageStream;

use super::systemd::{ManagerProxyBlocking, JOB_QUEUE, JOB_REMOVED_RULE, JOB_TIMEOUT};
use super::systemd_private::{PrivateBus, PrivateBusError, SOCKET};
use super::{CgroupError, Result};

/// A failed call to systemd, from either connection.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Bus(#[from] zbus::Error),
    #[error(transparent)]
    Private(#[from] Box<PrivateBusError>),
}

impl CallError {
    /// The D-Bus error name, if systemd answered with an error.
    pub fn name(&self) -> Option<&str> {
        match self {
            CallError::Bus(zbus::Error::MethodError(name, _, _)) => Some(name.as_str()),
            CallError::Bus(_) => None,
            CallError::Private(e) => e.name(),
        }
    }
}

impl From<PrivateBusError> for CallError {
    fn from(e: PrivateBusError) -> CallError {
        CallError::Private(Box::new(e))
    }
}

/// Whether this process asked for the private socket.
static PREFER_PRIVATE: AtomicBool = AtomicBool::new(false);

/// The private connection, and when connecting last failed.
static PRIVATE: Mutex<(Option<Arc<PrivateBus>>, Option<Instant>)> = Mutex::new((None, None));

/// How long after a failed connect the system bus is used without trying
/// again (systemd re-executing, or a host whose systemd has no such socket).
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Routes this process's scope starts and stops over systemd's private
/// socket from now on, connecting now; if that fails they use the system
/// bus and a later call tries again. For a long-lived root process: the
/// connection gets every unit signal of the host (which it drops).
pub fn use_private_bus() -> std::result::Result<(), CallError> {
    PREFER_PRIVATE.store(true, Ordering::Relaxed);
    let mut slot = PRIVATE.lock().unwrap_or_else(|p| p.into_inner());
    let bus = PrivateBus::connect(SOCKET.as_ref()).map_err(CallError::from)?;
    *slot = (Some(Arc::new(bus)), None);
    Ok(())
}

/// The private connection, reconnected if it ended; None: use the bus.
fn private_bus() -> Option<Arc<PrivateBus>> {
    if !PREFER_PRIVATE.load(Ordering::Relaxed) {
        return None;
    }
    let mut slot = PRIVATE.lock().unwrap_or_else(|p| p.into_inner());
    match &slot.0 {
        Some(bus) if !bus.is_closed() => return Some(bus.clone()),
        _ => {}
    }
    if slot.1.is_some_and(|failed| failed.elapsed() < RETRY_AFTER) {
        return None;
    }
    match PrivateBus::connect(SOCKET.as_ref()) {
        Ok(bus) => {
            let bus = Arc::new(bus);
            *slot = (Some(bus.clone()), None);
            Some(bus)
        }
        Err(_) => {
            *slot = (None, Some(Instant::now()));
            None
        }
    }
}

/// One batch of job calls and the waits for their jobs.
pub(super) struct JobCalls {
    proxy: ManagerProxyBlocking<'static>,
    route: Route,
}

enum Route {
    Private(Arc<PrivateBus>),
    /// The system bus, with the JobRemoved stream opened BEFORE the first
    /// call (a fast job's signal would otherwise come before we listen).
    /// Boxed: a stream is large, and the private route is a pointer.
    Bus(Box<MessageStream>),
}

fn bus_route(proxy: &ManagerProxyBlocking<'static>) -> std::result::Result<Route, CallError> {
    let conn = proxy.inner().connection().inner();
    let jobs = zbus::block_on(MessageStream::for_match_rule(
        JOB_REMOVED_RULE,
        conn,
        Some(JOB_QUEUE),
    ))?;
    Ok(Route::Bus(Box::new(jobs)))
}

type CallResult<T> = std::result::Result<T, CallError>;

impl JobCalls {
    pub(super) fn open(proxy: &ManagerProxyBlocking<'static>) -> CallResult<JobCalls> {
        let route = match private_bus() {
            Some(bus) => Route::Private(bus),
            None => bus_route(proxy)?,
        };
        Ok(JobCalls {
            proxy: proxy.clone(),
            route,
        })
    }

    /// Makes a call over the private socket, or the system bus. A private
    /// connection found gone before the call left (systemd re-executed a
    /// moment ago) sends it, and the rest of the batch, over the bus: the
    /// call never reached systemd, so making it again is safe.
    fn call<T>(
        &mut self,
        private: impl FnOnce(&PrivateBus) -> std::result::Result<T, PrivateBusError>,
        bus: impl FnOnce(&ManagerProxyBlocking<'static>) -> zbus::Result<T>,
    ) -> CallResult<T> {
        if let Route::Private(conn) = &self.route {
            match private(conn) {
                Err(PrivateBusError::Write(_)) => self.route = bus_route(&self.proxy)?,
                done => return done.map_err(CallError::from),
            }
        }
        bus(&self.proxy).map_err(CallError::from)
    }

    /// StartTransientUnit in mode "fail", no aux units: the job's path.
    pub(super) fn start_transient_unit(
        &mut self,
        unit: &str,
        props: &[(&str, Value<'_>)],
    ) -> CallResult<String> {
        let aux: &[(&str, &[(&str, Value<'_>)])] = &[];
        self.call(
            |p| p.call_job("StartTransientUnit", &(unit, "fail", props, aux)),
            |b| {
                Ok(b.start_transient_unit(unit, "fail", props, aux)?
                    .to_string())
            },
        )
    }

    /// StopUnit in mode "replace": the job's path.
    pub(super) fn stop_unit(&mut self, unit: &str) -> CallResult<String> {
        self.call(
            |p| p.call_job("StopUnit", &(unit, "replace")),
            |b| Ok(b.stop_unit(unit, "replace")?.to_string()),
        )
    }

    pub(super) fn reset_failed_unit(&mut self, unit: &str) -> CallResult<()> {
        self.call(
            |p| p.call("ResetFailedUnit", &(unit,)),
            |b| b.reset_failed_unit(unit),
        )
    }

    /// A call whose reply nobody waits for. systemd handles a connection's
    /// calls in order, so it is done before the next call is looked at.
    pub(super) fn send<B>(&mut self, member: &'static str, body: &B)
    where
        B: serde::Serialize + zbus::zvariant::DynamicType,
    {
        let _ = self.call(
            |p| p.call_noreply(member, body),
            |b| b.inner().call_noreply(member, body),
        );
    }

    /// Waits (bounded, all within one JOB_TIMEOUT) until every job of
    /// `pending` (unit, job) is removed, and requires result "done" of each:
    /// the first failure is returned, after all were waited for (so none
    /// is still running after).
    pub(super) fn wait(&mut self, pending: &[(&str, &str)], op: &'static str) -> Result<()> {
        let deadline = Instant::now() + JOB_TIMEOUT;
        let results = match &mut self.route {
            Route::Private(bus) => {
                let jobs: Vec<&str> = pending.iter().map(|(_, j)| *j).collect();
                let unit = pending.first().map_or("", |(u, _)| *u);
                bus.wait_jobs(&jobs, deadline)
                    .map_err(|e| systemd_error(op, unit, e.into()))?
            }
            Route::Bus(jobs) => wait_on_stream(jobs, pending, deadline, op)?,
        };
        let mut result = Ok(());
        for (&(unit, job), outcome) in pending.iter().zip(results) {
            let failure = match outcome {
                Some(done) if done == "done" => continue,
                Some(result) => CgroupError::Job {
                    op,
                    unit: unit.into(),
                    job: job.into(),
                    result,
                },
                None => CgroupError::Timeout {
                    what: format!("systemd job {job} ({op} {unit})"),
                    waited: JOB_TIMEOUT,
                },
            };
            result = result.and(Err(failure));
        }
        result
    }
}

pub(super) fn systemd_error(op: &'static str, unit: &str, source: CallError) -> CgroupError {
    CgroupError::Systemd {
        op,
        unit: unit.into(),
        source: Box::new(source),
    }
}

/// The results of `pending`'s jobs as their JobRemoved signals arrive on
/// `jobs`; None for those still running at `deadline`.
fn wait_on_stream(
    jobs: &mut MessageStream,
    pending: &[(&str, &str)],
    deadline: Instant,
    op: &'static str,
) -> Result<Vec<Option<String>>> {
    let mut results = vec![None; pending.len()];
    let mut left = pending.len();
    while left > 0 {
        let signal = match next_before(jobs, deadline) {
            Some(Some(Ok(s))) => s,
            // An error in the stream (a message zbus could not read) is
            // not our job's end; keep waiting until the deadline.
            Some(Some(Err(_))) => continue,
            Some(None) => {
                let unit = pending.first().map_or("", |(u, _)| *u);
                return Err(systemd_error(
                    op,
                    unit,
                    zbus::Error::Failure(
                        "the bus connection closed while waiting for the job".into(),
                    )
                    .into(),
                ));
            }
            None => break,
        };
        let body = signal.body();
        let Ok((_id, removed, _unit, outcome)) =
            body.deserialize::<(u32, ObjectPath<'_>, &str, &str)>()
        else {
            continue;
        };
        for (i, (_, job)) in pending.iter().enumerate() {
            if *job == removed.as_str() && results[i].is_none() {
                results[i] = Some(outcome.to_string());
                left -= 1;
            }
        }
    }
    Ok(results)
}

/// Polls `stream` from this thread until `deadline`. zbus fills signal streams
/// from its own executor thread, so a waker that unparks us is all we need;
/// the blocking signal iterator has no timeout, and a job must not hang us.
fn next_before<S: Stream + Unpin>(stream: &mut S, deadline: Instant) -> Option<Option<S::Item>> {
    struct Unpark(Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(item) = Pin::new(&mut *stream).poll_next(&mut cx) {
            return Some(item);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        thread::park_timeout(deadline - now);
    }
}
