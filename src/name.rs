//! Build names, checked once where they come in (the command line, a directory name, a release's
//! metadata) and carried as [`BuildName`] from there on.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::Error;

/// The rule every build name follows, as shown in errors.
pub const BUILD_RULE: &str = "^[a-z0-9][a-z0-9_-]{0,31}$";

/// Whether `s` is 1 to 32 bytes, its first character passes `first` and the others `rest`.
pub fn matches_rule(s: &str, first: fn(char) -> bool, rest: fn(char) -> bool) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if first(c)) && s.len() <= 32 && chars.all(rest)
}

/// The name of a build (`development`, `pr-42`): it becomes a directory name and a unit instance
/// name, so it is kept plain ([`BUILD_RULE`]). Shown as it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct BuildName(String);

impl BuildName {
    /// Checks `name` against [`BUILD_RULE`]; the error is a usage error naming the rule.
    pub fn parse(name: &str) -> Result<BuildName, Error> {
        let ok = matches_rule(
            name,
            |c| c.is_ascii_lowercase() || c.is_ascii_digit(),
            |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_',
        );
        if ok {
            Ok(BuildName(name.to_string()))
        } else {
            Err(Error::Usage(format!(
                "invalid build name \"{}\": it must match {BUILD_RULE} (lowercase letters, digits, '-' and '_'; no dots, slashes or '@')",
                name.escape_debug()
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for BuildName {
    type Err = Error;
    fn from_str(s: &str) -> Result<BuildName, Error> {
        BuildName::parse(s)
    }
}

impl<'de> Deserialize<'de> for BuildName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BuildName, D::Error> {
        let s = String::deserialize(deserializer)?;
        BuildName::parse(&s).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for BuildName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Deref for BuildName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for BuildName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<Path> for BuildName {
    fn as_ref(&self) -> &Path {
        Path::new(&self.0)
    }
}

impl Borrow<str> for BuildName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for BuildName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for BuildName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for BuildName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<BuildName> for str {
    fn eq(&self, other: &BuildName) -> bool {
        self == other.0
    }
}

impl PartialEq<BuildName> for &str {
    fn eq(&self, other: &BuildName) -> bool {
        *self == other.0
    }
}

impl PartialEq<BuildName> for String {
    fn eq(&self, other: &BuildName) -> bool {
        *self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_names_follow_the_rule() {
        for ok in ["development", "a", "v2_test-1", "0day", &"x".repeat(32)] {
            assert_eq!(BuildName::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "Dev", "../x", "a.b", "a/b", "a@b", "-x", "_x", &"x".repeat(33)] {
            let err = BuildName::parse(bad).unwrap_err().to_string();
            assert!(err.contains(BUILD_RULE), "{err}");
        }
        assert_eq!(
            "a.b".parse::<BuildName>().unwrap_err().to_string(),
            "invalid build name \"a.b\": it must match ^[a-z0-9][a-z0-9_-]{0,31}$ (lowercase letters, digits, '-' and '_'; no dots, slashes or '@')"
        );
    }

    #[test]
    fn a_build_name_shows_and_serializes_as_it_is_and_deserializes_checked() {
        let name = BuildName::parse("pr-42").unwrap();
        assert_eq!(name.to_string(), "pr-42");
        assert_eq!(serde_json::to_string(&name).unwrap(), "\"pr-42\"");
        assert_eq!(serde_json::from_str::<BuildName>("\"pr-42\"").unwrap(), name);
        let err = serde_json::from_str::<BuildName>("\"../etc\"").unwrap_err().to_string();
        assert!(err.starts_with("invalid build name \"../etc\""), "{err}");
        assert_eq!(name, "pr-42");
        assert_eq!("pr-42", name);
        assert_eq!(Path::new("/opt/a").join(&name), Path::new("/opt/a/pr-42"));
    }

    #[test]
    fn the_command_line_takes_build_names_checked() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(["relctl", "start", "development"]).unwrap();
        let crate::cli::Command::Start(a) = cli.command else { panic!("not start") };
        assert_eq!(a.build, "development");
        let err = crate::cli::Cli::try_parse_from(["relctl", "restart", "x@y"]).unwrap_err();
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert_eq!(
            crate::error::usage_from_clap(&err).as_deref(),
            Some(
                "invalid build name \"x@y\": it must match ^[a-z0-9][a-z0-9_-]{0,31}$ (lowercase letters, digits, '-' and '_'; no dots, slashes or '@')"
            )
        );
        let err = crate::cli::Cli::try_parse_from(["relctl", "nginx-snippet", "--build", "Dev"]).unwrap_err();
        assert!(crate::error::usage_from_clap(&err).is_some_and(|m| m.starts_with("invalid build name \"Dev\"")));
        let err = crate::cli::Cli::try_parse_from(["relctl", "build", "development", "--force"]).unwrap_err();
        assert_eq!(crate::error::usage_from_clap(&err), None, "clap's own errors keep clap's message");
    }
}
