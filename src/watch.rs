//! `show events`: connects and disconnects, streamed to the control
//! connections that asked. Shards publish at a tunnel's start and end
//! only, never per packet, and only while someone watches; a watcher that
//! falls behind is dropped rather than slowing a shard.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde_json::json;

use crate::shard::admin::SessionInfo;

/// Watchers at once; one more is refused.
const MAX_WATCHERS: usize = 16;
/// Events a watcher may lag behind before it is dropped.
const QUEUE: usize = 1024;

#[derive(Debug, Serialize)]
pub struct Event {
    /// `connect` or `disconnect`.
    pub event: &'static str,
    /// Why a tunnel ended; empty for a connect.
    pub reason: String,
    /// The session as `show user` prints it, at the moment of the event.
    pub user: SessionInfo,
}

#[derive(Debug, Default)]
pub struct Watchers {
    count: AtomicUsize,
    next_id: AtomicUsize,
    subs: Mutex<Vec<(usize, SyncSender<Arc<Event>>)>>,
}

impl Watchers {
    /// Whether anyone watches: shards build an event only then.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    fn subs(&self) -> std::sync::MutexGuard<'_, Vec<(usize, SyncSender<Arc<Event>>)>> {
        self.subs.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A new watcher's id and feed; `None` when there are too many.
    fn watch(&self) -> Option<(usize, Receiver<Arc<Event>>)> {
        let mut subs = self.subs();
        if subs.len() >= MAX_WATCHERS {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = sync_channel(QUEUE);
        subs.push((id, tx));
        self.count.store(subs.len(), Ordering::Relaxed);
        Some((id, rx))
    }

    fn unwatch(&self, id: usize) {
        let mut subs = self.subs();
        subs.retain(|(i, _)| *i != id);
        self.count.store(subs.len(), Ordering::Relaxed);
    }

    /// Hands `event` to every watcher; one whose queue is full is dropped.
    pub fn publish(&self, event: Event) {
        let event = Arc::new(event);
        let mut subs = self.subs();
        subs.retain(|(_, s)| match s.try_send(event.clone()) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        });
        self.count.store(subs.len(), Ordering::Relaxed);
    }
}

/// Serves `show events` on `conn` from a thread of its own: the users
/// connected now (one answer line, as `show users`), then a line per
/// event until the client goes away or the server stops.
pub fn serve(conn: UnixStream, shared: Arc<crate::shard::Shared>, users: serde_json::Value) {
    let Some((id, feed)) = shared.watchers.watch() else {
        let answer = json!({ "ok": false, "error": "too many watchers of events" });
        let _ = (&conn).write_all(format!("{answer}\n").as_bytes());
        return;
    };
    let spawned = std::thread::Builder::new().name("events".into()).spawn({
        let shared = shared.clone();
        move || {
            stream(&conn, &shared, &feed, users);
            shared.watchers.unwatch(id);
        }
    });
    if spawned.is_err() {
        shared.watchers.unwatch(id);
    }
}

fn stream(
    conn: &UnixStream,
    shared: &crate::shard::Shared,
    feed: &Receiver<Arc<Event>>,
    users: serde_json::Value,
) {
    let mut out = conn;
    let first = json!({ "ok": true, "result": users });
    if out.write_all(format!("{first}\n").as_bytes()).is_err() {
        return;
    }
    while !shared.shutdown.load(Ordering::Acquire) {
        match feed.recv_timeout(Duration::from_secs(1)) {
            Ok(ev) => {
                let Ok(line) = serde_json::to_string(&*ev) else {
                    continue;
                };
                if out.write_all(format!("{line}\n").as_bytes()).is_err() {
                    return;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if gone(conn) {
                    return;
                }
            }
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Whether the client closed its end (a read would return 0 now).
fn gone(conn: &UnixStream) -> bool {
    use std::os::fd::AsRawFd;
    crate::sys::net::peer_closed(conn.as_raw_fd())
}
