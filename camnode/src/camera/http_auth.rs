//! HTTP authentication towards a network camera: Basic (RFC 7617) and Digest (RFC 7616, with
//! MD5, SHA-256 and their `-sess` variants, `qop=auth` or none, as RFC 2069 cameras still do).
//! Sans-IO: challenges in, `Authorization` values out; the client nonce is passed in.

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// A user name and password for the camera.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({:?}, ***)", self.user)
    }
}

/// Digest's hash function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

/// A challenge from `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Digest {
        realm: String,
        nonce: String,
        opaque: Option<String>,
        algorithm: Algorithm,
        sess: bool,
        /// The server offers `qop=auth` (else the RFC 2069 form without nc/cnonce).
        qop_auth: bool,
    },
}

/// The challenges we can answer, from every `WWW-Authenticate` header, best first (Digest with
/// SHA-256, Digest with MD5, Basic). Unknown schemes and algorithms are left out.
pub fn challenges<'a>(headers: impl IntoIterator<Item = &'a str>) -> Vec<Challenge> {
    let mut out = Vec::new();
    for header in headers {
        for (scheme, params) in split_challenges(header) {
            let get = |name: &str| {
                params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            };
            if scheme.eq_ignore_ascii_case("basic") {
                out.push(Challenge::Basic);
            } else if scheme.eq_ignore_ascii_case("digest") {
                let algo = get("algorithm").unwrap_or_else(|| "MD5".into());
                let (algorithm, sess) = match algo.to_ascii_uppercase().as_str() {
                    "MD5" => (Algorithm::Md5, false),
                    "MD5-SESS" => (Algorithm::Md5, true),
                    "SHA-256" => (Algorithm::Sha256, false),
                    "SHA-256-SESS" => (Algorithm::Sha256, true),
                    _ => continue,
                };
                let qop = get("qop");
                let qop_auth = qop
                    .as_deref()
                    .is_some_and(|q| q.split(',').any(|v| v.trim().eq_ignore_ascii_case("auth")));
                if qop.is_some() && !qop_auth {
                    // auth-int only: we would have to hash the (empty) body; no camera does this.
                    continue;
                }
                let (Some(realm), Some(nonce)) = (get("realm"), get("nonce")) else {
                    continue;
                };
                out.push(Challenge::Digest {
                    realm,
                    nonce,
                    opaque: get("opaque"),
                    algorithm,
                    sess,
                    qop_auth,
                });
            }
        }
    }
    out.sort_by_key(|c| match c {
        Challenge::Digest {
            algorithm: Algorithm::Sha256,
            ..
        } => 0,
        Challenge::Digest { .. } => 1,
        Challenge::Basic => 2,
    });
    out
}

/// `auth-scheme [ auth-param *( "," auth-param ) ]`, several per header (RFC 9110 §11.6.1).
fn split_challenges(header: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
    let b = header.as_bytes();
    let mut i = 0;
    let is_tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/".contains(&c);
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i].is_ascii_whitespace()) {
            i += 1;
        }
        let start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == start {
            i += 1; // a stray character: skip it
            continue;
        }
        let token = header[start..i].to_owned();
        let mut j = i;
        while j < b.len() && b[j] == b' ' {
            j += 1;
        }
        if j < b.len() && b[j] == b'=' {
            // An auth-param of the current challenge (or token68 padding, ignored).
            j += 1;
            while j < b.len() && b[j] == b' ' {
                j += 1;
            }
            let (value, end) = if j < b.len() && b[j] == b'"' {
                quoted(header, j)
            } else {
                let s = j;
                while j < b.len() && b[j] != b',' {
                    j += 1;
                }
                (header[s..j].trim().to_owned(), j)
            };
            i = end;
            if let Some((_, params)) = out.last_mut() {
                params.push((token, value));
            }
        } else {
            out.push((token, Vec::new()));
        }
    }
    out
}

/// A quoted-string starting at `at` (the opening quote): its value and the index after it.
fn quoted(s: &str, at: usize) -> (String, usize) {
    let mut value = String::new();
    let mut chars = s[at + 1..].char_indices();
    while let Some((k, c)) = chars.next() {
        match c {
            '"' => return (value, at + 1 + k + 1),
            '\\' => {
                if let Some((_, e)) = chars.next() {
                    value.push(e);
                }
            }
            c => value.push(c),
        }
    }
    (value, s.len())
}

