//! Families of builds (`[builds."pr-*"]`): which family a build name belongs to, and a family's
//! declaration rendered for one member.

use std::path::Path;

use anyhow::Result;

use crate::error::Error;
use crate::manifest::schema::{Build, Manifest};
use crate::route::Route;

/// Whether a `[builds.<key>]` declares a family of builds (`pr-*`) rather than one build.
pub fn is_family(key: &str) -> bool {
    key.contains('*')
}

impl Manifest {
    /// The declared family `name` belongs to (never for a build declared by its own name).
    pub fn family_of(&self, name: &str) -> Option<(&str, &Build)> {
        if self.builds.get(name).is_some_and(|_| !is_family(name)) {
            return None;
        }
        self.builds.iter().find_map(|(k, b)| {
            let prefix = k.strip_suffix('*').filter(|p| !is_family(p))?;
            (name.len() > prefix.len() && name.starts_with(prefix)).then_some((k.as_str(), b))
        })
    }

    /// The builds declared by their own names, in manifest order.
    pub fn named_builds(&self) -> impl Iterator<Item = (&String, &Build)> {
        self.builds.iter().filter(|(k, _)| !is_family(k))
    }
}

/// A family's declaration for one member: `{{ build }}` (and `{{ app }}`) rendered in its route
/// and in the strings of its vars.
pub(super) fn member(app: &str, pattern: &str, family: &Build, name: &str) -> Result<Build, String> {
    let ctx = serde_json::json!({ "app": app, "build": name });
    let what = format!("[builds.\"{pattern}\"]");
    let render = |field: &str, text: &str| {
        crate::release::render::render_value(&format!("{what} {field}"), text, &ctx).map_err(|e| format!("{e:#}"))
    };
    let mut b = family.clone();
    if let Some(route) = &family.written_route {
        b.written_route = Some(render("route", route)?);
    }
    if let Some(domain) = &family.domain {
        b.domain = Some(render("domain", domain)?);
        b.written_route.get_or_insert_with(|| "/".to_string());
    }
    fn render_toml(v: &mut toml::Value, f: &dyn Fn(&str) -> Result<String, String>) -> Result<(), String> {
        match v {
            toml::Value::String(s) => *s = f(s)?,
            toml::Value::Array(a) => a.iter_mut().try_for_each(|v| render_toml(v, f))?,
            toml::Value::Table(t) => t.iter_mut().try_for_each(|(_, v)| render_toml(v, f))?,
            _ => {}
        }
        Ok(())
    }
    for (k, v) in b.vars.iter_mut() {
        render_toml(v, &|s| render(&format!("vars.{k}"), s))?;
    }
    Ok(b)
}

/// The declaration of `name` as a member of its family, if it belongs to one: rendered for it,
/// and refused when its route is the route of a build declared by name. `manifest_path` names
/// the manifest in errors.
pub fn declared_member(m: &Manifest, manifest_path: &Path, name: &str) -> Option<Result<Build>> {
    let (pattern, family) = m.family_of(name)?;
    Some(render_member(m, manifest_path, pattern, family, name))
}

fn render_member(m: &Manifest, manifest_path: &Path, pattern: &str, family: &Build, name: &str) -> Result<Build> {
    let mut member =
        member(&m.app, pattern, family, name).map_err(|e| Error::Usage(format!("{}: {e}", manifest_path.display())))?;
    if let Some(route) = &member.written_route {
        let normalized = Route::parse(route).map_err(Error::Usage)?;
        let taken = m
            .builds
            .iter()
            .filter(|(n, _)| !is_family(n))
            .find(|(_, b)| b.route.as_ref() == Some(&normalized) && b.domain == member.domain);
        if let Some((other, _)) = taken {
            let on = member.domain.as_ref().map(|d| format!(" on domain {d}")).unwrap_or_default();
            return Err(Error::Usage(format!(
                "{}: build {name} of [builds.\"{pattern}\"] would take route {normalized}{on}, the route of build {other}",
                manifest_path.display()
            ))
            .into());
        }
        member.route = Some(normalized);
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use crate::manifest::tests::MINIMAL;
    use crate::manifest::{parse, Loaded};
    use crate::name::{BuildName, BUILD_RULE};

    const FAMILY: &str =
        "[builds.\"pr-*\"]\nroute = \"/review/{{ build }}\"\nvars = { title = \"Review {{ build }}\", n = 1 }\n";

    #[test]
    fn a_family_declares_members_with_their_own_route_and_vars() {
        let loaded = Loaded {
            path: "/x/relctl.toml".into(),
            dir: "/x".into(),
            manifest: parse(&format!("{MINIMAL}{FAMILY}")).unwrap(),
        };
        let b = loaded.build(&"pr-42".parse().unwrap()).unwrap();
        assert_eq!(b.route.as_ref().map(|r| r.as_str()), Some("/review/pr-42"));
        assert_eq!(b.written_route.as_deref(), Some("/review/pr-42"));
        assert_eq!(b.vars["title"].as_str(), Some("Review pr-42"));
        assert_eq!(b.vars["n"].as_integer(), Some(1));
        assert_eq!(
            loaded.build(&"development".parse().unwrap()).unwrap().route.as_ref().map(|r| r.as_str()),
            Some("/api")
        );
        for bad in ["pr-", "pr", "staging"] {
            let err = loaded.build(&bad.parse().unwrap()).unwrap_err().to_string();
            assert!(err.contains("is not declared"), "{bad}: {err}");
        }
        for bad in ["pr-X", "pr.1"] {
            let err = bad.parse::<BuildName>().unwrap_err().to_string();
            assert!(err.contains(BUILD_RULE), "{bad}: {err}");
        }
        assert_eq!(
            loaded.build(&"staging".parse().unwrap()).unwrap_err().to_string(),
            "build \"staging\" is not declared in /x/relctl.toml; declared builds: development, pr-* (a family)"
        );
        assert_eq!(loaded.manifest.named_builds().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["development"]);
    }

    #[test]
    fn a_named_build_wins_over_its_family_and_routes_may_not_collide() {
        let text = format!("{MINIMAL}{FAMILY}[builds.pr-main]\nroute = \"/main\"\n");
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(&text).unwrap() };
        assert_eq!(
            loaded.build(&"pr-main".parse().unwrap()).unwrap().route.as_ref().map(|r| r.as_str()),
            Some("/main")
        );
        let text = format!("{MINIMAL}{FAMILY}[builds.other]\nroute = \"/review/pr-7\"\n");
        let loaded = Loaded { path: "/x/relctl.toml".into(), dir: "/x".into(), manifest: parse(&text).unwrap() };
        let err = loaded.build(&"pr-7".parse().unwrap()).unwrap_err().to_string();
        assert!(err.ends_with("would take route /review/pr-7, the route of build other"), "{err}");
    }
}
