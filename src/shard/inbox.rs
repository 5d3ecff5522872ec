//! A shard's inbox: a `shards::Mailbox` of [`ShardMsg`] plus the socket
//! pair that wakes the shard. Other shards post hand-offs and ClientHellos,
//! the control thread posts admin commands; none of it is per packet.

use std::collections::VecDeque;
use std::io::{ErrorKind, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;

use futures_lite::AsyncReadExt;
use shards::mailbox::{Mailbox, Refused, Sent};

use super::core::Shard;
use super::ShardMsg;

/// Messages waiting before senders are refused: a shard this far behind
/// is better told "busy" than fed more.
const CAPACITY: usize = 1024;

pub(crate) struct Inbox {
    mail: Mailbox<ShardMsg>,
    /// Our end of the wake-up pair; the shard reads the other.
    wake: UnixStream,
}

impl Inbox {
    /// The inbox and the shard's end of its wake-up pair.
    pub(crate) fn new() -> std::io::Result<(Self, OwnedFd)> {
        let (wake, shard_end) = UnixStream::pair()?;
        wake.set_nonblocking(true)?;
        Ok((
            Self {
                mail: Mailbox::new(CAPACITY),
                wake,
            },
            shard_end.into(),
        ))
    }

    /// Posts `msg`, waking the shard if it may be asleep. Callable from
    /// any thread; a refused message comes back to the caller.
    pub(crate) fn post(&self, msg: ShardMsg) -> Result<(), Refused<ShardMsg>> {
        if self.mail.send(msg)? == Sent::Wake {
            // At most one wake-up is ever unread, so the write never
            // finds the socket full.
            if let Err(e) = (&self.wake).write_all(&[1]) {
                tracing::warn!("waking a shard: {e}");
            }
        }
        Ok(())
    }

    /// Refuses later messages and hands back those still waiting.
    pub(crate) fn close(&self) -> VecDeque<ShardMsg> {
        self.mail.close()
    }
}

/// The shard's side: sleeps until woken, then handles everything waiting.
pub(super) async fn serve(shard: Rc<Shard>, wake: OwnedFd) {
    let mut wake: glommio::net::UnixStream = crate::sys::adopt(wake);
    let inbox = &shard.shared.inboxes[shard.id.index()];
    let mut bytes = [0u8; 64];
    let mut batch = VecDeque::new();
    loop {
        match wake.read(&mut bytes).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::error!(shard = %shard.id, "inbox wake-up: {e}; no more hand-offs here");
                return;
            }
        }
        inbox.mail.drain(&mut batch);
        for msg in batch.drain(..) {
            shard.handle(msg);
        }
    }
}

/// Closes a shard's inbox however the shard ends, so senders are refused
/// from then on and connections still waiting are closed, not stranded.
pub(super) struct CloseOnExit<'a> {
    inbox: &'a Inbox,
    shard: shards::ShardId,
}

impl<'a> CloseOnExit<'a> {
    pub(super) fn new(shared: &'a super::Shared, shard: shards::ShardId) -> Self {
        Self {
            inbox: &shared.inboxes[shard.index()],
            shard,
        }
    }
}

impl Drop for CloseOnExit<'_> {
    fn drop(&mut self) {
        let left = self.inbox.close();
        if !left.is_empty() {
            tracing::info!(shard = %self.shard, messages = left.len(), "shard stopped with messages waiting; their connections are closed");
        }
    }
}
