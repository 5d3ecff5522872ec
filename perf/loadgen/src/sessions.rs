//! Many sessions at once: a bounded ramp of logins and CONNECTs, then
//! every established session runs its mode's body from a common start.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::dtls::DtlsChannel;
use crate::login;
use crate::modes::limited;
use crate::stats::Counters;
use crate::sync::Gate;
use crate::tls::{io_err, TlsConn};
use crate::tunnel::{self, Link, Params};
use crate::{run_threads, Ctx, Target};

/// Login, CONNECT and (optionally) DTLS for session `i`.
async fn establish(ctx: &Ctx, i: usize, dtls: bool) -> io::Result<(Link, Params)> {
    let src = ctx.source(i);
    let mut c = TlsConn::connect(ctx.addr, src, ctx.tls.clone()).await?;
    let cookie = login::login(&mut c, &ctx.creds).await?;
    let tun = login::connect(&mut c, &ctx.creds, &cookie, dtls).await?;
    let p = Params::from(&tun)?;
    let psk = if dtls { Some(c.export_psk()?) } else { None };
    let src = src.or_else(|| c.tcp.local_addr().ok().map(|a| a.ip()));
    let link = Link::start(c, ctx.counters.clone());
    if let Some(psk) = psk {
        let addr = tunnel::dtls_addr(ctx.addr, &tun)
            .ok_or_else(|| io_err("DTLS asked for but no X-DTLS-Port in the reply"))?;
        let app_id = tun
            .get("X-DTLS-App-ID")
            .ok_or_else(|| io_err("no X-DTLS-App-ID (PSK-NEGOTIATE not offered)"))?;
        match DtlsChannel::connect(addr, src, psk, app_id, ctx.counters.clone()).await {
            Ok(ch) => {
                *link.shared.dtls.borrow_mut() = Some(ch);
                Counters::add(&ctx.counters.dtls_up, 1);
            }
            Err(e) => {
                link.close().await;
                return Err(io_err(format!("DTLS: {e}")));
            }
        }
    }
    Ok((link, p))
}

/// Runs `sessions` sessions; each thread establishes them with its share of
/// `ramp` workers, and each runs `body` once every session was attempted
/// (the ramp is over). Returns the time the ramp ended.
pub(crate) fn run_sessions<B, Fut>(
    ctx: &Arc<Ctx>,
    t: &Target,
    sessions: usize,
    ramp: usize,
    dtls: bool,
    body: B,
) -> Instant
where
    B: Fn(Arc<Ctx>, usize, Link, Params, Instant) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = io::Result<()>> + 'static,
{
    let ramp_end: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let threads = t.threads.max(1);
    let workers = ramp.div_ceil(threads).max(1);
    let (c2, r2) = (ctx.clone(), ramp_end.clone());
    let runner = std::thread::spawn(move || {
        run_threads(threads, move |th| {
            let (ctx, ramp_end, body) = (c2.clone(), r2.clone(), body.clone());
            async move {
                let gate = Rc::new(Gate::default());
                let mine = Rc::new(RefCell::new((th..sessions).step_by(threads)));
                let running = Rc::new(RefCell::new(Vec::new()));
                let ramp_workers: Vec<_> = (0..workers)
                    .map(|_| {
                        let (ctx, gate, body, mine, running, ramp_end) = (
                            ctx.clone(),
                            gate.clone(),
                            body.clone(),
                            mine.clone(),
                            running.clone(),
                            ramp_end.clone(),
                        );
                        monoio::spawn(async move {
                            loop {
                                let Some(i) = mine.borrow_mut().next() else {
                                    break;
                                };
                                let (link, p) = match limited(establish(&ctx, i, dtls)).await {
                                    Ok(v) => v,
                                    Err(e) => {
                                        ctx.counters.error(e.to_string());
                                        continue;
                                    }
                                };
                                Counters::add(&ctx.counters.ok, 1);
                                Counters::add(&ctx.counters.active, 1);
                                let (ctx, gate, body, ramp_end) =
                                    (ctx.clone(), gate.clone(), body.clone(), ramp_end.clone());
                                running.borrow_mut().push(monoio::spawn(async move {
                                    session(ctx, i, link, p, &gate, &ramp_end, body).await;
                                }));
                            }
                        })
                    })
                    .collect();
                // The main thread sets `ramp_end`; open this thread's gate then.
                let watcher = {
                    let (gate, ramp_end) = (gate.clone(), ramp_end.clone());
                    monoio::spawn(async move {
                        while ramp_end.get().is_none() {
                            monoio::time::sleep(Duration::from_millis(20)).await;
                        }
                        gate.open();
                    })
                };
                for w in ramp_workers {
                    w.await;
                }
                watcher.await;
                let tasks = running.take();
                for task in tasks {
                    task.await;
                }
            }
        })
    });
    // The ramp ends when every session was attempted.
    while Counters::get(&ctx.counters.ok) + Counters::get(&ctx.counters.failed) < sessions as u64
        && !runner.is_finished()
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let _ = ramp_end.set(start);
    let _ = runner.join();
    start
}

/// One established session: kept alive until the ramp ends, then `body`.
async fn session<B, Fut>(
    ctx: Arc<Ctx>,
    i: usize,
    mut link: Link,
    p: Params,
    gate: &Gate,
    ramp_end: &OnceLock<Instant>,
    body: B,
) where
    B: Fn(Arc<Ctx>, usize, Link, Params, Instant) -> Fut,
    Fut: std::future::Future<Output = io::Result<()>>,
{
    let mut res = Ok(());
    while !gate.is_open() && res.is_ok() {
        res = tunnel::hold(
            &mut link,
            &p,
            Instant::now() + Duration::from_secs(3600),
            Some(gate),
        )
        .await;
    }
    let res = match res {
        Ok(()) => {
            body(
                ctx.clone(),
                i,
                link,
                p,
                *ramp_end.get().expect("gate opens after ramp_end is set"),
            )
            .await
        }
        Err(e) => {
            link.close().await;
            Err(e)
        }
    };
    ctx.counters.active.fetch_sub(1, Relaxed);
    if let Err(e) = res {
        Counters::add(&ctx.counters.dropped, 1);
        ctx.counters.error(format!("session {i} broke: {e}"));
    }
}
