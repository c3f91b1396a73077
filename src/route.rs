//! Routes and access rules from the manifest, checked so that nothing in them can break out of
//! the nginx directive it goes into.

/// A build's route, checked and normalized once: a plain URL path prefix (`/api`), without a
/// trailing slash but for the root route `/`. It keeps the text the manifest had (`/api/`) for
/// what shows the manifest's own words. Two routes are the same when their paths are. Shown (and
/// serialized) as its path.
#[derive(Debug, Clone)]
pub struct Route {
    path: String,
    written: String,
}

impl Route {
    /// Checks a route from the manifest and normalizes it (`/api/` -> `/api`).
    pub fn parse(route: &str) -> Result<Route, String> {
        let bad = |why: &str| Err(format!("route \"{}\" {why}", route.escape_debug()));
        if !route.starts_with('/') {
            return bad("must start with '/'");
        }
        if let Some(c) =
            route.chars().find(|c| c.is_whitespace() || c.is_control() || ";{}\"'\\#$`*?^~=<>|".contains(*c))
        {
            return bad(&format!("contains '{}'; a route is a plain URL path prefix", c.escape_debug()));
        }
        if route.contains("//") || route.split('/').any(|seg| seg == "." || seg == "..") {
            return bad("must not contain '//', '.' or '..' segments");
        }
        let trimmed = route.trim_end_matches('/');
        let path = if trimmed.is_empty() { "/".to_string() } else { trimmed.to_string() };
        Ok(Route { path, written: route.to_string() })
    }

    /// The normalized path: `/api`, or `/`.
    pub fn as_str(&self) -> &str {
        &self.path
    }

    /// The route as the manifest wrote it (`/api/`).
    pub fn as_written(&self) -> &str {
        &self.written
    }

    /// Whether this is the root route, `/`.
    pub fn is_root(&self) -> bool {
        self.path == "/"
    }

    /// The route as the app's URL prefix (WSGI's `SCRIPT_NAME`): `/ledger` for `/ledger/`; "" for
    /// the root route.
    pub fn script_name(&self) -> &str {
        if self.is_root() {
            ""
        } else {
            &self.path
        }
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Route) -> bool {
        self.path == other.path
    }
}

impl Eq for Route {}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.path)
    }
}

impl serde::Serialize for Route {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.path)
    }
}

/// A build's route as the app's URL prefix ("" for a build without a route): see
/// [`Route::script_name`].
pub fn script_name(route: Option<&Route>) -> String {
    route.map_or("", Route::script_name).to_string()
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
        let path = |r: &str| Route::parse(r).unwrap().as_str().to_string();
        assert_eq!(path("/api"), "/api");
        assert_eq!(path("/api/"), "/api");
        assert_eq!(path("/v1/api"), "/v1/api");
        assert_eq!(path("/"), "/");
        for bad in ["api", "/a b", "/a;", "/a{", "/a}", "/a\"", "", "/a//b", "/a/../b", "/$x"] {
            assert!(Route::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(Route::parse("api").unwrap_err(), "route \"api\" must start with '/'");
        assert_eq!(
            Route::parse("/t;x").unwrap_err(),
            "route \"/t;x\" contains ';'; a route is a plain URL path prefix"
        );
    }

    #[test]
    fn a_route_keeps_its_words_and_compares_by_path() {
        let r = Route::parse("/api/").unwrap();
        assert_eq!((r.to_string(), r.as_written()), ("/api".to_string(), "/api/"));
        assert_eq!(r, Route::parse("/api").unwrap());
        assert_ne!(r, Route::parse("/api/v2").unwrap());
        assert_eq!(serde_json::to_string(&r).unwrap(), "\"/api\"");
        assert_eq!(r.script_name(), "/api");
        assert!(Route::parse("/").unwrap().is_root());
        assert_eq!(script_name(Some(&Route::parse("/").unwrap())), "");
        assert_eq!(script_name(None), "");
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
