//! The relay's own pages: the offline refusal, errors, the status page and JSON, Prometheus
//! metrics. Pure functions of the core's figures; no addresses are shown (seed 004 discloses
//! none).

use std::fmt::Write as _;

use crate::core::{Counters, DeviceInfo, SessionInfo};

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A UTC time "YYYY-MM-DD HH:MM:SS UTC" from Unix milliseconds (proleptic Gregorian,
/// Howard Hinnant's days-to-civil).
pub fn utc(unix_ms: u64) -> String {
    let secs = unix_ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn ago(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s ago"),
        120..=7199 => format!("{} min ago", secs / 60),
        _ => format!("{} h ago", secs / 3600),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><meta name=\"viewport\" \
         content=\"width=device-width\"><title>{t}</title><style>body{{font-family:sans-serif;\
         margin:2em;max-width:60em}}table{{border-collapse:collapse}}td,th{{border:1px solid \
         #ccc;padding:.2em .6em;text-align:left}}</style></head><body><h1>{t}</h1>\n{body}\n\
         </body></html>\n",
        t = esc(title)
    )
}

/// Seed 003's refusal: the device was not refreshed within the period.
pub fn offline(
    id: &str,
    last_access_unix_ms: Option<u64>,
    now_unix_ms: u64,
    period_s: u64,
) -> String {
    let since = match last_access_unix_ms {
        Some(t) => format!(
            "<p>Last heard: <b id=\"last-heard\">{}</b> ({}).</p>",
            utc(t),
            ago(now_unix_ms.saturating_sub(t) / 1000)
        ),
        None => "<p>Not heard since this relay started.</p>".to_string(),
    };
    page(
        &format!("Camera {id} is offline"),
        &format!(
            "{since}<p>A camera is offline when it has not checked in with the relay for \
             {period_s} s. Check that it is powered and connected; this page does not wait for \
             it.</p>"
        ),
    )
}

/// A short error page.
pub fn error(title: &str, text: &str) -> String {
    page(title, &format!("<p>{}</p>", esc(text)))
}

/// The relay's front page: how to reach a camera.
pub fn index(name: &str) -> String {
    page(
        &format!("Relay {name}"),
        "<form action=\"/connect.cgi\"><label>Camera id <input name=\"ID\" size=\"18\" \
         pattern=\"[0-9a-fA-F]{1,16}\"></label> <button>Connect</button></form>\
         <p><a href=\"/status\">Status</a> · <a href=\"/metrics\">Metrics</a></p>",
    )
}

/// Everything the status page and JSON show.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    /// The relay's name.
    pub name: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Devices.
    pub devices: Vec<DeviceInfo>,
    /// Sessions.
    pub sessions: Vec<SessionInfo>,
    /// Counters.
    pub counters: Counters,
}

/// The status page.
pub fn status_html(s: &Status) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<p>Up {} s. Relayed {} bytes to viewers, {} from them; {} viewers sent to a LAN \
         address. <a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">metrics</a></p>\
         <h2>Devices</h2><table><tr><th>id</th><th>state</th><th>last access</th>\
         <th>sessions</th><th>bytes to viewers</th><th>LAN redirects</th></tr>",
        s.uptime_s, s.counters.bytes_down, s.counters.bytes_up, s.counters.lan_redirects
    );
    for d in &s.devices {
        let last = d
            .last_access_unix_ms
            .map(|t| format!("{} ({})", utc(t), ago(d.last_access_ago_s.unwrap_or(0))))
            .unwrap_or_else(|| "-".into());
        let _ = write!(
            b,
            "<tr><td><a href=\"/d/{id}/\">{id}</a></td><td>{}</td><td>{last}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            d.state,
            d.sessions,
            d.bytes_down,
            d.lan_redirects,
            id = d.id
        );
    }
    b.push_str(
        "</table><h2>Sessions</h2><table><tr><th>id</th><th>device</th><th>state</th>\
                <th>age</th><th>bytes to viewer</th><th>bytes from viewer</th></tr>",
    );
    for x in &s.sessions {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{} s</td><td>{}</td><td>{}</td></tr>",
            x.id, x.device, x.state, x.age_s, x.bytes_down, x.bytes_up
        );
    }
    b.push_str("</table>");
    page(&format!("Relay {}", s.name), &b)
}

/// Prometheus text format (exposition format 0.0.4).
pub fn metrics(s: &Status) -> String {
    let mut out = String::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::to_value(&s.counters) {
        for (k, v) in m {
            let _ = writeln!(out, "# TYPE relay_{k}_total counter\nrelay_{k}_total {v}");
        }
    }
    let online = s.devices.iter().filter(|d| d.state == "online").count();
    let pending = s.sessions.iter().filter(|x| x.state == "pending").count();
    let gauges = [
        ("relay_devices_known", s.devices.len()),
        ("relay_devices_online", online),
        ("relay_sessions_pending", pending),
        ("relay_sessions_active", s.sessions.len() - pending),
    ];
    for (k, v) in gauges {
        let _ = writeln!(out, "# TYPE {k} gauge\n{k} {v}");
    }
    let _ = writeln!(
        out,
        "# TYPE relay_uptime_seconds gauge\nrelay_uptime_seconds {}",
        s.uptime_s
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        assert_eq!(
            utc(1_796_601_600_000 + 3_723_000),
            "2026-12-07 01:02:03 UTC"
        );
    }

    #[test]
    fn offline_page_says_since_when() {
        let p = offline(
            "00000000000000ab",
            Some(1_796_601_600_000),
            1_796_602_200_000,
            300,
        );
        assert!(p.contains("Camera 00000000000000ab is offline"));
        assert!(
            p.contains("2026-12-07 00:00:00 UTC") && p.contains("10 min ago"),
            "{p}"
        );
    }
}
