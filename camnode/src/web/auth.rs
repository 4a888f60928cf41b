//! Who may change things. Viewers on the LAN may rename the node and move the camera; viewers
//! from outside need the password the node's configuration sets (HTTP Basic auth with any user
//! name, or a `password` form/JSON field). Without a configured password, changes from outside are
//! refused, and the refusal says how to set one.

use super::links::Place;

/// Why a change was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// From outside, and the node has no password: 403.
    NoPasswordConfigured,
    /// From outside, no password given: 401 with a Basic challenge.
    PasswordMissing,
    /// From outside, wrong password: 401.
    PasswordWrong,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::NoPasswordConfigured => {
                "Changes from outside the camera's LAN are refused because this camera has no password. \
                 Set one on the camera: `password = \"...\"` in its config file, the --password flag, \
                 or the CAMNODE_PASSWORD environment variable; or make the change from the LAN."
            }
            Refusal::PasswordMissing => {
                "Changes from outside the camera's LAN need the camera's password (HTTP Basic auth with \
                 any user name, or a \"password\" field)."
            }
            Refusal::PasswordWrong => "Wrong password.",
        }
    }
}

/// Decide whether a change may go ahead.
pub fn authorize(
    place: Place,
    configured: &str,
    authorization: Option<&str>,
    field: Option<&str>,
) -> Result<(), Refusal> {
    if place == Place::Lan {
        return Ok(());
    }
    if configured.is_empty() {
        return Err(Refusal::NoPasswordConfigured);
    }
    let given = field
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .or_else(|| authorization.and_then(basic_password));
    match given {
        None => Err(Refusal::PasswordMissing),
        Some(p) if constant_time_eq(p.as_bytes(), configured.as_bytes()) => Ok(()),
        Some(_) => Err(Refusal::PasswordWrong),
    }
}

/// Why a change request looks cross-site, if it does: a browser names the page that made it in
/// `Origin` (RFC 6454 §7; sent with every cross-origin POST, forms included), and a page on
/// another site must not rename or move the camera with the viewer's LAN position. The origin's
/// host and port must be the `Host` the request was sent to. Requests without `Origin` (curl,
/// scripts) are not browsers' cross-site requests.
pub fn cross_site(headers: &hyper::HeaderMap) -> Option<String> {
    let origin = headers.get(hyper::header::ORIGIN)?;
    let origin = origin.to_str().unwrap_or("");
    let host = headers
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    let default_port = |h: &str| {
        if h.contains(':') && !h.ends_with(']') {
            h.to_ascii_lowercase()
        } else {
            format!("{}:80", h.to_ascii_lowercase())
        }
    };
    if !origin_host.is_empty()
        && !host.is_empty()
        && default_port(origin_host) == default_port(host)
    {
        return None;
    }
    Some(format!(
        "refused: a change requested by the page {origin:?} for {host:?}; make changes from this camera's own page"
    ))
}

/// The password in an `Authorization: Basic base64(user:password)` header.
pub fn basic_password(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(base64_decode(rest.trim())?).ok()?;
    decoded.split_once(':').map(|(_, p)| p.to_owned())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Standard base64 (RFC 4648 section 4), padding optional.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let data = text.trim_end_matches('=').as_bytes();
    if data.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    for chunk in data.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

/// Check a new node name: 1 to 64 characters after trimming, none of them control characters.
pub fn validate_name(raw: &str) -> Result<String, String> {
    let name = raw.trim();
    let count = name.chars().count();
    if count == 0 {
        return Err("the name is empty; use 1 to 64 printable characters".into());
    }
    if count > 64 {
        return Err(format!("the name has {count} characters; use at most 64"));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the name contains the control character {c:?}; use printable characters"
        ));
    }
    Ok(name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_needs_no_password() {
        assert_eq!(authorize(Place::Lan, "", None, None), Ok(()));
        assert_eq!(authorize(Place::Lan, "secret", None, None), Ok(()));
    }

    #[test]
    fn outside_without_configured_password_is_refused_with_advice() {
        let r = authorize(Place::Outside, "", None, Some("anything")).unwrap_err();
        assert_eq!(r, Refusal::NoPasswordConfigured);
        assert!(r.message().contains("--password") && r.message().contains("CAMNODE_PASSWORD"));
    }

    #[test]
    fn outside_with_password() {
        // "admin:secret" and "x:wrong"
        assert_eq!(
            authorize(
                Place::Outside,
                "secret",
                Some("Basic YWRtaW46c2VjcmV0"),
                None
            ),
            Ok(())
        );
        assert_eq!(
            authorize(Place::Outside, "secret", Some("basic eDp3cm9uZw=="), None),
            Err(Refusal::PasswordWrong)
        );
        assert_eq!(
            authorize(Place::Outside, "secret", None, Some("secret")),
            Ok(())
        );
        assert_eq!(
            authorize(Place::Outside, "secret", None, Some("secreT")),
            Err(Refusal::PasswordWrong)
        );
        assert_eq!(
            authorize(Place::Outside, "secret", None, None),
            Err(Refusal::PasswordMissing)
        );
        assert_eq!(
            authorize(Place::Outside, "secret", Some("Bearer abc"), None),
            Err(Refusal::PasswordMissing)
        );
        assert_eq!(
            authorize(Place::Outside, "secret", Some("Basic !!!"), None),
            Err(Refusal::PasswordMissing)
        );
    }

    #[test]
    fn cross_site_changes_are_refused() {
        let h = |pairs: &[(&str, &str)]| {
            let mut m = hyper::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(
                    hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                    v.parse().unwrap(),
                );
            }
            m
        };
        assert_eq!(cross_site(&h(&[("host", "192.168.1.100:8080")])), None);
        assert_eq!(
            cross_site(&h(&[
                ("host", "192.168.1.100:8080"),
                ("origin", "http://192.168.1.100:8080")
            ])),
            None
        );
        assert_eq!(
            cross_site(&h(&[("host", "cam.lan"), ("origin", "http://CAM.lan:80")])),
            None
        );
        for origin in ["http://evil.example", "null", "http://192.168.1.100:8081"] {
            assert!(
                cross_site(&h(&[("host", "192.168.1.100:8080"), ("origin", origin)])).is_some(),
                "{origin}"
            );
        }
    }

    #[test]
    fn base64() {
        assert_eq!(base64_decode("YWRtaW46c2VjcmV0").unwrap(), b"admin:secret");
        assert_eq!(base64_decode("eDp3cm9uZw==").unwrap(), b"x:wrong");
        assert_eq!(base64_decode("YQ").unwrap(), b"a");
        assert_eq!(base64_decode("Y"), None);
        assert_eq!(basic_password("Basic OnA="), Some("p".into()));
    }

    #[test]
    fn names() {
        assert_eq!(validate_name("  porch  ").unwrap(), "porch");
        assert_eq!(
            validate_name("caméra <2> & \"x\"").unwrap(),
            "caméra <2> & \"x\""
        );
        assert!(validate_name("").is_err());
        assert!(validate_name("   ").is_err());
        assert!(validate_name(&"x".repeat(65)).is_err());
        assert!(validate_name(&"é".repeat(64)).is_ok());
        assert!(validate_name("a\nb").is_err());
        assert!(validate_name("a\u{7f}b").is_err());
    }
}
