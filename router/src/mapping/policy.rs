//! Permission rules, in miniupnpd's syntax (miniupnpd.conf, `upnppermissions.c`):
//!
//! ```text
//! # allow|deny  external-port-range  internal-address[/mask]  internal-port-range
//! allow 1024-65535 192.168.1.0/24 1024-65535
//! deny  0-65535    0.0.0.0/0      0-65535
//! ```
//!
//! Rules are checked in order and the first one that matches decides. If none matches the
//! request is allowed, as in miniupnpd. A mask is a prefix length (`/24`) or a dotted mask
//! (`/255.255.255.0`); a port range is `N` or `N-M`.

use std::fmt;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::str::FromStr;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
}

/// One rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// What a match means.
    pub verdict: Verdict,
    /// External ports.
    pub ext_ports: RangeInclusive<u16>,
    /// Internal network address (already masked).
    pub addr: Ipv4Addr,
    /// Internal network mask.
    pub mask: Ipv4Addr,
    /// Internal ports.
    pub int_ports: RangeInclusive<u16>,
}

impl Rule {
    /// Whether the rule applies to a request.
    pub fn matches(&self, ext_port: u16, int_addr: Ipv4Addr, int_port: u16) -> bool {
        self.ext_ports.contains(&ext_port)
            && self.int_ports.contains(&int_port)
            && (u32::from(int_addr) & u32::from(self.mask)) == u32::from(self.addr)
    }
}

/// A rule list; empty allows everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules(pub Vec<Rule>);

/// A rule that could not be read, with its 1-based line number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("permission rule, line {line}: {message}")]
pub struct RuleError {
    /// 1-based line number in the text given to [`Rules::parse`].
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

fn port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.parse().map_err(|_| format!("bad port {a:?}"))?;
    let b: u16 = b.parse().map_err(|_| format!("bad port {b:?}"))?;
    if a > b {
        return Err(format!("port range {s:?} is reversed"));
    }
    Ok(a..=b)
}

fn addr_mask(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let (a, m) = s.split_once('/').unwrap_or((s, "32"));
    let addr: Ipv4Addr = a.parse().map_err(|_| format!("bad address {a:?}"))?;
    let mask = if let Ok(bits) = m.parse::<u8>() {
        if bits > 32 {
            return Err(format!("bad prefix length /{bits}"));
        }
        let bits = u32::from(bits);
        Ipv4Addr::from(if bits == 0 {
            0
        } else {
            u32::MAX << (32 - bits)
        })
    } else {
        m.parse().map_err(|_| format!("bad mask {m:?}"))?
    };
    Ok((Ipv4Addr::from(u32::from(addr) & u32::from(mask)), mask))
}

impl FromStr for Rule {
    type Err = String;
    fn from_str(line: &str) -> Result<Rule, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        // miniupnpd allows a fifth field (a description regex); we do not filter on it.
        let [verdict, ext, addr, int, ..] = words[..] else {
            return Err("expected: allow|deny ext-ports addr/mask int-ports".into());
        };
        if words.len() > 5 {
            return Err("too many fields".into());
        }
        let verdict = match verdict.to_ascii_lowercase().as_str() {
            "allow" => Verdict::Allow,
            "deny" => Verdict::Deny,
            other => return Err(format!("expected allow or deny, got {other:?}")),
        };
        let (addr, mask) = addr_mask(addr)?;
        Ok(Rule {
            verdict,
            ext_ports: port_range(ext)?,
            addr,
            mask,
            int_ports: port_range(int)?,
        })
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = match self.verdict {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
        };
        let prefix = u32::from(self.mask).leading_ones();
        write!(
            f,
            "{v} {}-{} {}/{prefix} {}-{}",
            self.ext_ports.start(),
            self.ext_ports.end(),
            self.addr,
            self.int_ports.start(),
            self.int_ports.end()
        )
    }
}

impl Rules {
    /// Parses rules, one per line; `#` starts a comment; blank lines are skipped.
    pub fn parse(text: &str) -> Result<Rules, RuleError> {
        let mut rules = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let rule = line.parse().map_err(|message| RuleError {
                line: n + 1,
                message,
            })?;
            rules.push(rule);
        }
        Ok(Rules(rules))
    }

    /// The verdict for a request: the first matching rule's, else allow.
    pub fn check(&self, ext_port: u16, int_addr: Ipv4Addr, int_port: u16) -> Verdict {
        self.0
            .iter()
            .find(|r| r.matches(ext_port, int_addr, int_port))
            .map_or(Verdict::Allow, |r| r.verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "\
# typical miniupnpd.conf rules
allow 1024-65535 192.168.1.0/24 1024-65535
allow 80 192.168.1.100/32 80     # the camera may map port 80
deny 0-65535 0.0.0.0/0 0-65535
";

    #[test]
    fn first_match_wins() {
        let r = Rules::parse(CONF).unwrap();
        let cam = Ipv4Addr::new(192, 168, 1, 100);
        let other = Ipv4Addr::new(192, 168, 1, 101);
        assert_eq!(r.check(8080, cam, 8080), Verdict::Allow);
        assert_eq!(r.check(80, cam, 80), Verdict::Allow);
        assert_eq!(r.check(80, other, 80), Verdict::Deny);
        assert_eq!(r.check(8080, other, 22), Verdict::Deny);
        assert_eq!(
            r.check(8080, Ipv4Addr::new(10, 0, 0, 1), 8080),
            Verdict::Deny
        );
        assert_eq!(Rules::default().check(1, cam, 1), Verdict::Allow);
    }

    #[test]
    fn syntax() {
        let r: Rule = "ALLOW 1-2 10.1.2.3/255.255.0.0 5".parse().unwrap();
        assert_eq!(r.addr, Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(r.to_string(), "allow 1-2 10.1.0.0/16 5-5");
        let host: Rule = "deny 22 192.168.1.7 22".parse().unwrap();
        assert_eq!(host.mask, Ipv4Addr::BROADCAST);
        let any: Rule = "deny 0-65535 0.0.0.0/0 0-65535".parse().unwrap();
        assert!(any.matches(1, Ipv4Addr::new(8, 8, 8, 8), 2));
        let regex: Rule = "allow 1-2 1.2.3.4/32 1-2 ^cam.*$".parse().unwrap();
        assert_eq!(regex.verdict, Verdict::Allow);
    }

    #[test]
    fn clear_errors() {
        let cases = [
            ("permit 1 1.2.3.4 1", "allow or deny"),
            ("allow 1", "expected"),
            ("allow 70000 1.2.3.4 1", "bad port"),
            ("allow 9-1 1.2.3.4 1", "reversed"),
            ("allow 1 1.2.3 1", "bad address"),
            ("allow 1 1.2.3.4/33 1", "prefix length"),
            ("allow 1 1.2.3.4/x 1", "bad mask"),
            ("allow 1 1.2.3.4 1 a b", "too many"),
        ];
        for (line, want) in cases {
            let text = format!("# header\n\n{line}\n");
            let e = Rules::parse(&text).unwrap_err();
            assert_eq!(e.line, 3, "{line}");
            assert!(e.to_string().contains(want), "{line}: {e}");
        }
    }
}
