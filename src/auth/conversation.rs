//! One login's conversation with a backend that blocks (RADIUS, PAM,
//! LDAP, the one-time password file): the backend runs on a thread of its
//! own, the shard's login task awaits its events without blocking, and
//! either side going away ends the other.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Event, Verdict};
use crate::proto::auth::Prompt;

/// Backend conversations alive at once, server-wide. Each holds a thread
/// (a PAM module may block in it for as long as the user takes to
/// answer), so this bounds threads; a login past it is told to retry.
pub const MAX_CONVERSATIONS: usize = 512;

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Conversations alive now.
pub fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The backend's side.
pub struct Conversation {
    events: flume::Sender<Event>,
    answers: flume::Receiver<String>,
    deadline: Instant,
}

impl Conversation {
    /// Asks the user; `None` when the login ended or its deadline passed
    /// before an answer came.
    pub fn ask(&self, prompt: Prompt) -> Option<String> {
        self.events.send(Event::Ask(prompt)).ok()?;
        self.answers.recv_deadline(self.deadline).ok()
    }

    /// Whether the login that started this is still waiting.
    pub fn wanted(&self) -> bool {
        !self.events.is_disconnected() && Instant::now() < self.deadline
    }
}

/// The login task's side.
pub struct Handle {
    events: flume::Receiver<Event>,
    answers: flume::Sender<String>,
}

impl Handle {
    /// The backend's next event; `None` if it ended without a verdict.
    pub async fn next(&self) -> Option<Event> {
        self.events.recv_async().await.ok()
    }

    /// Answers the pending prompt.
    pub fn answer(&self, answer: String) {
        let _ = self.answers.send(answer);
    }
}

/// The conversation couldn't start: too many at once, or no thread.
#[derive(Debug, thiserror::Error)]
pub enum Busy {
    #[error("{MAX_CONVERSATIONS} backend logins are in progress already")]
    Full,
    #[error("no thread for the backend: {0}")]
    Thread(std::io::Error),
}

struct Slot;

impl Drop for Slot {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs `backend` on a thread of its own until it gives its verdict or
/// `limit` passes (then its prompts go unanswered).
pub fn start(
    name: &str,
    limit: Duration,
    backend: impl FnOnce(&Conversation) -> Verdict + Send + 'static,
) -> Result<Handle, Busy> {
    if LIVE.fetch_add(1, Ordering::Relaxed) >= MAX_CONVERSATIONS {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        return Err(Busy::Full);
    }
    let slot = Slot;
    let (event_tx, event_rx) = flume::bounded(1);
    let (answer_tx, answer_rx) = flume::bounded(1);
    let conv = Conversation {
        events: event_tx,
        answers: answer_rx,
        deadline: Instant::now() + limit,
    };
    std::thread::Builder::new()
        .name(format!("auth-{name}"))
        .spawn(move || {
            let _slot = slot;
            crate::sys::lower_thread_priority();
            let verdict =
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend(&conv))) {
                    Ok(v) => v,
                    Err(_) => Verdict::Error("the backend panicked".into()),
                };
            let _ = conv.events.send(Event::Done(verdict));
        })
        .map_err(Busy::Thread)?;
    Ok(Handle {
        events: event_rx,
        answers: answer_tx,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        futures_lite::future::block_on(f)
    }

    #[test]
    fn prompts_and_answers_then_a_verdict() {
        let h = start("test", Duration::from_secs(5), |conv| {
            let a = conv.ask(Prompt::secret("code?"));
            if a.as_deref() == Some("42") {
                Verdict::Accept(Default::default())
            } else {
                Verdict::Reject(None)
            }
        })
        .unwrap();
        let Some(Event::Ask(p)) = block_on(h.next()) else {
            panic!()
        };
        assert_eq!(p.message, "code?");
        h.answer("42".into());
        assert!(matches!(
            block_on(h.next()),
            Some(Event::Done(Verdict::Accept(_)))
        ));
    }

    #[test]
    fn a_login_that_goes_away_ends_the_backend_and_its_slot() {
        let (tx, rx) = std::sync::mpsc::channel();
        let before = live();
        let h = start("test", Duration::from_secs(5), move |conv| {
            let a = conv.ask(Prompt::secret("?"));
            tx.send(a.is_none()).unwrap();
            Verdict::Reject(None)
        })
        .unwrap();
        assert!(matches!(block_on(h.next()), Some(Event::Ask(_))));
        drop(h);
        assert!(rx.recv_timeout(Duration::from_secs(5)).unwrap());
        let start = Instant::now();
        while live() > before && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn an_unanswered_prompt_ends_at_the_deadline() {
        let h = start("test", Duration::from_millis(100), |conv| {
            match conv.ask(Prompt::secret("?")) {
                None => Verdict::Error("no answer".into()),
                Some(_) => Verdict::Reject(None),
            }
        })
        .unwrap();
        assert!(matches!(block_on(h.next()), Some(Event::Ask(_))));
        assert!(matches!(
            block_on(h.next()),
            Some(Event::Done(Verdict::Error(_)))
        ));
    }
}
