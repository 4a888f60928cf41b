//! HTTP-style message heads (start line + header fields), parsed tolerantly.
//!
//! SSDP (UDA 1.1 §1) and GENA (UDA 1.1 §4) reuse the HTTP/1.1 message syntax (RFC 7230 §3).
//! Real control points bend it: lower-case or mixed-case names, no space after the colon, LF-only
//! line ends, blank lines before the start line, no final empty line. [`Head::parse`] accepts all
//! of that and never panics; what it cannot read it reports as an error.

/// Why a message head could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    /// The message is larger than the protocol allows.
    #[error("message too large")]
    TooLarge,
    /// The head is not valid UTF-8.
    #[error("message head is not UTF-8")]
    NotUtf8,
    /// No start line.
    #[error("empty message")]
    Empty,
    /// The start line does not have the expected three parts.
    #[error("malformed start line")]
    BadStartLine,
    /// More header fields than we accept.
    #[error("too many header fields")]
    TooManyHeaders,
}

/// Header fields beyond this many are refused (a real SSDP or GENA message has about ten).
const MAX_HEADERS: usize = 64;

/// A parsed head: the three parts of the start line and the header fields in order, plus the
/// offset at which the body starts (if the head ended with an empty line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    /// Method (request) or protocol version (response).
    pub first: &'a str,
    /// Request target (request) or status code (response).
    pub second: &'a str,
    /// Protocol version (request) or reason phrase (response, may be empty).
    pub third: &'a str,
    /// Header fields, names as sent, values trimmed.
    pub fields: Vec<(&'a str, &'a str)>,
    /// Byte offset of the body in the input (input length if there is no body).
    pub body_offset: usize,
}

impl<'a> Head<'a> {
    /// Parses a head. `max` bounds the whole input.
    pub fn parse(input: &'a [u8], max: usize) -> Result<Head<'a>, HeadError> {
        if input.len() > max {
            return Err(HeadError::TooLarge);
        }
        // The head ends at the first empty line after the start line; find it on bytes so a
        // binary body does not make the head fail UTF-8 decoding.
        let mut pos = 0usize;
        let mut lines: Vec<&'a str> = Vec::new();
        let mut body_offset = input.len();
        while pos < input.len() {
            let end = input[pos..]
                .iter()
                .position(|&b| b == b'\n')
                .map(|i| pos + i);
            let (line_bytes, next) = match end {
                Some(e) => (&input[pos..e], e + 1),
                None => (&input[pos..], input.len()),
            };
            let line_bytes = line_bytes.strip_suffix(b"\r").unwrap_or(line_bytes);
            pos = next;
            if line_bytes.iter().all(|b| b.is_ascii_whitespace()) {
                if lines.is_empty() {
                    continue; // blank lines before the start line (RFC 7230 §3.5)
                }
                body_offset = pos;
                break;
            }
            let line = std::str::from_utf8(line_bytes).map_err(|_| HeadError::NotUtf8)?;
            lines.push(line);
            if lines.len() > MAX_HEADERS + 1 {
                return Err(HeadError::TooManyHeaders);
            }
        }
        let Some((start, rest)) = lines.split_first() else {
            return Err(HeadError::Empty);
        };
        let start = start.trim();
        let mut parts = start.splitn(3, ' ');
        let first = parts.next().unwrap_or("");
        let second = parts.next().unwrap_or("").trim();
        let third = parts.next().unwrap_or("").trim();
        if first.is_empty() || second.is_empty() {
            return Err(HeadError::BadStartLine);
        }
        let mut fields = Vec::with_capacity(rest.len());
        for line in rest {
            // A line without a colon is not a header field; skip it rather than fail the
            // message (robustness principle, RFC 1122 §1.2.2).
            if let Some((name, value)) = line.split_once(':') {
                let name = name.trim();
                if !name.is_empty() {
                    fields.push((name, value.trim()));
                }
            }
        }
        Ok(Head {
            first,
            second,
            third,
            fields,
            body_offset,
        })
    }

    /// The value of the first field with this name (case-insensitive, RFC 7230 §3.2).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        get(&self.fields, name)
    }
}

/// The value of the first field with this name in a field list (case-insensitive).
pub fn get<'a>(fields: &[(&'a str, &'a str)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerant() {
        let m = b"\r\n\nM-SEARCH * HTTP/1.1\nhost:239.255.255.250:1900\r\nMan: \"ssdp:discover\"\r\nnot a header\r\nST:  ssdp:all  ";
        let h = Head::parse(m, 2048).unwrap();
        assert_eq!((h.first, h.second, h.third), ("M-SEARCH", "*", "HTTP/1.1"));
        assert_eq!(h.get("HOST"), Some("239.255.255.250:1900"));
        assert_eq!(h.get("man"), Some("\"ssdp:discover\""));
        assert_eq!(h.get("st"), Some("ssdp:all"));
        assert_eq!(h.body_offset, m.len());
    }

    #[test]
    fn body_offset_and_errors() {
        let m = b"HTTP/1.1 200 OK\r\nA: b\r\n\r\nbody";
        let h = Head::parse(m, 2048).unwrap();
        assert_eq!(&m[h.body_offset..], b"body");
        assert_eq!(Head::parse(b"", 10), Err(HeadError::Empty));
        assert_eq!(Head::parse(b"\r\n\r\n", 10), Err(HeadError::Empty));
        assert_eq!(
            Head::parse(b"GARBAGE\r\n", 100),
            Err(HeadError::BadStartLine)
        );
        assert_eq!(
            Head::parse(b"\xff\xfe x y\r\n", 100),
            Err(HeadError::NotUtf8)
        );
        assert_eq!(Head::parse(&[b'a'; 20], 10), Err(HeadError::TooLarge));
    }
}
