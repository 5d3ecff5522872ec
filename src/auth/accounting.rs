//! The accounting sender: records queued by the shards, sent in order by
//! one thread of their own, so a slow accounting server delays reports and
//! never a shard or a login.

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use super::radius::Radius;
use crate::proto::radius::accounting::Record;

/// Records waiting at most; past this, new ones are dropped and logged
/// (the servers have been silent for long).
const QUEUE: usize = 16 * 1024;

type Job = (Arc<Radius>, Record, Instant);

fn sender() -> Option<&'static Mutex<SyncSender<Job>>> {
    static SENDER: OnceLock<Option<Mutex<SyncSender<Job>>>> = OnceLock::new();
    SENDER
        .get_or_init(|| {
            let (tx, rx) = sync_channel::<Job>(QUEUE);
            let spawned = std::thread::Builder::new()
                .name("radius-accounting".into())
                .spawn(move || {
                    crate::sys::lower_thread_priority();
                    for (radius, record, queued) in rx {
                        if let Err(why) = radius.account(&record, queued) {
                            tracing::warn!(user = %record.user, session = %record.session_id, status = record.status, "RADIUS accounting lost: {why}");
                        }
                    }
                });
            match spawned {
                Ok(_) => Some(Mutex::new(tx)),
                Err(e) => {
                    tracing::error!("RADIUS accounting thread not started: {e}");
                    None
                }
            }
        })
        .as_ref()
}

/// Queues `record` for `radius`'s accounting servers.
pub fn queue(radius: Arc<Radius>, record: Record) {
    let Some(tx) = sender() else {
        return;
    };
    let sent = tx
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .try_send((radius, record, Instant::now()));
    match sent {
        Ok(()) => {}
        Err(TrySendError::Full((_, r, _))) => {
            tracing::warn!(user = %r.user, session = %r.session_id, "RADIUS accounting queue full: record dropped");
        }
        Err(TrySendError::Disconnected(_)) => {}
    }
}
