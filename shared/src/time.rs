//! Every timestamp format the service reads or writes, in one place.
//!
//! - The API and the socket show RFC 3339 UTC to the second (`2026-11-24T19:00:00Z`).
//! - The stores keep RFC 3339 UTC to the millisecond, so order survives a round trip.
//! - API Gateway events carry their request time as `24/Nov/2026:19:00:00 +0000`.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-11-24T19:00:00Z`: what the API and the socket show.
pub fn to_api(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2026-11-24T19:00:00.123Z`: what the stores keep.
pub fn to_stored(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Reads any RFC 3339 timestamp (either form above) as UTC.
pub fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// `24/Nov/2026:19:00:00 +0000`: `requestContext.time` / `requestTime` of API Gateway events.
pub fn to_api_gateway(t: &DateTime<Utc>) -> String {
    t.format("%d/%b/%Y:%H:%M:%S %z").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let t = parse("2026-11-24T19:00:00.123Z").unwrap();
        assert_eq!(to_api(&t), "2026-11-24T19:00:00Z");
        assert_eq!(to_stored(&t), "2026-11-24T19:00:00.123Z");
        assert_eq!(parse(&to_stored(&t)), Some(t));
        assert_eq!(parse("2026-11-24T20:00:00+01:00"), parse("2026-11-24T19:00:00Z"));
        assert_eq!(parse("yesterday"), None);
        assert_eq!(to_api_gateway(&t), "24/Nov/2026:19:00:00 +0000");
    }
}
