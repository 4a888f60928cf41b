//! GENA eventing (UDA 1.1 §4): the subscriber table (pure, takes `now`) and the NOTIFY sender.
//!
//! - SUBSCRIBE with CALLBACK/NT creates a subscription with a fresh SID and a granted
//!   TIMEOUT; SUBSCRIBE with SID renews; UNSUBSCRIBE ends it (UDA 1.1 §4.1.2-§4.1.4). Unknown
//!   or expired SIDs are 412 Precondition Failed.
//! - Every event to a subscriber carries the next SEQ: 0 for the initial event, then +1,
//!   wrapping to 1 (UDA 1.1 §4.3.2).
//! - Each subscriber has its own sending task and a small queue: a subscriber that does not
//!   answer delays only its own events, never the others' (its queue overflows and it misses
//!   events, which the SEQ gap tells it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::{Rng, TryRngCore, rngs::OsRng};
use shared::gena::{EventNotify, Subscription, Timeout, next_seq};
use shared::igd::ServiceKind;
use shared::url::HttpUrl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Shortest subscription we grant, seconds.
pub const MIN_TIMEOUT: u32 = 60;
/// The default and the cap of a subscription, seconds (UDA 1.1 §4.1.2 recommends 1800).
pub const MAX_TIMEOUT: u32 = 1800;
/// Most subscriptions at once (a 503 past it).
pub const MAX_SUBSCRIBERS: usize = 64;
/// Most subscriptions from one LAN host (a 503 past it), so that one host cannot take them
/// all: three evented services, a few control points each.
pub const MAX_SUBSCRIBERS_PER_CLIENT: usize = 12;
/// Events queued per subscriber before new ones are dropped.
pub const QUEUE: usize = 16;
/// Time for one NOTIFY delivery: connect, send, read the status line.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a GENA request was refused, with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubError {
    /// 412: unknown SID, or a callback that does not point at the subscriber (CallStranger).
    #[error("precondition failed")]
    Precondition,
    /// 503: too many subscriptions.
    #[error("too many subscriptions")]
    Full,
}

impl SubError {
    /// The HTTP status.
    pub fn http_status(self) -> u16 {
        match self {
            SubError::Precondition => 412,
            SubError::Full => 503,
        }
    }
}

/// One subscription.
#[derive(Debug)]
pub struct Sub<T> {
    /// The evented service.
    pub service: ServiceKind,
    /// Who subscribed.
    pub client: IpAddr,
    /// Callback URLs, in order of preference.
    pub callbacks: Vec<HttpUrl>,
    /// When it ends unless renewed.
    pub expires: Instant,
    /// The SEQ of the next event.
    pub next_seq: u32,
    /// The shell's handle (the sending task's queue).
    pub handle: T,
}

/// An event to deliver: to whom, with which SEQ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// SID.
    pub sid: String,
    /// The subscriber's callback URLs, in order.
    pub callbacks: Vec<HttpUrl>,
    /// The message (SID, SEQ, properties).
    pub event: EventNotify,
}

/// The subscriber table. `T` is what the shell keeps per subscriber (a queue sender; `()` in
/// tests).
#[derive(Debug)]
pub struct Subscribers<T> {
    subs: HashMap<String, Sub<T>>,
    max: usize,
}

/// A random UUID (RFC 4122 version 4 layout) from the OS random source (getrandom(2)).
///
/// SIDs and the device UUIDs are capabilities: a SID lets its holder renew or cancel the
/// subscription (UDA 1.1 §4.1.3-§4.1.4), so they must not be guessable from each other or from
/// the time of the start. OsRng fails only without /dev/urandom and getrandom(2), where no
/// router can run.
pub fn os_uuid() -> String {
    random_uuid(&mut OsRng.unwrap_err())
}

