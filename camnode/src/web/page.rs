//! The node's page (patent Fig. 6/7): its live picture, name and role; on the representative the
//! other cameras as links with their names. Everything that comes from outside (names, addresses)
//! is escaped. A small inline script polls `/status.json` every 2 seconds and redraws the name,
//! role and camera list, building the list with DOM text nodes (no HTML from data), so a camera
//! that appears or is renamed shows up without a reload. No external assets.

use std::fmt::Write as _;

use crate::directory::{Directory, Reachability, Role};

use super::links::{LinkContext, Place};

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
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

/// One line for people about the node's reachability.
pub fn reachability_text(r: &Reachability) -> String {
    match r {
        Reachability::Discovering => "looking for the router (UPnP IGD)".into(),
        Reachability::Reachable => "reachable from the internet".into(),
        Reachability::NoIgd => {
            "no UPnP router found: reachable on the LAN only (still trying)".into()
        }
        Reachability::DoubleNat { external } => {
            format!(
                "the router's external address {external} is itself private (double NAT): LAN only"
            )
        }
        Reachability::Refused { reason } => format!("the router refused a port mapping: {reason}"),
        Reachability::ViaRelay { site, .. } => format!("reachable via relay {site}"),
    }
}

/// What the page shows besides the directory.
#[derive(Debug)]
pub struct PageView<'a> {
    pub dir: &'a Directory,
    pub links: LinkContext<'a>,
    pub width: u32,
    pub height: u32,
    pub password_configured: bool,
}

