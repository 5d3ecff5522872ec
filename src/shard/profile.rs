//! `GET /profiles/NAME`: the AnyConnect profile a login announced, for a
//! client that shows its session's cookie (ocserv's user-profile). The
//! session lives on the shard its cookie names; a request that landed
//! elsewhere moves there with its connection, as a CONNECT does.

use std::rc::Rc;

use shards::Cookie;

use super::conn::Conn;
use super::core::Shard;
use super::Moved;
use crate::proto::http::{self, RequestHead, Response};

/// Whether `path` asks for a profile.
pub(super) fn wanted(path: &str) -> bool {
    path.starts_with("/profiles/")
}

/// Answers the request; the connection comes back for the next one, or
/// `None` when it is closed or moved to the cookie's shard.
pub(super) async fn serve(shard: &Rc<Shard>, mut conn: Conn, head: RequestHead) -> Option<Conn> {
    let cookie = head.cookie("webvpn").and_then(|c| Cookie::parse(c).ok());
    let Some(cookie) = cookie else {
        return answer(conn, http::error_response(401, "Unauthorized")).await;
    };
    let home = cookie.home_shard();
    if home != shard.id {
        tracing::debug!(peer = %conn.peer, to = %home, "profile request moved to its session's shard");
        conn.move_to(shard, home, Moved::Profile(head)).await;
        return None;
    }
    let Some(path) = shard.profile_of(&cookie) else {
        tracing::info!(peer = %conn.peer, "profile asked for with a cookie of no session");
        return answer(conn, http::error_response(401, "Unauthorized")).await;
    };
    let Some(path) = path else {
        tracing::info!(peer = %conn.peer, "profile asked for, and none is set");
        return answer(conn, http::error_response(404, "Not Found")).await;
    };
    let read = super::guard::blocking(move || crate::usercfg::Profile::read(&path)).await;
    let reply = match read {
        Ok(Ok((_, data))) => Response::new(200, "OK")
            .header("Content-Type", "text/xml")
            .body(&data),
        Ok(Err(e)) => {
            tracing::warn!(peer = %conn.peer, "user-profile: {e}");
            http::error_response(404, "Not Found")
        }
        Err(super::guard::Panicked) => http::error_response(500, "Internal Server Error"),
    };
    conn.send(&reply).await.then_some(conn)
}

/// A refusal: sent, then the connection closes (the answer says so).
async fn answer(mut conn: Conn, reply: Vec<u8>) -> Option<Conn> {
    let _ = conn.send(&reply).await;
    None
}
