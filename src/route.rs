//! Routes and access rules from the manifest, checked so that nothing in them can break out of
//! the nginx directive it goes into.

/// Checks a route from the manifest and returns it normalized (`/api/` -> `/api`).
pub fn normalize(route: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("route \"{}\" {why}", route.escape_debug()));
    if !route.starts_with('/') {
        return bad("must start with '/'");
    }
    if let Some(c) = route.chars().find(|c| c.is_whitespace() || c.is_control() || ";{}\"'\\#$`*?^~=<>|".contains(*c)) {
        return bad(&format!("contains '{}'; a route is a plain URL path prefix", c.escape_debug()));
    }
    if route.contains("//") || route.split('/').any(|seg| seg == "." || seg == "..") {
        return bad("must not contain '//', '.' or '..' segments");
    }
    let trimmed = route.trim_end_matches('/');
    Ok(if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() })
}

/// A build's route as the app's URL prefix (WSGI's `SCRIPT_NAME`): `/ledger` for `/ledger/`; ""
/// for the root route, a build without a route, or one that does not check (refused elsewhere).
pub fn script_name(route: Option<&str>) -> String {
    route.and_then(|r| normalize(r).ok()).filter(|r| r != "/").unwrap_or_default()
}

/// Checks an `allow` entry: `all`, an IP address or a CIDR range (`10.0.0.0/8`, `fd00::/8`),
/// parsed as one.
pub fn check_allow(entry: &str) -> Result<(), String> {
    if entry == "all" {
        return Ok(());
    }
    let (addr, prefix) = match entry.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (entry, None),
    };
    let ok = match addr.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let max = if ip.is_ipv4() { 32 } else { 128 };
            prefix.is_none_or(|p| p.parse::<u8>().is_ok_and(|p| p <= max) && !p.starts_with('+'))
        }
        Err(_) => false,
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "allow entry \"{}\" must be \"all\", an IP address or a CIDR range (e.g. 10.0.0.0/8, fd00::/8)",
            entry.escape_debug()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_normalized_and_checked() {
        assert_eq!(normalize("/api").unwrap(), "/api");
        assert_eq!(normalize("/api/").unwrap(), "/api");
        assert_eq!(normalize("/v1/api").unwrap(), "/v1/api");
        assert_eq!(normalize("/").unwrap(), "/");
        for bad in ["api", "/a b", "/a;", "/a{", "/a}", "/a\"", "", "/a//b", "/a/../b", "/$x"] {
            assert!(normalize(bad).is_err(), "{bad:?} accepted");
        }
        assert!(normalize("api").unwrap_err().contains("must start with '/'"));
    }

    #[test]
    fn allow_entries_cannot_inject_directives() {
        assert!(check_allow("10.0.0.0/8").is_ok());
        assert!(check_allow("::1").is_ok());
        assert!(check_allow("all").is_ok());
        assert!(check_allow("fd00::/8").is_ok());
        for bad in [
            "10.0.0.0/8; deny all",
            "1.2.3.4 5",
            "",
            "a{",
            "10.0.0.0/33",
            "10.0.0.300/8",
            "::1/129",
            "10.0.0.0/",
            "localhost",
        ] {
            assert!(check_allow(bad).is_err(), "{bad:?} accepted");
        }
    }
}