/// The `Authorization` value answering `challenge` for `method uri`. `nc` counts the requests
/// made with this nonce (from 1); `cnonce` is the client's random nonce.
pub fn authorization(
    challenge: &Challenge,
    creds: &Credentials,
    method: &str,
    uri: &str,
    nc: u32,
    cnonce: &str,
) -> String {
    match challenge {
        Challenge::Basic => format!(
            "Basic {}",
            base64(format!("{}:{}", creds.user, creds.password).as_bytes())
        ),
        Challenge::Digest {
            realm,
            nonce,
            opaque,
            algorithm,
            sess,
            qop_auth,
        } => {
            let h = |s: &str| hash(*algorithm, s);
            let mut ha1 = h(&format!("{}:{realm}:{}", creds.user, creds.password));
            if *sess {
                ha1 = h(&format!("{ha1}:{nonce}:{cnonce}"));
            }
            let ha2 = h(&format!("{method}:{uri}"));
            let nc = format!("{nc:08x}");
            let response = if *qop_auth {
                h(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"))
            } else {
                h(&format!("{ha1}:{nonce}:{ha2}"))
            };
            let algo = match (algorithm, sess) {
                (Algorithm::Md5, false) => "MD5",
                (Algorithm::Md5, true) => "MD5-sess",
                (Algorithm::Sha256, false) => "SHA-256",
                (Algorithm::Sha256, true) => "SHA-256-sess",
            };
            let mut out = format!(
                "Digest username=\"{}\", realm=\"{}\", uri=\"{}\", algorithm={algo}, nonce=\"{}\"",
                escape(&creds.user),
                escape(realm),
                escape(uri),
                escape(nonce)
            );
            if *qop_auth {
                out.push_str(&format!(
                    ", nc={nc}, cnonce=\"{}\", qop=auth",
                    escape(cnonce)
                ));
            }
            out.push_str(&format!(", response=\"{response}\""));
            if let Some(opaque) = opaque {
                out.push_str(&format!(", opaque=\"{}\"", escape(opaque)));
            }
            out
        }
    }
}

fn hash(algorithm: Algorithm, s: &str) -> String {
    let bytes: Vec<u8> = match algorithm {
        Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
        Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
    };
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inside a quoted-string, `"` and `\` are escaped (RFC 9110 §5.6.4).
fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(data: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * k) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mufasa() -> Credentials {
        Credentials {
            user: "Mufasa".into(),
            password: "Circle of Life".into(),
        }
    }

    fn param<'a>(header: &'a str, name: &str) -> &'a str {
        let at = header.find(&format!("{name}=")).unwrap() + name.len() + 1;
        let rest = &header[at..];
        match rest.strip_prefix('"') {
            Some(q) => &q[..q.find('"').unwrap()],
            None => rest.split(',').next().unwrap(),
        }
    }

    /// RFC 7616 §3.9.1: the same request answered with SHA-256 and with MD5.
    #[test]
    fn rfc7616_example() {
        let header = "Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", \
            algorithm=SHA-256, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\", \
            Digest realm=\"http-auth@example.org\", qop=\"auth, auth-int\", algorithm=MD5, \
            nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", \
            opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";
        let list = challenges([header]);
        assert_eq!(list.len(), 2);
        let cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ";
        let sha = authorization(&list[0], &mufasa(), "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(
            param(&sha, "response"),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
        assert_eq!(param(&sha, "algorithm"), "SHA-256");
        assert_eq!(param(&sha, "nc"), "00000001");
        assert_eq!(
            param(&sha, "opaque"),
            "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
        );
        let md5 = authorization(&list[1], &mufasa(), "GET", "/dir/index.html", 1, cnonce);
        assert_eq!(param(&md5, "response"), "8ca523f5e9506fed4657c9700eebdbec");
    }

    /// RFC 2617 §3.5, and the RFC 2069 form without qop.
    #[test]
    fn rfc2617_example_and_no_qop() {
        let list = challenges([
            "Basic realm=\"cam\"",
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        ]);
        assert!(matches!(list[1], Challenge::Basic));
        // RFC 2617 spells the password with a capital O.
        let creds = Credentials {
            user: "Mufasa".into(),
            password: "Circle Of Life".into(),
        };
        let a = authorization(&list[0], &creds, "GET", "/dir/index.html", 1, "0a4f113b");
        assert_eq!(param(&a, "response"), "6629fae49393a05397450978507c4ef1");
        // Without qop: MD5(HA1:nonce:HA2), no nc/cnonce.
        let old = challenges(["Digest realm=\"r\", nonce=\"n\""]);
        let a = authorization(&old[0], &creds, "GET", "/", 1, "c");
        assert!(!a.contains("cnonce"), "{a}");
        let ha1 = hash(Algorithm::Md5, "Mufasa:r:Circle Of Life");
        let ha2 = hash(Algorithm::Md5, "GET:/");
        assert_eq!(
            param(&a, "response"),
            hash(Algorithm::Md5, &format!("{ha1}:n:{ha2}"))
        );
    }

    #[test]
    fn basic_and_odd_challenges() {
        // RFC 7617 §2's example.
        let creds = Credentials {
            user: "Aladdin".into(),
            password: "open sesame".into(),
        };
        assert_eq!(
            authorization(&Challenge::Basic, &creds, "GET", "/", 1, ""),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(base64(b"a"), "YQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        // Unknown algorithm, auth-int only, missing nonce, garbage: nothing we can answer.
        for h in [
            "Digest realm=\"r\", nonce=\"n\", algorithm=SHA-512-256",
            "Digest realm=\"r\", nonce=\"n\", qop=\"auth-int\"",
            "Digest realm=\"r\"",
            "Negotiate abc==",
            "\"\"\"===,,,",
            "Digest realm=\"unterminated",
        ] {
            assert!(challenges([h]).is_empty(), "{h}");
        }
        // Quotes in values are escaped in the answer.
        let ch = challenges(["Digest realm=\"a \\\"b\\\"\", nonce=\"n\", qop=auth"]);
        let Challenge::Digest { realm, .. } = &ch[0] else {
            panic!("{ch:?}")
        };
        assert_eq!(realm, "a \"b\"");
        let a = authorization(&ch[0], &creds, "GET", "/", 2, "c");
        assert!(a.contains("realm=\"a \\\"b\\\"\""), "{a}");
        assert!(a.contains("nc=00000002"), "{a}");
    }
}