/// A random UUID (RFC 4122 version 4 layout) from `rng`.
pub fn random_uuid(rng: &mut impl Rng) -> String {
    let mut b: [u8; 16] = rng.random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

impl<T> Subscribers<T> {
    /// An empty table; SIDs drawn from the OS random source ([`os_uuid`]).
    pub fn new(max: usize) -> Self {
        Subscribers {
            subs: HashMap::new(),
            max,
        }
    }

    /// Number of live subscriptions.
    pub fn len(&self) -> usize {
        self.subs.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.subs.is_empty()
    }

    /// A new subscription from `subscriber` (UDA 1.1 §4.1.2). The callbacks must all point
    /// at the subscriber (CallStranger, CVE-2020-12695), else 412. Returns (SID, granted
    /// seconds). `handle` is made once the SID is known.
    pub fn subscribe(
        &mut self,
        now: Instant,
        service: ServiceKind,
        subscriber: IpAddr,
        req: &Subscription,
        handle: impl FnOnce(&str) -> T,
    ) -> Result<(String, u32), SubError> {
        self.expire(now);
        if !req.callbacks_point_at(subscriber) {
            return Err(SubError::Precondition);
        }
        let from_client = self
            .subs
            .values()
            .filter(|s| s.client == subscriber)
            .count();
        if self.subs.len() >= self.max || from_client >= self.max.min(MAX_SUBSCRIBERS_PER_CLIENT) {
            return Err(SubError::Full);
        }
        let granted = Timeout::grant(req.timeout, MIN_TIMEOUT, MAX_TIMEOUT, MAX_TIMEOUT);
        let sid = format!("uuid:{}", os_uuid());
        let handle = handle(&sid);
        self.subs.insert(
            sid.clone(),
            Sub {
                service,
                client: subscriber,
                callbacks: req.callbacks.clone(),
                expires: now + Duration::from_secs(u64::from(granted)),
                next_seq: 0,
                handle,
            },
        );
        Ok((sid, granted))
    }

    /// Renews `sid` on `service` (UDA 1.1 §4.1.3). Unknown or expired: 412.
    pub fn renew(
        &mut self,
        now: Instant,
        service: ServiceKind,
        sid: &str,
        timeout: Option<Timeout>,
    ) -> Result<u32, SubError> {
        self.expire(now);
        let s = self
            .subs
            .get_mut(sid)
            .filter(|s| s.service == service)
            .ok_or(SubError::Precondition)?;
        let granted = Timeout::grant(timeout, MIN_TIMEOUT, MAX_TIMEOUT, MAX_TIMEOUT);
        s.expires = now + Duration::from_secs(u64::from(granted));
        Ok(granted)
    }

    /// Cancels `sid` (UDA 1.1 §4.1.4). Unknown: 412.
    pub fn unsubscribe(
        &mut self,
        now: Instant,
        service: ServiceKind,
        sid: &str,
    ) -> Result<(), SubError> {
        self.expire(now);
        match self.subs.get(sid) {
            Some(s) if s.service == service => {
                self.subs.remove(sid);
                Ok(())
            }
            _ => Err(SubError::Precondition),
        }
    }

    /// Drops the subscriptions that ended at or before `now`; returns how many.
    pub fn expire(&mut self, now: Instant) -> usize {
        let before = self.subs.len();
        self.subs.retain(|_, s| s.expires > now);
        before - self.subs.len()
    }

    /// The next event for `sid` with `properties` (its SEQ taken), if it exists.
    pub fn event_for(
        &mut self,
        sid: &str,
        properties: Vec<(String, String)>,
    ) -> Option<(&T, Delivery)> {
        let s = self.subs.get_mut(sid)?;
        let seq = s.next_seq;
        s.next_seq = next_seq(seq);
        Some((
            &s.handle,
            Delivery {
                sid: sid.to_string(),
                callbacks: s.callbacks.clone(),
                event: EventNotify {
                    sid: sid.to_string(),
                    seq,
                    properties,
                },
            },
        ))
    }

    /// One event per live subscriber of `service`, each with its next SEQ.
    pub fn broadcast(
        &mut self,
        now: Instant,
        service: ServiceKind,
        properties: &[(String, String)],
    ) -> Vec<(&T, Delivery)> {
        self.expire(now);
        self.subs
            .iter_mut()
            .filter(|(_, s)| s.service == service)
            .map(|(sid, s)| {
                let seq = s.next_seq;
                s.next_seq = next_seq(seq);
                (
                    &s.handle,
                    Delivery {
                        sid: sid.clone(),
                        callbacks: s.callbacks.clone(),
                        event: EventNotify {
                            sid: sid.clone(),
                            seq,
                            properties: properties.to_vec(),
                        },
                    },
                )
            })
            .collect()
    }

    /// The callbacks of `sid`.
    pub fn callbacks(&self, sid: &str) -> Option<&[HttpUrl]> {
        self.subs.get(sid).map(|s| s.callbacks.as_slice())
    }
}

/// What the sending tasks report.
pub trait SendReport: Send + Sync + 'static {
    /// One delivery ended: delivered or not.
    fn report(&self, delivered: bool);
}