/// Render the page.
pub fn render(view: &PageView<'_>) -> String {
    let dir = view.dir;
    let name = escape(&dir.name);
    let mut peers = String::new();
    for peer in &dir.peers {
        let pname = escape(&peer.name);
        match view.links.peer_url(peer) {
            Some(url) => {
                let url = escape(&url);
                let _ = writeln!(
                    peers,
                    "<li><a href=\"{url}\">{pname}</a> <span class=\"url\">{url}</span></li>"
                );
            }
            None => {
                let _ = writeln!(
                    peers,
                    "<li>{pname} <span class=\"url\">(no address for you yet)</span></li>"
                );
            }
        }
    }
    let list_hidden = if dir.role == Role::Representative || !dir.peers.is_empty() {
        ""
    } else {
        " hidden"
    };
    let empty_hidden = if dir.peers.is_empty() { "" } else { " hidden" };
    // Through a relay the site lives under its base (/d/<id>/; checked to be a plain path).
    let base = escape(
        view.links
            .relayed
            .and_then(|r| r.base.as_deref())
            .unwrap_or("/"),
    );
    let password_hint = match (view.links.place, view.password_configured) {
        (Place::Lan, _) => "You are on the camera's LAN: no password needed.",
        (Place::Outside, true) => "From outside the LAN, changes need the camera's password.",
        (Place::Outside, false) => {
            "From outside the LAN, changes are refused: this camera has no password set (--password)."
        }
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{name} - camnode</title>
<style>
body {{ font-family: sans-serif; margin: 1em auto; max-width: {maxw}px; padding: 0 1em; background: #f4f4f4; color: #222; }}
h1 {{ margin: 0.2em 0; }}
.role {{ display: inline-block; padding: 0.1em 0.6em; border-radius: 1em; background: #246; color: #fff; font-size: 0.9em; }}
.live {{ width: 100%; height: auto; background: #000; display: block; }}
.url {{ color: #666; font-family: monospace; }}
.ptz button {{ min-width: 3em; }}
fieldset {{ margin: 1em 0; }}
#msg {{ color: #a00; }}
</style>
</head>
<body>
<h1 id="name">{name}</h1>
<p><span class="role" id="role">{role}</span> <span id="reach">{reach}</span></p>
<p id="warning" hidden></p>
<img class="live" src="{base}stream.mjpg" width="{width}" height="{height}" alt="live picture of {name}">
<p id="stats"></p>
<section id="others"{list_hidden}>
<h2>Other cameras</h2>
<p id="none"{empty_hidden}>No other cameras yet.</p>
<ul id="peers">
{peers}</ul>
</section>
<fieldset class="ptz"><legend>Pan, tilt, zoom</legend>
<button data-d="pan,-0.2">&larr;</button> <button data-d="pan,0.2">&rarr;</button>
<button data-d="tilt,-0.2">&uarr;</button> <button data-d="tilt,0.2">&darr;</button>
<button data-d="zoom,0.5">+</button> <button data-d="zoom,-0.5">&minus;</button>
<button data-d="reset,0">reset</button>
</fieldset>
<form method="post" action="{base}name"><fieldset><legend>Rename this camera</legend>
<input name="name" maxlength="64" required value="{name}" aria-label="new name">
<input name="password" type="password" placeholder="password" aria-label="password" autocomplete="current-password">
<button type="submit">Rename</button>
<p>{password_hint}</p>
</fieldset></form>
<p id="msg"></p>
<p><a href="{base}snapshot.jpg">snapshot</a> &middot; <a href="{base}stream.mjpg">MJPEG stream</a> &middot; <a href="{base}status.json">status</a></p>
<script>
"use strict";
let ptz = {{pan: 0, tilt: 0, zoom: 1}};
function text(id, t) {{ const e = document.getElementById(id); if (e.textContent !== t) e.textContent = t; }}
function render(s) {{
  text("name", s.name); text("role", s.role); text("reach", s.reachability.text);
  text("warning", s.warning || ""); document.getElementById("warning").hidden = !s.warning;
  document.title = s.name + " - camnode";
  text("stats", s.camera.fps + " frames/s, " + s.camera.viewers + " viewer(s), " + s.camera.source);
  ptz = s.camera.ptz;
  const list = document.getElementById("peers");
  const items = s.peers.map(p => {{
    const li = document.createElement("li");
    if (p.url) {{
      const a = document.createElement("a"); a.href = p.url; a.textContent = p.name; li.appendChild(a);
      const u = document.createElement("span"); u.className = "url"; u.textContent = " " + p.url; li.appendChild(u);
    }} else {{ li.textContent = p.name + " (no address for you yet)"; }}
    return li;
  }});
  list.replaceChildren(...items);
  document.getElementById("others").hidden = !(s.role === "representative" || s.peers.length > 0);
  document.getElementById("none").hidden = s.peers.length > 0;
}}
async function poll() {{
  try {{ const r = await fetch("{base}status.json", {{cache: "no-store"}}); if (r.ok) render(await r.json()); }} catch (e) {{}}
}}
document.querySelectorAll(".ptz button").forEach(b => b.addEventListener("click", async () => {{
  const [k, d] = b.dataset.d.split(",");
  const clamp = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const next = k === "reset" ? {{pan: 0, tilt: 0, zoom: 1}} : Object.assign({{}}, ptz);
  if (k === "zoom") next.zoom = clamp(ptz.zoom + Number(d), 1, 8);
  else if (k !== "reset") next[k] = clamp(ptz[k] + Number(d), -1, 1);
  const pw = document.querySelector("input[name=password]").value;
  if (pw) next.password = pw;
  const r = await fetch("{base}ptz", {{method: "POST", headers: {{"Content-Type": "application/json"}}, body: JSON.stringify(next)}});
  text("msg", r.ok ? "" : await r.text());
  if (r.ok) ptz = (await r.json()).ptz;
}}));
setInterval(poll, 2000); poll();
</script>
</body>
</html>
"#,
        maxw = view.width.clamp(320, 1280) + 32,
        role = dir.role.name(),
        reach = escape(&reachability_text(&dir.reachability)),
        width = view.width,
        height = view.height,
    )
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Instant;

    use super::*;
    use crate::directory::{Peer, PeerSource};

    fn dir(peers: Vec<Peer>) -> Directory {
        Directory {
            node_id: "a".into(),
            name: "<script>alert(1)</script> & \"cam\"".into(),
            role: Role::Representative,
            reachability: Reachability::Reachable,
            external_addr: Some(Ipv4Addr::new(60, 120, 76, 64)),
            lan_addr: Some(Ipv4Addr::new(192, 168, 1, 100)),
            external_port: Some(8080),
            lan_port: 8080,
            peers,
            warning: None,
        }
    }

    fn peer(name: &str, port: u16) -> Peer {
        Peer {
            node_id: name.into(),
            name: name.into(),
            lan_addr: Ipv4Addr::new(192, 168, 1, 101),
            lan_port: port,
            external_port: Some(port),
            source: PeerSource::RouterTable,
            last_seen: Instant::now(),
        }
    }

    fn view(d: &Directory, place: Place) -> String {
        render(&PageView {
            dir: d,
            links: LinkContext::new(place, "", d),
            width: 640,
            height: 480,
            password_configured: false,
        })
    }

    #[test]
    fn names_are_escaped() {
        let d = dir(vec![peer("<img src=x onerror=alert(2)>", 8081)]);
        let html = view(&d, Place::Outside);
        assert!(!html.contains("<script>alert(1)"));
        assert!(!html.contains("<img src=x"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; &quot;cam&quot;"));
        assert!(html.contains("&lt;img src=x onerror=alert(2)&gt;"));
        assert_eq!(escape("a'b"), "a&#39;b");
    }

    #[test]
    fn representative_lists_others_like_fig_6() {
        let d = dir(vec![peer("server 2", 8081), peer("server 3", 8082)]);
        let html = view(&d, Place::Outside);
        assert!(html.contains(r#"<a href="http://60.120.76.64:8081/">server 2</a> <span class="url">http://60.120.76.64:8081/</span>"#), "{html}");
        assert!(html.contains("http://60.120.76.64:8082/"));
        let html = view(&d, Place::Lan);
        assert!(html.contains(r#"<a href="http://192.168.1.101:8081/">server 2</a>"#));
        assert!(html.contains("<p id=\"none\" hidden>"));
    }

    #[test]
    fn through_a_relay_links_stay_under_the_relay() {
        let d = Directory {
            reachability: Reachability::ViaRelay {
                site: "https://relay.example.org/d/a/".into(),
                direct: Box::new(Reachability::NoIgd),
            },
            ..dir(vec![peer("b2", 8081)])
        };
        let relayed = super::super::links::Relayed {
            base: Some("/d/a/".into()),
        };
        let html = render(&PageView {
            dir: &d,
            links: LinkContext::new(Place::Outside, "", &d).via_relay(Some(&relayed)),
            width: 640,
            height: 480,
            password_configured: false,
        });
        assert!(html.contains(r#"src="/d/a/stream.mjpg""#), "{html}");
        assert!(html.contains(r#"fetch("/d/a/status.json""#));
        assert!(html.contains(r#"action="/d/a/name""#));
        assert!(html.contains(r#"<a href="/d/b2/">b2</a>"#));
        assert!(html.contains("reachable via relay https://relay.example.org/d/a/"));
        // Direct viewers keep the plain paths.
        assert!(view(&d, Place::Lan).contains(r#"src="/stream.mjpg""#));
    }

    #[test]
    fn representative_alone_says_so_and_members_hide_the_list() {
        let d = dir(vec![]);
        let html = view(&d, Place::Lan);
        assert!(html.contains("<p id=\"none\">No other cameras yet.</p>"));
        let member = Directory {
            role: Role::Member,
            ..dir(vec![])
        };
        assert!(view(&member, Place::Lan).contains("<section id=\"others\" hidden>"));
    }
}
