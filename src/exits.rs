//! Exit notifications: WaitContainer callers wait on a watch channel per
//! container, which the shim's watch fills when it records the exit.
//!
//! WaitContainer is open to every caller, so a channel exists only while
//! someone waits on it: the last waiter to leave removes it. Otherwise any
//! user could grow berthd's memory by waiting on ids (existing or not).

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::watch;

/// (exit code, signal) of a stopped container.
pub type Exit = (i32, i32);

type Channels = HashMap<String, watch::Sender<Option<Exit>>>;

#[derive(Default)]
pub struct Exits {
    map: Mutex<Channels>,
}

/// One caller waiting for the exit of one container.
pub struct ExitWaiter<'a> {
    exits: &'a Exits,
    id: String,
    rx: Option<watch::Receiver<Option<Exit>>>,
}

impl Exits {
    fn map(&self) -> MutexGuard<'_, Channels> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts waiting for `id`'s exit: an exit announced from now on is seen.
    pub fn subscribe(&self, id: &str) -> ExitWaiter<'_> {
        let rx = self
            .map()
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe();
        ExitWaiter {
            exits: self,
            id: id.to_string(),
            rx: Some(rx),
        }
    }

    /// Wakes `id`'s waiters with its exit (none waiting: nothing to do).
    pub fn announce(&self, id: &str, exit: Exit) {
        if let Some(tx) = self.map().get(id) {
            let _ = tx.send(Some(exit));
        }
    }

    /// The container is gone: its waiters wake without an exit.
    pub fn forget(&self, id: &str) {
        self.map().remove(id);
    }

    /// Channels in the map (someone is waiting on each).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map().len()
    }
}

impl ExitWaiter<'_> {
    /// The exit, once announced; None if the container was forgotten first.
    pub async fn exit(&mut self) -> Option<Exit> {
        let rx = self.rx.as_mut()?;
        loop {
            if let Some(v) = *rx.borrow_and_update() {
                return Some(v);
            }
            rx.changed().await.ok()?;
        }
    }
}

impl Drop for ExitWaiter<'_> {
    fn drop(&mut self) {
        let mut map = self.exits.map();
        // Our receiver goes under the map's lock, so of two waiters leaving
        // at once the second always sees the count the first left.
        self.rx = None;
        if map.get(&self.id).is_some_and(|tx| tx.receiver_count() == 0) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn waiters_see_the_exit_and_leave_no_channel() {
        let exits = Arc::new(Exits::default());
        let mut a = exits.subscribe("c");
        let mut b = exits.subscribe("c");
        exits.announce("c", (3, 0));
        assert_eq!(a.exit().await, Some((3, 0)));
        assert_eq!(b.exit().await, Some((3, 0)));
        drop(a);
        assert_eq!(exits.len(), 1, "b still waits");
        drop(b);
        assert_eq!(exits.len(), 0);
    }

    #[tokio::test]
    async fn forgetting_wakes_the_waiters() {
        let exits = Exits::default();
        let mut w = exits.subscribe("c");
        exits.forget("c");
        assert_eq!(w.exit().await, None);
        drop(w);
        assert_eq!(exits.len(), 0);
    }
}
