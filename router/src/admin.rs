//! The router's own admin page (`GET /` on the LAN-only control API), as home routers have: WAN
//! status, NAT preset and counters, UPnP and NAT-PMP/PCP port mappings (each with a delete
//! button), static forwards, DHCP leases with host names and a sessions summary. The same data is
//! `GET /api/admin` as JSON; the page is rendered from that JSON, so the two never disagree.
//!
//! No script and no external asset: a plain HTML page that refreshes itself every 5 seconds and
//! posts forms for deletes. Every value from the network (descriptions, host names) is escaped.
//! Each form carries the server's CSRF token ([`crate::access`]), which a page of another
//! origin cannot read, so a form elsewhere cannot delete a mapping.

use std::fmt::Write;

use serde_json::Value;

/// HTML-escapes `s` for text and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as display text (strings without quotes, null as a dash).
fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn rows(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// Renders the page from the `/api/admin` JSON; `csrf` goes into every form.
pub fn page(admin: &Value, csrf: &str) -> String {
    let s = &admin["status"];
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" content=\"5\">\
         <title>homenet router</title><style>\
         body{{font-family:sans-serif;margin:2em;max-width:70em;color:#222}}\
         table{{border-collapse:collapse;margin:.5em 0 1.5em}}td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:left}}\
         th{{background:#eee}}.k{{color:#666}}button{{font-size:.85em}}</style></head><body>\
         <h1>homenet router</h1>"
    );
    let _ = write!(
        h,
        "<h2>WAN</h2><table><tr><th>interface</th><th>address</th><th>LAN</th><th>up for</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}/{}</td><td>{} s</td></tr></table>",
        esc(&text(&s["wan"]["interface"])),
        esc(&text(&s["wan"]["address"])),
        esc(&text(&s["lan"]["address"])),
        esc(&text(&s["lan"]["prefix"])),
        esc(&text(&s["uptime_seconds"]))
    );
    let b = &s["behaviour"];
    let c = &s["counters"];
    let _ = write!(
        h,
        "<h2>NAT</h2><table><tr><th>preset</th><th>mapping</th><th>filtering</th><th>ports</th><th>hairpin</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>\
         <table><tr><th>packets out</th><th>bytes out</th><th>packets in</th><th>bytes in</th><th>hairpin</th>\
         <th>sessions active</th><th>created</th><th>expired</th><th>drops</th></tr>\
         <tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr></table>",
        esc(&text(&s["preset"])),
        esc(&text(&b["mapping"])),
        esc(&text(&b["filtering"])),
        esc(&text(&b["port_allocation"])),
        esc(&text(&b["hairpin"])),
        text(&c["packets_out"]),
        text(&c["bytes_out"]),
        text(&c["packets_in"]),
        text(&c["bytes_in"]),
        text(&c["packets_hairpin"]),
        text(&s["sessions"]),
        text(&c["sessions_created"]),
        text(&c["sessions_expired"]),
        text(&c["drops_total"])
    );

    // Sessions summary.
    h.push_str("<h2>Sessions</h2><table><tr><th>protocol</th><th>state</th><th>count</th></tr>");
    for r in rows(&admin["sessions_summary"]) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&r["protocol"])),
            esc(&text(&r["state"])),
            text(&r["count"])
        );
    }
    h.push_str("</table>");

    // Port mappings: UPnP, then NAT-PMP / PCP (same table, told apart by origin).
    for (title, origins) in [
        ("UPnP port mappings", &["upnp"][..]),
        ("NAT-PMP / PCP mappings", &["natpmp", "pcp"][..]),
    ] {
        let _ = write!(
            h,
            "<h2>{title}</h2><table><tr><th>protocol</th><th>external port</th><th>internal</th>\
             <th>remote host</th><th>description</th><th>lease left</th><th>origin</th><th></th></tr>"
        );
        let mut any = false;
        for m in rows(&s["upnp"]["mappings"]) {
            let origin = text(&m["origin"]).to_ascii_lowercase();
            if !origins.contains(&origin.as_str()) {
                continue;
            }
            any = true;
            let proto = esc(&text(&m["protocol"]).to_ascii_lowercase());
            let port = text(&m["external_port"]);
            let lease = match &m["lease_remaining"] {
                Value::Null => "permanent".to_string(),
                v => format!("{} s", text(v)),
            };
            let _ = write!(
                h,
                "<tr><td>{proto}</td><td>{}</td><td>{}:{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td><form method=\"post\" action=\"/admin/mappings/delete\">\
                 <input type=\"hidden\" name=\"protocol\" value=\"{proto}\">\
                 <input type=\"hidden\" name=\"port\" value=\"{}\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button>delete</button></form></td></tr>",
                esc(&port),
                esc(&text(&m["internal_client"])),
                esc(&text(&m["internal_port"])),
                esc(&text(&m["remote_host"])),
                esc(&text(&m["description"])),
                esc(&lease),
                esc(&origin),
                esc(&port),
                esc(csrf)
            );
        }
        if !any {
            h.push_str("<tr><td colspan=\"8\" class=\"k\">none</td></tr>");
        }
        h.push_str("</table>");
    }

    // Static forwards (configuration and the control API).
    h.push_str("<h2>Static forwards</h2><table><tr><th>protocol</th><th>external port</th><th>internal</th><th>description</th></tr>");
    // The NAT's forwards minus those the mapping table installed.
    let mapped: Vec<(String, String)> = rows(&s["upnp"]["mappings"])
        .iter()
        .map(|m| {
            (
                text(&m["protocol"]).to_ascii_lowercase(),
                text(&m["external_port"]),
            )
        })
        .collect();
    for f in rows(&s["forwards"]).iter().filter(|f| {
        !mapped.contains(&(
            text(&f["protocol"]).to_ascii_lowercase(),
            text(&f["external_port"]),
        ))
    }) {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}:{}</td><td>{}</td></tr>",
            esc(&text(&f["protocol"])),
            esc(&text(&f["external_port"])),
            esc(&text(&f["internal_addr"])),
            esc(&text(&f["internal_port"])),
            esc(&text(&f["description"]))
        );
    }
    h.push_str("</table>");

    // DHCP leases.
    h.push_str("<h2>DHCP leases</h2><table><tr><th>address</th><th>MAC</th><th>host name</th><th>state</th><th>expires in</th></tr>");
    let leases = rows(&s["dhcp"]["leases"]);
    for l in leases {
        let _ = write!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(&l["addr"])),
            esc(&text(&l["mac"])),
            esc(&text(&l["host_name"])),
            esc(&text(&l["state"])),
            esc(&text(&l["expires_in"]))
        );
    }
    if leases.is_empty() {
        h.push_str("<tr><td colspan=\"5\" class=\"k\">none</td></tr>");
    }
    h.push_str("</table><p class=\"k\">The same data as JSON: <a href=\"/api/admin\">/api/admin</a>; \
                metrics: <a href=\"/metrics\">/metrics</a>. This page is served on the LAN only.</p></body></html>");
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_from_the_network_are_escaped() {
        let admin = json!({
            "status": {
                "wan": {"interface": "wan0", "address": "203.0.113.2"},
                "upnp": {"mappings": [{"protocol": "TCP", "external_port": 8080, "internal_client": "192.168.1.101",
                    "internal_port": 8080, "remote_host": null, "description": "<script>alert(1)</script>",
                    "lease_remaining": null, "origin": "upnp"}]},
                "dhcp": {"leases": [{"addr": "192.168.1.101", "mac": "02:00:00:00:00:01", "host_name": "cam\"1<", "state": "bound"}]},
            },
            "sessions_summary": [],
        });
        let html = page(&admin, "0123abcd");
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("name=\"csrf\" value=\"0123abcd\""), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("cam&quot;1&lt;"));
        assert!(html.contains("action=\"/admin/mappings/delete\""));
        assert!(html.contains("permanent"));
    }

    #[test]
    fn empty_sections_say_none() {
        let html = page(&json!({"status": {}, "sessions_summary": []}), "t");
        assert!(html.matches(">none<").count() >= 3);
    }
}
