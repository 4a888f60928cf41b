//! Query strings and `application/x-www-form-urlencoded` bodies, percent-decoded, strictly: bad
//! escapes or bytes that are not UTF-8 are errors, never a panic or a silent substitution.

/// A decoding error for the client.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed form data: {0}")]
pub struct FormError(pub String);

/// Decode `a=1&b=x%20y` into pairs, in order.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, FormError> {
    text.split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The first value of `key`.
pub fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Percent-decoding with `+` as space.
pub fn decode(s: &str) -> Result<String, FormError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .ok_or_else(|| FormError(format!("truncated escape in {s:?}")))?;
                let hi = hex_val(hex[0]);
                let lo = hex_val(hex[1]);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h << 4 | l),
                    _ => return Err(FormError(format!("bad escape in {s:?}"))),
                }
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError("not UTF-8".into()))
}

fn hex_val(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_pairs() {
        let p = parse("name=porch+cam&x=%C3%A9%21&flag&&empty=").unwrap();
        assert_eq!(get(&p, "name"), Some("porch cam"));
        assert_eq!(get(&p, "x"), Some("\u{e9}!"));
        assert_eq!(get(&p, "flag"), Some(""));
        assert_eq!(get(&p, "empty"), Some(""));
        assert_eq!(get(&p, "missing"), None);
    }

    #[test]
    fn rejects_bad_escapes() {
        assert!(parse("a=%").is_err());
        assert!(parse("a=%4").is_err());
        assert!(parse("a=%zz").is_err());
        assert!(parse("a=%ff").is_err());
    }
}
