//! Release ids.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::release::git::GitRevision;

/// A release id: UTC time to the second (`20261123T130501Z`), then `-<git short hash>` and
/// `-dirty` when known, or `-adopted` for the files of a hand-made setup `build --adopt` took over. The time comes first and has a fixed width, so ids order by time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ReleaseId(String);

const TIME_FORMAT: &str = "%Y%m%dT%H%M%SZ";
pub const ID_SHAPE: &str = "20261123T130501Z[-<git hash>[-dirty]|-adopted]";
const ADOPTED: &str = "adopted";

impl ReleaseId {
    pub fn new(at: jiff::Timestamp, git: Option<&GitRevision>) -> ReleaseId {
        let time = at.strftime(TIME_FORMAT).to_string();
        ReleaseId(match git {
            Some(g) => format!("{time}-{}", g.label()),
            None => time,
        })
    }

    /// The id of a hand-made setup's files taken over at `at` (`20261123T130501Z-adopted`).
    pub fn adopted(at: jiff::Timestamp) -> ReleaseId {
        ReleaseId(format!("{}-{ADOPTED}", at.strftime(TIME_FORMAT)))
    }

    /// Checks a release id typed by a user or found on disk.
    pub fn parse(s: &str) -> Result<ReleaseId, String> {
        let (time, rest) = s.split_at_checked(16).unwrap_or((s, ""));
        let time_ok = time.len() == 16
            && time.char_indices().all(|(i, c)| match i {
                8 => c == 'T',
                15 => c == 'Z',
                _ => c.is_ascii_digit(),
            });
        let rest_ok = match rest.strip_prefix('-') {
            None => rest.is_empty(),
            Some(ADOPTED) => true,
            Some(git) => {
                let hash = git.strip_suffix("-dirty").unwrap_or(git);
                (4..=40).contains(&hash.len()) && hash.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            }
        };
        if time_ok && rest_ok {
            Ok(ReleaseId(s.to_string()))
        } else {
            Err(format!("\"{}\" is not a release id (they look like {ID_SHAPE})", s.escape_debug()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ReleaseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ReleaseId {
    type Error = String;
    fn try_from(s: String) -> Result<ReleaseId, String> {
        ReleaseId::parse(&s)
    }
}

impl From<ReleaseId> for String {
    fn from(id: ReleaseId) -> String {
        id.0
    }
}
