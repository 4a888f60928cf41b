//! A small, bounded XML tree on top of quick-xml, for the UPnP documents we read.
//!
//! UPnP documents (SOAP envelopes, device and service descriptions, GENA property sets, the
//! `PortMappingList` of WANIPConnection:2) are small and shallow. Parsing them into a tiny tree
//! with namespaces resolved is simpler than a streaming state machine per document, and it lets
//! one place enforce the safety rules (issue 4, "Policy and safety"):
//! - no DTD: a `<!DOCTYPE` anywhere is an error, so no entity can be declared or expanded;
//! - only the five predefined entities and numeric character references are decoded
//!   (XML 1.0 §4.6, §4.1); any other `&name;` is an error;
//! - bounded input size, depth and element count.
//!
//! Namespaces are resolved (XML Namespaces 1.0) so `<u:AddPortMapping xmlns:u="...">` and
//! `<AddPortMapping xmlns="...">` read the same.
//!
//! Leniency, one case only: [`escape_stray_markup`] repairs a stray `&` or `<` in the text of
//! named leaf elements (miniupnpc writes argument values unescaped), by escaping it; the
//! repaired document then goes through [`parse`] with every rule above. Nothing is expanded.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;

/// Limits for one document.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_bytes: usize,
    pub max_depth: usize,
    pub max_elements: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 * 1024,
            max_depth: 32,
            max_elements: 4096,
        }
    }
}

/// Why a document was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XmlError {
    /// The document is larger than the limit for its kind.
    #[error("document too large ({0} bytes)")]
    TooLarge(usize),
    /// Elements nest deeper than the limit.
    #[error("document nests too deep")]
    TooDeep,
    /// More elements than the limit.
    #[error("too many elements")]
    TooManyElements,
    /// A `<!DOCTYPE ...>`: refused so that no entity can be declared (no entity expansion).
    #[error("DOCTYPE not allowed")]
    Doctype,
    /// A reference to an entity other than the five predefined ones.
    #[error("unknown entity &{0};")]
    UnknownEntity(String),
    /// An element uses a namespace prefix that is not declared.
    #[error("undeclared namespace prefix")]
    UnknownPrefix,
    /// No root element.
    #[error("no root element")]
    Empty,
    /// Not well-formed (message from the parser).
    #[error("malformed XML: {0}")]
    Malformed(String),
}

/// One element: resolved namespace, local name, children, and its text content (all direct
/// text and CDATA children concatenated, entities decoded).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Element {
    pub ns: Option<String>,
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    /// First child with this local name (namespace ignored: UPnP documents in the wild mix
    /// default and prefixed namespaces freely).
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Text of the first child with this local name, trimmed.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.trim())
    }

    /// All children with this local name.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

fn malformed(e: impl std::fmt::Display) -> XmlError {
    XmlError::Malformed(e.to_string())
}

/// Decodes one `&...;` reference: the five predefined entities and character references.
fn decode_ref(name: &str) -> Result<char, XmlError> {
    match name {
        "amp" => return Ok('&'),
        "lt" => return Ok('<'),
        "gt" => return Ok('>'),
        "quot" => return Ok('"'),
        "apos" => return Ok('\''),
        _ => {}
    }
    let num = if let Some(hex) = name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
        u32::from_str_radix(hex, 16).ok()
    } else if let Some(dec) = name.strip_prefix('#') {
        dec.parse::<u32>().ok()
    } else {
        None
    };
    num.and_then(char::from_u32)
        .ok_or_else(|| XmlError::UnknownEntity(name.to_string()))
}

/// Decodes entities in an attribute value or any escaped text.
pub(crate) fn unescape(s: &str) -> Result<Cow<'_, str>, XmlError> {
    if !s.contains('&') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let end = after
            .find(';')
            .ok_or_else(|| XmlError::Malformed("unterminated &".into()))?;
        out.push(decode_ref(&after[..end])?);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Cow::Owned(out))
}