/// Starts the sending task of one subscriber; returns its queue. The task ends when the
/// queue's sender is dropped (the subscription ended).
pub fn spawn_sender(report: std::sync::Arc<dyn SendReport>) -> mpsc::Sender<Delivery> {
    let (tx, mut rx) = mpsc::channel::<Delivery>(QUEUE);
    tokio::spawn(async move {
        // UDA 1.1 §4.2.1: the initial event follows the SUBSCRIBE response. The response is
        // written as soon as the handler returns; a short pause keeps the order.
        tokio::time::sleep(Duration::from_millis(20)).await;
        while let Some(out) = rx.recv().await {
            let mut ok = false;
            for url in &out.callbacks {
                if deliver(url, &out.event).await {
                    ok = true;
                    break;
                }
            }
            report.report(ok);
        }
    });
    tx
}

/// Sends one NOTIFY (UDA 1.1 §4.3.2) and waits for a 2xx status line, within
/// [`SEND_TIMEOUT`].
pub async fn deliver(url: &HttpUrl, event: &EventNotify) -> bool {
    let Ok(ip) = url.host.parse::<IpAddr>() else {
        return false;
    };
    let msg = event.emit(url);
    let attempt = async {
        let mut s = TcpStream::connect((ip, url.port)).await.ok()?;
        s.write_all(&msg).await.ok()?;
        let mut buf = [0u8; 64];
        let mut n = 0;
        while n < 12 {
            let r = s.read(&mut buf[n..]).await.ok()?;
            if r == 0 {
                break;
            }
            n += r;
        }
        let line = std::str::from_utf8(&buf[..n]).ok()?;
        let status = line.split_whitespace().nth(1)?;
        Some(status.starts_with('2'))
    };
    matches!(
        tokio::time::timeout(SEND_TIMEOUT, attempt).await,
        Ok(Some(true))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::gena::{GenaRequest, parse_request};

    fn sub(raw: &[u8]) -> Subscription {
        match parse_request(raw) {
            Ok(GenaRequest::Subscribe(s)) => s,
            other => panic!("{other:?}"),
        }
    }

    const SUB: &[u8] = b"SUBSCRIBE /evt/IPConn HTTP/1.1\r\nCALLBACK: <http://192.168.1.100:4000/cb>\r\nNT: upnp:event\r\nTIMEOUT: Second-300\r\n\r\n";

    #[test]
    fn subscribe_renew_expire_unsubscribe() {
        let t0 = Instant::now();
        let mut t: Subscribers<()> = Subscribers::new(4);
        let me: IpAddr = "192.168.1.100".parse().unwrap();
        let (sid, granted) = t
            .subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ())
            .unwrap();
        assert_eq!(granted, 300);
        assert!(sid.starts_with("uuid:") && sid.len() == 41);
        // renewal extends from the renewal time
        let t1 = t0 + Duration::from_secs(200);
        assert_eq!(
            t.renew(
                t1,
                ServiceKind::WanIpConnection,
                &sid,
                Some(Timeout::Infinite)
            ),
            Ok(MAX_TIMEOUT)
        );
        // the wrong service's event URL does not know the SID
        assert_eq!(
            t.renew(t1, ServiceKind::Layer3Forwarding, &sid, None),
            Err(SubError::Precondition)
        );
        assert_eq!(t.expire(t1 + Duration::from_secs(1799)), 0);
        assert_eq!(t.expire(t1 + Duration::from_secs(1800)), 1);
        assert_eq!(
            t.renew(
                t1 + Duration::from_secs(1801),
                ServiceKind::WanIpConnection,
                &sid,
                None
            ),
            Err(SubError::Precondition)
        );
        let (sid, _) = t
            .subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ())
            .unwrap();
        assert_eq!(
            t.unsubscribe(t0, ServiceKind::WanIpConnection, &sid),
            Ok(())
        );
        assert_eq!(
            t.unsubscribe(t0, ServiceKind::WanIpConnection, &sid),
            Err(SubError::Precondition)
        );
    }

    #[test]
    fn call_stranger_and_limit() {
        let t0 = Instant::now();
        let mut t: Subscribers<()> = Subscribers::new(2);
        let other: IpAddr = "192.168.1.101".parse().unwrap();
        assert_eq!(
            t.subscribe(t0, ServiceKind::WanIpConnection, other, &sub(SUB), |_| ()),
            Err(SubError::Precondition)
        );
        let me: IpAddr = "192.168.1.100".parse().unwrap();
        for _ in 0..2 {
            t.subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ())
                .unwrap();
        }
        assert_eq!(
            t.subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ()),
            Err(SubError::Full)
        );
        // expired ones make room
        assert!(
            t.subscribe(
                t0 + Duration::from_secs(301),
                ServiceKind::WanIpConnection,
                me,
                &sub(SUB),
                |_| ()
            )
            .is_ok()
        );
    }

    /// Issue 11: one LAN host cannot take every subscription.
    #[test]
    fn one_host_gets_its_share_of_subscriptions() {
        let t0 = Instant::now();
        let mut t: Subscribers<()> = Subscribers::new(MAX_SUBSCRIBERS);
        let me: IpAddr = "192.168.1.100".parse().unwrap();
        for _ in 0..MAX_SUBSCRIBERS_PER_CLIENT {
            t.subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ())
                .unwrap();
        }
        assert_eq!(
            t.subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| ()),
            Err(SubError::Full)
        );
        let other: IpAddr = "192.168.1.101".parse().unwrap();
        let theirs = String::from_utf8_lossy(SUB).replace("1.100", "1.101");
        assert!(
            t.subscribe(
                t0,
                ServiceKind::WanIpConnection,
                other,
                &sub(theirs.as_bytes()),
                |_| ()
            )
            .is_ok()
        );
    }

    #[test]
    fn seq_per_subscriber() {
        let t0 = Instant::now();
        let mut t: Subscribers<u8> = Subscribers::new(8);
        let me: IpAddr = "192.168.1.100".parse().unwrap();
        let (a, _) = t
            .subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| 1)
            .unwrap();
        let (_e, d) = t.event_for(&a, vec![]).unwrap();
        assert_eq!(d.event.seq, 0);
        let (b, _) = t
            .subscribe(t0, ServiceKind::WanIpConnection, me, &sub(SUB), |_| 2)
            .unwrap();
        let (_, d) = t.event_for(&b, vec![]).unwrap();
        assert_eq!(d.event.seq, 0);
        let props = vec![("PortMappingNumberOfEntries".to_string(), "1".to_string())];
        let mut seqs: Vec<(u8, u32)> = t
            .broadcast(t0, ServiceKind::WanIpConnection, &props)
            .into_iter()
            .map(|(h, d)| (*h, d.event.seq))
            .collect();
        seqs.sort();
        assert_eq!(seqs, vec![(1, 1), (2, 1)]);
        assert!(
            t.broadcast(t0, ServiceKind::Layer3Forwarding, &props)
                .is_empty()
        );
        // SEQ wraps to 1, never back to 0
        t.subs.get_mut(&a).unwrap().next_seq = u32::MAX;
        assert_eq!(t.event_for(&a, vec![]).unwrap().1.event.seq, u32::MAX);
        assert_eq!(t.event_for(&a, vec![]).unwrap().1.event.seq, 1);
    }
}
