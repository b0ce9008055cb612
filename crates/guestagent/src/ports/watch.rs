//! Watching the listeners: poll [`listening`](super::listening) at an interval and report the
//! difference between consecutive snapshots as [`Event`]s.
//!
//! The first successful poll reports every listener as [`Event::Added`]. Listeners are compared
//! by [`Listener::key`] (protocol, address, port): two sockets on one port (`SO_REUSEPORT`) are
//! one port, added when the first appears and removed when the last goes, and a
//! [`Event::Removed`] carries the same listener its [`Event::Added`] did. In one poll's events
//! the removals come first, so a host can release a port before it binds the one that replaced
//! it. A failed poll reports its error and changes nothing: the ports known stay known until a
//! poll succeeds without them.
//!
//! With the default interval (200 ms) a new listener is reported within one interval plus the
//! time of a dump (well under a second) and a closed one as fast; the kernel drops a closed TCP
//! listener at once (its connections linger in `TIME_WAIT`, which is not `LISTEN`).

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::{Interval, MissedTickBehavior};

use super::{Listener, PortsError, Proto};

/// How often a [`Watcher`] polls unless told otherwise.
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(200);

/// The shortest interval a [`Watcher`] polls at (a zero interval is raised to it).
const MIN_INTERVAL: Duration = Duration::from_millis(1);

/// A change in the listening ports.
///
/// JSON: the listener's fields with `"event": "added"` or `"event": "removed"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    Added(Listener),
    Removed(Listener),
}

impl Event {
    /// The listener that was added or removed.
    pub fn listener(&self) -> &Listener {
        match self {
            Event::Added(l) | Event::Removed(l) => l,
        }
    }
}

type Key = (Proto, IpAddr, u16);
type Source = Arc<dyn Fn() -> Result<Vec<Listener>, PortsError> + Send + Sync>;