/// Escapes text for element content or attribute values: `& < > " '` (XML 1.0 §2.4).
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['&', '<', '>', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Length of the `&...;` reference at the start of `s` if it is one [`parse`] decodes (the five
/// predefined entities, a decimal or hex character reference of a valid char).
fn known_ref_len(s: &[u8]) -> Option<usize> {
    let end = s.iter().take(12).position(|&b| b == b';')?;
    let name = std::str::from_utf8(&s[1..end]).ok()?;
    decode_ref(name).ok().map(|_| end + 1)
}

/// Finds `</name>` or `</prefix:name>` (with optional white space before `>`) from `from`;
/// returns its start.
fn find_end_tag(input: &[u8], from: usize, qname: &[u8]) -> Option<usize> {
    let mut i = from;
    while let Some(off) = input[i..].windows(2).position(|w| w == b"</") {
        let start = i + off;
        let rest = &input[start + 2..];
        if let Some(after) = rest.strip_prefix(qname) {
            let ws = after.iter().take_while(|b| b.is_ascii_whitespace()).count();
            if after.get(ws) == Some(&b'>') {
                return Some(start);
            }
        }
        i = start + 2;
    }
    None
}

/// Repairs what some clients send without escaping: miniupnpc (2.2) writes argument values as
/// they are, so `upnpc -e 'a&b'` sends `<NewPortMappingDescription>a&b</...>`, which is not
/// XML. In the text of each leaf element whose local name is in `names` (start tag without
/// attributes, up to its first end tag), a `&` that does not begin a reference [`parse`] decodes
/// becomes `&amp;` and any `<` becomes `&lt;`; elements holding CDATA are left alone.
///
/// Only escapes, never expands or removes: the result must still pass [`parse`] (no DTD, known
/// entities only, limits). None when nothing was changed.
pub(crate) fn escape_stray_markup(input: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len() + 32);
    let mut changed = false;
    let mut i = 0;
    while let Some(off) = input[i..].iter().position(|&b| b == b'<') {
        let open = i + off;
        // `<` [prefix:] name `>`; a `<` before the `>` starts over there (linear time).
        let tag_end = match input[open + 1..]
            .iter()
            .position(|&b| b == b'>' || b == b'<')
        {
            Some(e) if input[open + 1 + e] == b'>' => open + 1 + e,
            Some(e) => {
                out.extend_from_slice(&input[i..open + 1 + e]);
                i = open + 1 + e;
                continue;
            }
            None => break,
        };
        let qname = &input[open + 1..tag_end];
        let local = qname
            .iter()
            .rposition(|&b| b == b':')
            .map_or(qname, |c| &qname[c + 1..]);
        let plain = !qname.is_empty()
            && qname
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        let wanted = plain && names.iter().any(|n| n.as_bytes() == local);
        let content_start = tag_end + 1;
        let end = if wanted {
            find_end_tag(input, content_start, qname)
        } else {
            None
        };
        let Some(end) = end else {
            if wanted {
                // No end tag after this one, so none after any later one either (and no
                // quadratic rescans).
                break;
            }
            out.extend_from_slice(&input[i..content_start]);
            i = content_start;
            continue;
        };
        out.extend_from_slice(&input[i..content_start]);
        let text = &input[content_start..end];
        if text.windows(9).any(|w| w == b"<![CDATA[") {
            out.extend_from_slice(text);
        } else {
            let mut j = 0;
            while j < text.len() {
                match text[j] {
                    b'&' => match known_ref_len(&text[j..]) {
                        Some(n) => {
                            out.extend_from_slice(&text[j..j + n]);
                            j += n;
                            continue;
                        }
                        None => {
                            out.extend_from_slice(b"&amp;");
                            changed = true;
                        }
                    },
                    b'<' => {
                        out.extend_from_slice(b"&lt;");
                        changed = true;
                    }
                    b => out.push(b),
                }
                j += 1;
            }
        }
        i = end;
    }
    out.extend_from_slice(&input[i..]);
    changed.then_some(out)
}

fn resolved_ns(r: &ResolveResult<'_>) -> Result<Option<String>, XmlError> {
    match r {
        ResolveResult::Bound(ns) => Ok(Some(String::from_utf8_lossy(ns.as_ref()).into_owned())),
        ResolveResult::Unbound => Ok(None),
        ResolveResult::Unknown(_) => Err(XmlError::UnknownPrefix),
    }
}

/// Parses a whole document into its root element.
pub(crate) fn parse(input: &[u8], limits: Limits) -> Result<Element, XmlError> {
    if input.len() > limits.max_bytes {
        return Err(XmlError::TooLarge(input.len()));
    }
    // Strip a UTF-8 byte order mark; UPnP documents are UTF-8 (UDA 2.0 §2.1).
    let input = input.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(input);
    let mut reader = NsReader::from_reader(input);
    let cfg = reader.config_mut();
    cfg.expand_empty_elements = true;
    cfg.check_end_names = true;
    cfg.trim_text(false);

    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let (ns, ev) = reader.read_resolved_event().map_err(malformed)?;
        match ev {
            Event::Start(start) => {
                if root.is_some() {
                    return Err(XmlError::Malformed("content after the root element".into()));
                }
                count += 1;
                if count > limits.max_elements {
                    return Err(XmlError::TooManyElements);
                }
                if stack.len() >= limits.max_depth {
                    return Err(XmlError::TooDeep);
                }
                let ns = resolved_ns(&ns)?;
                let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
                let mut attrs = Vec::new();
                for a in start.attributes() {
                    let a = a.map_err(malformed)?;
                    let key = a.key.as_ref();
                    if key == b"xmlns" || key.starts_with(b"xmlns:") {
                        continue;
                    }
                    let k = String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned();
                    let raw = std::str::from_utf8(&a.value).map_err(malformed)?;
                    attrs.push((k, unescape(raw)?.into_owned()));
                }
                stack.push(Element {
                    ns,
                    name,
                    attrs,
                    ..Element::default()
                });
            }
            Event::End(_) => {
                let Some(done) = stack.pop() else {
                    return Err(XmlError::Malformed("unbalanced end tag".into()));
                };
                match stack.last_mut() {
                    Some(parent) => parent.children.push(done),
                    None => root = Some(done),
                }
            }
            Event::Text(t) => {
                let s = t.decode().map_err(malformed)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None if s.trim().is_empty() => {}
                    None => return Err(XmlError::Malformed("text outside the root".into())),
                }
            }
            Event::CData(c) => {
                let s = c.decode().map_err(malformed)?;
                match stack.last_mut() {
                    Some(top) => top.text.push_str(&s),
                    None => return Err(XmlError::Malformed("CDATA outside the root".into())),
                }
            }
            Event::GeneralRef(r) => {
                let name = r.decode().map_err(malformed)?;
                let c = decode_ref(&name)?;
                match stack.last_mut() {
                    Some(top) => top.text.push(c),
                    None => return Err(XmlError::Malformed("reference outside the root".into())),
                }
            }
            Event::DocType(_) => return Err(XmlError::Doctype),
            Event::Empty(_) => {
                // Not produced with expand_empty_elements; treat defensively as malformed.
                return Err(XmlError::Malformed("unexpected empty element".into()));
            }
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(XmlError::Malformed("unclosed element".into()));
    }
    root.ok_or(XmlError::Empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_entities_cdata() {
        let doc = br#"<?xml version="1.0"?>
<s:Envelope xmlns:s="urn:env"><s:Body><u:A xmlns:u="urn:svc"><x>a&amp;b&#65;&#x42;</x><y><![CDATA[<raw>&amp;]]></y></u:A></s:Body></s:Envelope>"#;
        let root = parse(doc, Limits::default()).unwrap();
        assert_eq!(root.ns.as_deref(), Some("urn:env"));
        let a = &root.child("Body").unwrap().children[0];
        assert_eq!(a.ns.as_deref(), Some("urn:svc"));
        assert_eq!(a.child_text("x"), Some("a&bAB"));
        assert_eq!(a.child_text("y"), Some("<raw>&amp;"));
    }

    #[test]
    fn refuses_doctype_and_unknown_entities() {
        let bomb = br#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><r>&a;</r>"#;
        assert_eq!(parse(bomb, Limits::default()), Err(XmlError::Doctype));
        assert!(matches!(
            parse(b"<r>&a;</r>", Limits::default()),
            Err(XmlError::UnknownEntity(_))
        ));
    }

    #[test]
    fn limits() {
        let deep = "<a>".repeat(40) + &"</a>".repeat(40);
        assert_eq!(
            parse(deep.as_bytes(), Limits::default()),
            Err(XmlError::TooDeep)
        );
        let big = vec![b' '; 70 * 1024];
        assert!(matches!(
            parse(&big, Limits::default()),
            Err(XmlError::TooLarge(_))
        ));
        assert!(parse(b"<a><b></a>", Limits::default()).is_err());
        assert!(parse(b"", Limits::default()).is_err());
        assert!(parse(b"<a/><b/>", Limits::default()).is_err());
    }

    #[test]
    fn stray_markup_in_named_leaves_is_escaped() {
        let names = ["Desc"];
        let fix = |s: &str| {
            escape_stray_markup(s.as_bytes(), &names).map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            fix("<a><Desc>a&b</Desc><x>1</x></a>").as_deref(),
            Some("<a><Desc>a&amp;b</Desc><x>1</x></a>")
        );
        // known references stay, unknown ones become literal text, `<` too
        assert_eq!(
            fix("<a><u:Desc>&amp;&#65;&b;<c&</u:Desc ></a>").as_deref(),
            Some("<a><u:Desc>&amp;&#65;&amp;b;&lt;c&amp;</u:Desc ></a>")
        );
        // nothing to do, other elements, CDATA, attributes: untouched
        assert_eq!(fix("<a><Desc>ab</Desc></a>"), None);
        assert_eq!(fix("<a><Other>a&b</Other></a>"), None);
        assert_eq!(fix("<a><Desc><![CDATA[a&b]]></Desc></a>"), None);
        assert_eq!(fix("<a><Desc x=\"1\">a&b</Desc></a>"), None);
        assert_eq!(fix("<a><Desc>a&b"), None, "no end tag");
        assert_eq!(
            fix("<a><<x<Desc>a&b</Desc></a>").as_deref(),
            Some("<a><<x<Desc>a&amp;b</Desc></a>")
        );
        let many = "<".repeat(16 * 1024) + ">";
        assert_eq!(fix(&many), None);
        // the repaired text parses and reads back as sent
        let doc = fix("<a><Desc>x&y <z> &lt;</Desc></a>").unwrap();
        let root = parse(doc.as_bytes(), Limits::default()).unwrap();
        assert_eq!(root.child_text("Desc"), Some("x&y <z> <"));
        // escaping cannot switch the DTD rule off
        let bomb = "<!DOCTYPE a [<!ENTITY e \"x\">]><a><Desc>&e;&</Desc></a>";
        let doc = fix(bomb).unwrap();
        assert_eq!(
            parse(doc.as_bytes(), Limits::default()),
            Err(XmlError::Doctype)
        );
    }

    #[test]
    fn escape_all_five() {
        assert_eq!(
            escape(r#"<a href="x">&'"#),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
