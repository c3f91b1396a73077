//! Where a command runs: a host as typed after `-H` or in a build's `hosts`.

use serde::Serialize;

/// Where a command runs: `[user@]host[:port]`, as typed after `-H`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Target {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

impl std::str::FromStr for Target {
    type Err = String;

    fn from_str(s: &str) -> Result<Target, String> {
        let bad = |why: &str| format!("host \"{}\": {why}; expected [user@]host[:port]", s.escape_debug());
        let (user, rest) = match s.rsplit_once('@') {
            Some((u, r)) => (Some(u), r),
            None => (None, s),
        };
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 address needs its closing ']'"))?;
                match after {
                    "" => (h, None),
                    p => (h, Some(p.strip_prefix(':').ok_or_else(|| bad("a port follows ':'"))?)),
                }
            }
            None => match rest.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (rest, None),
            },
        };
        if let Some(u) = user {
            let ok = u.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && u.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
            if !ok {
                return Err(bad("the user name is not one"));
            }
        }
        // Never an option to ssh: a host starts with a letter, a digit, or is an IPv6 address.
        let host_ok = host.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c))
            && (!host.contains(':') || rest.starts_with('['));
        if !host_ok {
            return Err(bad("the host name is not one"));
        }
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| bad("the port is not 1 to 65535"))?),
            None => None,
        };
        Ok(Target { user: user.map(str::to_string), host: host.to_string(), port })
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        for (text, user, host, port) in [
            ("web1", None, "web1", None),
            ("deploy@web1.example.com:2222", Some("deploy"), "web1.example.com", Some(2222)),
            ("root@10.0.0.5", Some("root"), "10.0.0.5", None),
            ("[fd00::5]:22", None, "fd00::5", Some(22)),
        ] {
            let t: Target = text.parse().unwrap();
            assert_eq!((t.user.as_deref(), t.host.as_str(), t.port), (user, host, port), "{text}");
            assert_eq!(t.to_string(), text);
        }
        for bad in ["", "-oProxyCommand=x", "web1:0", "web1:x", "a b", "@web1", "web1:22:33", "[fd00::5", "u;x@h"] {
            let err = bad.parse::<Target>().unwrap_err();
            assert!(err.contains("expected [user@]host[:port]"), "{bad}: {err}");
        }
    }
}
