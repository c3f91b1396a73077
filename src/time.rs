//! Times in relctl's data (a release's `created` and `verified`, a unit's `since`): held as
//! [`jiff::Timestamp`], written in RFC 3339 to the second (`2026-12-03T08:05:06Z`), on disk and in
//! `--json`. Read back in RFC 3339, or as relctl wrote them before (`2026-12-03 08:05:06 UTC`), so
//! the release.json and `verified` files of existing releases still read.

use jiff::Timestamp;

/// `t` in RFC 3339, to the second, in UTC: `2026-12-03T08:05:06Z`.
pub fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A time systemd gives in microseconds since the epoch: none for 0 (never) or for its infinity
/// (`u64::MAX`, e.g. a timer with no next run).
pub fn from_systemd_us(us: u64) -> Option<Timestamp> {
    i64::try_from(us).ok().filter(|us| *us > 0).and_then(|us| Timestamp::from_microsecond(us).ok())
}

/// Reads a time in RFC 3339 (`2026-12-03T08:05:06Z`, any offset, any fraction) or in the form
/// relctl wrote before (`2026-12-03 08:05:06 UTC`).
pub fn parse(text: &str) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S UTC", text)
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC))
        .map(|z| z.timestamp())
        .map_err(|_| {
            format!("\"{}\" is not a time (expected RFC 3339, e.g. 2026-12-03T08:05:06Z)", text.escape_debug())
        })
}

/// `#[serde(with = "crate::time::serde_rfc3339")]` for a [`Timestamp`].
pub mod serde_rfc3339 {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// `#[serde(with = "crate::time::serde_rfc3339_option")]` for an `Option<Timestamp>` (null when
/// None).
pub mod serde_rfc3339_option {
    use jiff::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => serializer.serialize_some(&super::rfc3339(*t)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => super::parse(&text).map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn systemd_times_of_never_and_infinity_are_none() {
        assert_eq!(super::from_systemd_us(0), None);
        assert_eq!(super::from_systemd_us(u64::MAX), None);
        assert_eq!(super::from_systemd_us(1_000_000).map(super::rfc3339).as_deref(), Some("1970-01-01T00:00:01Z"));
    }

    use super::*;

    #[test]
    fn times_are_written_in_rfc3339_to_the_second() {
        let t: Timestamp = "2026-12-03T08:05:06.789Z".parse().unwrap();
        assert_eq!(rfc3339(t), "2026-12-03T08:05:06Z");
        let t: Timestamp = "2026-12-03T09:05:06+01:00".parse().unwrap();
        assert_eq!(rfc3339(t), "2026-12-03T08:05:06Z");
    }

    #[test]
    fn times_read_in_rfc3339_and_as_relctl_wrote_them_before() {
        let t: Timestamp = "2026-12-03T08:05:06Z".parse().unwrap();
        assert_eq!(parse("2026-12-03T08:05:06Z").unwrap(), t);
        assert_eq!(parse("2026-12-03 08:05:06 UTC\n").unwrap(), t);
        assert_eq!(parse("2026-12-03T09:05:06+01:00").unwrap(), t);
        for bad in ["", "now", "2026-12-03", "2026-12-03 08:05:06", "2026-13-03 08:05:06 UTC"] {
            assert!(parse(bad).is_err(), "{bad:?} read");
        }
        assert_eq!(parse("now").unwrap_err(), "\"now\" is not a time (expected RFC 3339, e.g. 2026-12-03T08:05:06Z)");
    }

    #[test]
    fn optional_times_round_trip_through_json() {
        #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        struct Doc {
            #[serde(with = "serde_rfc3339")]
            at: Timestamp,
            #[serde(with = "serde_rfc3339_option")]
            since: Option<Timestamp>,
        }
        let doc = Doc { at: "2026-12-03T08:05:06Z".parse().unwrap(), since: None };
        let json = serde_json::to_string(&doc).unwrap();
        assert_eq!(json, r#"{"at":"2026-12-03T08:05:06Z","since":null}"#);
        assert_eq!(serde_json::from_str::<Doc>(&json).unwrap(), doc);
        let old: Doc =
            serde_json::from_str(r#"{"at":"2026-12-03 08:05:06 UTC","since":"2026-12-03 08:05:06 UTC"}"#).unwrap();
        assert_eq!(old.since, Some(doc.at));
    }
}
