//! `GET /api/sessions` and the admin page's sessions summary: the session table in pages,
//! copied under the NAT lock and serialised after it.
//!
//! The dataplane takes the same lock once per batch of packets, so every microsecond a request
//! holds it is a microsecond no packet crosses the router. Serialising 200k sessions under it
//! held it for 0.58 s (and a cross-site `<img>` could ask for that); a page copies at most
//! [`SESSIONS_PAGE_MAX`] plain structs under the lock, starting at a cursor (a table slot) rather
//! than an offset, so a deep page costs what the first one does.

use std::sync::Mutex;
use std::time::Instant;

use hyper::StatusCode;
use hyper::header::HeaderValue;
use serde_json::{Value, json};

use super::{ControlState, Resp, SESSIONS_PAGE, SESSIONS_PAGE_MAX, error, json_resp};
use crate::dataplane::lock;
use crate::nat::{Nat, SessionInfo};

/// Sessions the summary copies per hold of the lock.
const SUMMARY_CHUNK: usize = SESSIONS_PAGE_MAX;

/// A page of at most `limit` sessions from `cursor` on, the cursor of the next page, and the
/// table's size, in one hold of the lock.
pub fn copy(
    nat: &Mutex<Nat>,
    now: Instant,
    cursor: usize,
    limit: usize,
) -> (Vec<SessionInfo>, Option<usize>, usize) {
    let nat = lock(nat);
    let (page, next) = nat.sessions_from(now, cursor, limit);
    (page, next, nat.session_count())
}

/// `GET /api/sessions?cursor=N&limit=M`: a JSON array (as before pages, so a client that reads
/// the first page is unchanged), `x-total-count`, and a `link` to the next page (RFC 8288).
/// The cursor is opaque to clients: take it from the `link`.
pub fn page(state: &ControlState, query: &str) -> Resp {
    let mut cursor = 0;
    let mut limit = SESSIONS_PAGE;
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        let n = match v.parse::<usize>() {
            Ok(n) => n,
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("{k}={v:?}: expected a number, e.g. ?cursor=0&limit={SESSIONS_PAGE}"),
                );
            }
        };
        match k {
            "cursor" => cursor = n,
            "limit" if (1..=SESSIONS_PAGE_MAX).contains(&n) => limit = n,
            "limit" => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("limit={n}: expected 1-{SESSIONS_PAGE_MAX}"),
                );
            }
            _ => {}
        }
    }
    let (sessions, next, total) = copy(&state.nat, Instant::now(), cursor, limit);
    let list: Vec<Value> = sessions.iter().map(session_json).collect();
    let mut r = json_resp(StatusCode::OK, &Value::Array(list));
    let h = r.headers_mut();
    h.insert("x-total-count", HeaderValue::from(total));
    if let Some(next) = next {
        let link = format!("</api/sessions?cursor={next}&limit={limit}>; rel=\"next\"");
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert("link", v);
        }
    }
    r
}

fn session_json(s: &SessionInfo) -> Value {
    json!({
        "protocol": s.protocol,
        "internal": s.internal.to_string(),
        "external_port": s.external_port,
        "remote": s.remote.to_string(),
        "state": s.state,
        "expires_in": s.expires_in.as_secs_f64(),
        "packets": s.packets,
        "bytes": s.bytes,
        "forward": s.forward,
    })
}

/// Sessions by protocol and state, counted [`SUMMARY_CHUNK`] at a time with the lock released
/// in between (so a table that changes meanwhile is counted approximately).
pub fn summary(nat: &Mutex<Nat>) -> Vec<Value> {
    let now = Instant::now();
    let mut counts: Vec<((&'static str, &'static str), u64)> = Vec::new();
    let mut cursor = Some(0);
    while let Some(from) = cursor {
        let (chunk, next, _) = copy(nat, now, from, SUMMARY_CHUNK);
        for s in &chunk {
            match counts.iter_mut().find(|(k, _)| *k == (s.protocol, s.state)) {
                Some((_, n)) => *n += 1,
                None => counts.push(((s.protocol, s.state), 1)),
            }
        }
        cursor = next;
        // The lock is not fair: without a pause this loop takes it again before a waiting
        // dataplane thread wakes, and the dataplane waits for the whole table after all.
        std::thread::yield_now();
    }
    counts.sort();
    counts
        .into_iter()
        .map(|((protocol, st), count)| json!({"protocol": protocol, "state": st, "count": count}))
        .collect()
}