/// Polls the listeners and yields [`Event`]s, one at a time ([`Watcher::next`]) or as a stream
/// ([`Watcher::into_stream`], [`watch`]).
///
/// Each poll runs on tokio's blocking pool, so a tokio runtime is needed to call
/// [`Watcher::next`] (not to make a `Watcher`).
pub struct Watcher {
    period: Duration,
    interval: Option<Interval>,
    source: Source,
    known: BTreeMap<Key, Listener>,
    pending: VecDeque<Event>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("period", &self.period)
            .field("known", &self.known.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl Default for Watcher {
    fn default() -> Self {
        Watcher::new()
    }
}

impl Watcher {
    /// A watcher polling every [`DEFAULT_INTERVAL`].
    pub fn new() -> Self {
        Watcher::with_interval(DEFAULT_INTERVAL)
    }

    /// A watcher polling every `period` (at least 1 ms).
    pub fn with_interval(period: Duration) -> Self {
        Watcher::with_source(period, super::listening)
    }

    /// A watcher over another listing than the kernel's (for tests, or a filtered view). The
    /// function runs on tokio's blocking pool.
    pub fn with_source<F>(period: Duration, source: F) -> Self
    where
        F: Fn() -> Result<Vec<Listener>, PortsError> + Send + Sync + 'static,
    {
        Watcher {
            period: period.max(MIN_INTERVAL),
            interval: None,
            source: Arc::new(source),
            known: BTreeMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// The polling interval.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The listeners as of the last successful poll, one per [`Listener::key`] (some of that
    /// poll's events may still be queued).
    pub fn known(&self) -> impl Iterator<Item = &Listener> {
        self.known.values()
    }

    /// The next change. The first poll happens at once; later ones every interval, until one
    /// differs. Cancel-safe: dropping the future loses no event (a poll it was waiting for
    /// is made again).
    pub async fn next(&mut self) -> Result<Event, PortsError> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Ok(event);
            }
            let period = self.period;
            let interval = self.interval.get_or_insert_with(|| {
                let mut i = tokio::time::interval(period);
                i.set_missed_tick_behavior(MissedTickBehavior::Delay);
                i
            });
            interval.tick().await;
            let source = Arc::clone(&self.source);
            let now = tokio::task::spawn_blocking(move || source())
                .await
                .map_err(PortsError::Task)??;
            self.pending.extend(apply(&mut self.known, now));
        }
    }

    /// For a caller about to announce the whole of [`Watcher::known`] (a snapshot) instead of
    /// the changes: drops the events not yet taken (`known` already has them), then polls now
    /// (without waiting for the interval) and folds the result into `known` without queueing
    /// events. A failed poll leaves `known` as it was.
    pub async fn refresh(&mut self) -> Result<(), PortsError> {
        self.pending.clear();
        let source = Arc::clone(&self.source);
        let now = tokio::task::spawn_blocking(move || source())
            .await
            .map_err(PortsError::Task)??;
        apply(&mut self.known, now);
        Ok(())
    }

    /// The watcher as a stream of events (errors included; the stream never ends).
    pub fn into_stream(self) -> impl Stream<Item = Result<Event, PortsError>> + Send {
        futures::stream::unfold(self, |mut w| async move {
            let item = w.next().await;
            Some((item, w))
        })
    }
}

/// Events of the kernel's listeners, polled every `period`: `Watcher::with_interval(period)`
/// as a stream.
pub fn watch(period: Duration) -> impl Stream<Item = Result<Event, PortsError>> + Send {
    Watcher::with_interval(period).into_stream()
}

/// Replaces `known` by the listeners of `now` and returns the difference: removals, then
/// additions, each in key order. A key known before keeps the listener it was added with.
fn apply(known: &mut BTreeMap<Key, Listener>, now: Vec<Listener>) -> Vec<Event> {
    let mut next: BTreeMap<Key, Listener> = BTreeMap::new();
    for l in now {
        next.entry(l.key()).or_insert(l);
    }
    let mut events = Vec::new();
    for (key, old) in known.iter() {
        match next.get_mut(key) {
            Some(l) => *l = old.clone(),
            None => events.push(Event::Removed(old.clone())),
        }
    }
    for (key, l) in &next {
        if !known.contains_key(key) {
            events.push(Event::Added(l.clone()));
        }
    }
    *known = next;
    events
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::Family;
    use super::*;

    fn l(proto: Proto, ip: &str, port: u16, inode: u32) -> Listener {
        let ip: IpAddr = ip.parse().unwrap();
        Listener {
            proto,
            family: if ip.is_ipv4() {
                Family::Ipv4
            } else {
                Family::Ipv6
            },
            ip,
            port,
            uid: 0,
            inode,
        }
    }

    #[test]
    fn first_snapshot_is_all_added_then_diffs() {
        let mut known = BTreeMap::new();
        let a = l(Proto::Tcp, "127.0.0.1", 80, 1);
        let b = l(Proto::Udp, "::", 53, 2);
        let c = l(Proto::Tcp, "0.0.0.0", 443, 3);
        assert_eq!(
            apply(&mut known, vec![b.clone(), a.clone()]),
            [Event::Added(a.clone()), Event::Added(b.clone())]
        );
        assert_eq!(apply(&mut known, vec![a.clone(), b.clone()]), []);
        assert_eq!(
            apply(&mut known, vec![c.clone(), a.clone()]),
            [Event::Removed(b.clone()), Event::Added(c.clone())]
        );
        assert_eq!(
            apply(&mut known, vec![]),
            // Key order: protocol, then address (0.0.0.0 before 127.0.0.1), then port.
            [Event::Removed(c), Event::Removed(a)]
        );
        assert!(known.is_empty());
    }

    #[test]
    fn one_port_two_sockets_is_one_key() {
        let mut known = BTreeMap::new();
        let first = l(Proto::Tcp, "0.0.0.0", 8080, 10);
        let second = l(Proto::Tcp, "0.0.0.0", 8080, 11);
        assert_eq!(
            apply(&mut known, vec![first.clone(), second.clone()]),
            [Event::Added(first.clone())]
        );
        // The first socket closes, the second still listens: no change.
        assert_eq!(apply(&mut known, vec![second.clone()]), []);
        // The last one closes: removed, as it was added.
        assert_eq!(apply(&mut known, vec![]), [Event::Removed(first)]);
        // Same port, other protocol or address: other keys.
        let udp = l(Proto::Udp, "0.0.0.0", 8080, 12);
        let v6 = l(Proto::Tcp, "::", 8080, 13);
        assert_eq!(apply(&mut known, vec![udp.clone(), v6.clone()]).len(), 2);
    }

    #[test]
    fn zero_interval_is_raised_and_no_runtime_needed_to_build() {
        let w = Watcher::with_interval(Duration::ZERO);
        assert_eq!(w.period(), MIN_INTERVAL);
        assert_eq!(Watcher::new().period(), DEFAULT_INTERVAL);
    }

    #[tokio::test]
    async fn watcher_over_a_scripted_source() {
        let a = l(Proto::Tcp, "127.0.0.1", 80, 1);
        let b = l(Proto::Tcp, "127.0.0.1", 81, 2);
        let script: Mutex<VecDeque<Result<Vec<Listener>, PortsError>>> = Mutex::new(
            [
                Ok(vec![a.clone()]),
                Err(PortsError::Unsupported { os: "test" }),
                Ok(vec![a.clone()]),
                Ok(vec![b.clone()]),
            ]
            .into(),
        );
        let mut w = Watcher::with_source(Duration::from_millis(1), move || {
            script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Ok(vec![]))
        });
        assert_eq!(w.next().await.unwrap(), Event::Added(a.clone()));
        // A failed poll is reported and forgets nothing.
        assert!(matches!(
            w.next().await,
            Err(PortsError::Unsupported { .. })
        ));
        assert_eq!(w.known().collect::<Vec<_>>(), [&a]);
        assert_eq!(w.next().await.unwrap(), Event::Removed(a));
        assert_eq!(w.next().await.unwrap(), Event::Added(b.clone()));
        assert_eq!(w.next().await.unwrap(), Event::Removed(b));
    }

    #[tokio::test]
    async fn refresh_folds_a_poll_into_known_without_events() {
        let a = l(Proto::Tcp, "127.0.0.1", 80, 1);
        let b = l(Proto::Tcp, "127.0.0.1", 81, 2);
        let script: Mutex<VecDeque<Result<Vec<Listener>, PortsError>>> = Mutex::new(
            [
                Ok(vec![a.clone()]),
                Ok(vec![a.clone(), b.clone()]),
                Err(PortsError::Unsupported { os: "test" }),
                Ok(vec![b.clone()]),
            ]
            .into(),
        );
        let mut w = Watcher::with_source(Duration::from_millis(1), move || {
            script
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or_else(|| Ok(vec![]))
        });
        w.refresh().await.unwrap();
        assert_eq!(w.known().collect::<Vec<_>>(), [&a]);
        w.refresh().await.unwrap();
        assert_eq!(w.known().collect::<Vec<_>>(), [&a, &b]);
        assert!(w.refresh().await.is_err());
        assert_eq!(w.known().count(), 2);
        // Changes after a refresh are relative to it.
        assert_eq!(w.next().await.unwrap(), Event::Removed(a));
    }

    #[test]
    fn event_json() {
        let e = Event::Added(l(Proto::Tcp, "127.0.0.1", 80, 1));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "added");
        assert_eq!(v["proto"], "tcp");
        assert_eq!(v["port"], 80);
        let back: Event = serde_json::from_value(v).unwrap();
        assert_eq!(back, e);
    }
}
