//! A key's activity history, as the user sees it
//! (`GET /api/v1/credentials/{provider}/activity`): what was done to the key
//! and by whom, newest first, kept [`RETENTION`]. Never the key itself.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, SubsecRound as _, Utc};
use serde::{Deserialize, Serialize};

use super::credential::{CredentialStatus, ErrorReason};
use super::usage::UsageOutcome;
use super::wire_enum::wire_enum;
use crate::time;

/// How long an entry is kept (DynamoDB TTL, SQLite pruning).
pub const RETENTION: chrono::Duration = chrono::Duration::days(90);

/// Most consumers a credential remembers the last recorded use of; the
/// oldest is dropped beyond this.
pub const MAX_CONSUMERS: usize = 20;

/// Most entries per page, and the default.
pub const MAX_PAGE: usize = 100;
/// Entries per page when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 50;

wire_enum! {
    /// Who had a stored key checked, or otherwise caused a change of its status.
    pub enum CheckedBy {
        /// The user (the check route or the socket's `check`).
        User = "user",
        /// A consumer's `rejected` usage report.
        Report = "report",
        /// Background re-validation.
        Background = "background",
    }
}

/// What happened to a key. Serialized with its name in `event`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ActivityEvent {
    /// A first key was stored.
    Set {
        /// The new key's hint.
        key_hint: String,
    },
    /// The key was replaced by a new one.
    Replaced {
        /// The new key's hint.
        key_hint: String,
    },
    /// The stored key was checked with the provider.
    Checked {
        /// The verdict.
        status: CredentialStatus,
        /// Why there is no verdict (status `error`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<ErrorReason>,
        /// Who had it checked.
        by: CheckedBy,
    },
    /// A MailMind function obtained the key (at most one entry per consumer per hour).
    Used {
        /// The caller's self-chosen label.
        consumer: String,
    },
    /// A MailMind function reported that the provider refused the key.
    Reported {
        /// What the provider did.
        outcome: UsageOutcome,
        /// The caller's self-chosen label.
        consumer: String,
    },
    /// The credential was deleted.
    Deleted,
}

impl ActivityEvent {
    /// The `event` name.
    pub fn name(&self) -> &'static str {
        match self {
            ActivityEvent::Set { .. } => "set",
            ActivityEvent::Replaced { .. } => "replaced",
            ActivityEvent::Checked { .. } => "checked",
            ActivityEvent::Used { .. } => "used",
            ActivityEvent::Reported { .. } => "reported",
            ActivityEvent::Deleted => "deleted",
        }
    }
}

/// One entry of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityEntry {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Random hex, so two entries of one millisecond are both kept.
    pub id: String,
    /// What happened.
    pub event: ActivityEvent,
}

impl ActivityEntry {
    /// An entry for `event` at `at` (to the millisecond, as stored), with a fresh id.
    pub fn new(at: DateTime<Utc>, event: ActivityEvent) -> ActivityEntry {
        ActivityEntry {
            at: at.trunc_subsecs(3),
            id: crate::ids::random_hex(8),
            event,
        }
    }

    /// Where it sorts: `<stored time>#<id>` (fixed-width times sort as text).
    pub fn position(&self) -> ActivityPosition {
        ActivityPosition(format!("{}#{}", time::to_stored(&self.at), self.id))
    }

    /// When a store may forget it (epoch seconds, DynamoDB TTL).
    pub fn expires_at(&self) -> i64 {
        (self.at + RETENTION).timestamp()
    }

    /// The event as stored (JSON text).
    pub fn detail_json(&self) -> String {
        serde_json::to_string(&self.event).unwrap_or_else(|_| r#"{"event":"deleted"}"#.to_owned())
    }

    /// An entry back from its stored position and detail.
    pub fn from_stored(position: &str, detail: &str) -> Option<ActivityEntry> {
        let (at, id) = ActivityPosition::parse(position)?;
        let event = serde_json::from_str(detail).ok()?;
        Some(ActivityEntry { at, id, event })
    }
}

/// An entry's place in the history, `<stored time>#<id>`: the end of a
/// store's sort key, and (encoded) the paging cursor.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ActivityPosition(pub String);

impl ActivityPosition {
    fn parse(text: &str) -> Option<(DateTime<Utc>, String)> {
        let (at, id) = text.split_once('#')?;
        let parsed = time::parse(at)?;
        let valid_id = !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
        (valid_id && time::to_stored(&parsed) == at).then(|| (parsed, id.to_owned()))
    }

    /// The opaque cursor of the API.
    pub fn to_cursor(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.as_bytes())
    }

    /// A cursor read back; `None` when it is not one this service gave out.
    pub fn from_cursor(cursor: &str) -> Option<ActivityPosition> {
        if cursor.len() > 128 {
            return None;
        }
        let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        ActivityPosition::parse(&text).map(|_| ActivityPosition(text))
    }
}

/// Which page of a history to read: up to `limit` entries older than `before`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityQuery {
    /// The most entries to return (1..=[`MAX_PAGE`]).
    pub limit: usize,
    /// Only entries older than this (the cursor), if given.
    pub before: Option<ActivityPosition>,
    /// The clock: entries expired by then are not returned.
    pub now: DateTime<Utc>,
}

/// One page of a history, newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivityPage {
    /// The entries.
    pub entries: Vec<ActivityEntry>,
    /// Where the next page starts, if there is one.
    pub next: Option<ActivityPosition>,
}

/// A consumer's name, as the caller of `credentials-resolve` chose it: a
/// label, not proof of who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer(String);

impl Consumer {
    /// The name recorded when the caller gives none.
    pub const UNKNOWN: &'static str = "unknown";
    /// Longest accepted name.
    pub const MAX_LEN: usize = 128;

    /// 1 to 128 printable ASCII characters.
    pub fn parse(name: &str) -> Option<Consumer> {
        let valid =
            !name.is_empty() && name.len() <= Self::MAX_LEN && name.bytes().all(|b| b.is_ascii_graphic() || b == b' ');
        valid.then(|| Consumer(name.to_owned()))
    }

    /// `unknown`.
    pub fn unknown() -> Consumer {
        Consumer(Self::UNKNOWN.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Per consumer, the time its last `used` entry was recorded: kept on the
/// credential, so a resolve knows without another read whether this hour's
/// entry exists. At most [`MAX_CONSUMERS`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConsumerUses(BTreeMap<String, DateTime<Utc>>);

impl ConsumerUses {
    /// Whether `consumer`'s use was recorded at or after `since`.
    pub fn recorded_since(&self, consumer: &Consumer, since: DateTime<Utc>) -> bool {
        self.0.get(consumer.as_str()).is_some_and(|t| *t >= since)
    }

    /// These uses with `consumer`'s at `at`, the oldest dropped beyond [`MAX_CONSUMERS`].
    pub fn with_use(&self, consumer: &Consumer, at: DateTime<Utc>) -> ConsumerUses {
        let mut uses = self.0.clone();
        uses.insert(consumer.as_str().to_owned(), at);
        while uses.len() > MAX_CONSUMERS {
            let oldest = uses.iter().min_by_key(|(_, t)| **t).map(|(name, _)| name.clone());
            match oldest {
                Some(name) => uses.remove(&name),
                None => break,
            };
        }
        ConsumerUses(uses)
    }

    /// How many consumers it remembers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it remembers none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The stored form: a JSON object of consumer → stored time, always the
    /// same text for the same map (stores compare it in their conditions).
    pub fn to_json(&self) -> String {
        let map: BTreeMap<&str, String> = self.0.iter().map(|(k, v)| (k.as_str(), time::to_stored(v))).collect();
        serde_json::to_string(&map).unwrap_or_else(|_| "{}".to_owned())
    }

    /// The stored form read back; `None` when it is not one.
    pub fn from_json(json: &str) -> Option<ConsumerUses> {
        let map: BTreeMap<String, String> = serde_json::from_str(json).ok()?;
        map.into_iter()
            .map(|(k, v)| time::parse(&v).map(|t| (k, t)))
            .collect::<Option<BTreeMap<_, _>>>()
            .map(ConsumerUses)
    }
}

// One line a kind: the wire strings at a glance.
wire_enum! {
    /// The `event` of an entry.
    pub enum ActivityKind {
        #[doc = "A first key was stored (`key_hint`)."] Set = "set",
        #[doc = "The key was replaced (`key_hint` of the new one)."] Replaced = "replaced",
        #[doc = "The key was checked (`status`, `reason`, `by`)."] Checked = "checked",
        #[doc = "A MailMind function obtained the key (`consumer`; at most one entry per consumer per hour)."] Used = "used",
        #[doc = "A MailMind function reported a refusal (`outcome`, `consumer`)."] Reported = "reported",
        #[doc = "The credential was deleted."] Deleted = "deleted",
    }
}

/// One entry of `GET /api/v1/credentials/{provider}/activity` (docs/API.md).
/// Never holds the key.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityEntryView {
    /// RFC 3339 time of the event.
    #[cfg_attr(feature = "openapi", schema(example = "2026-11-24T19:00:00Z", format = DateTime))]
    pub at: String,
    /// What happened.
    pub event: ActivityKind,
    /// `set`, `replaced`: the hint of the new key.
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "gsk_…9xQa"))]
    pub key_hint: Option<String>,
    /// `checked`: the verdict.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub status: Option<CredentialStatus>,
    /// `checked` with status `error`: why there is no verdict.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub reason: Option<ErrorReason>,
    /// `checked`: who had it checked.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub by: Option<CheckedBy>,
    /// `used`, `reported`: the name the calling MailMind function gave
    /// itself (a label, not proof; `unknown` when it gave none).
    #[cfg_attr(feature = "openapi", schema(nullable = false, example = "digest"))]
    pub consumer: Option<String>,
    /// `reported`: how the provider refused the key.
    #[cfg_attr(feature = "openapi", schema(nullable = false))]
    pub outcome: Option<UsageOutcome>,
}

impl ActivityEntryView {
    /// The wire form of `entry`.
    pub fn of(entry: &ActivityEntry) -> ActivityEntryView {
        let mut view = ActivityEntryView {
            at: time::to_api(&entry.at),
            event: ActivityKind::Deleted,
            key_hint: None,
            status: None,
            reason: None,
            by: None,
            consumer: None,
            outcome: None,
        };
        match &entry.event {
            ActivityEvent::Set { key_hint } => {
                view.event = ActivityKind::Set;
                view.key_hint = Some(key_hint.clone());
            }
            ActivityEvent::Replaced { key_hint } => {
                view.event = ActivityKind::Replaced;
                view.key_hint = Some(key_hint.clone());
            }
            ActivityEvent::Checked { status, reason, by } => {
                view.event = ActivityKind::Checked;
                (view.status, view.reason, view.by) = (Some(*status), *reason, Some(*by));
            }
            ActivityEvent::Used { consumer } => {
                view.event = ActivityKind::Used;
                view.consumer = Some(consumer.clone());
            }
            ActivityEvent::Reported { outcome, consumer } => {
                view.event = ActivityKind::Reported;
                (view.outcome, view.consumer) = (Some(*outcome), Some(consumer.clone()));
            }
            ActivityEvent::Deleted => {}
        }
        view
    }
}

/// The answer of `GET /api/v1/credentials/{provider}/activity`.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, Serialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActivityPageView {
    /// The entries, newest first.
    pub entries: Vec<ActivityEntryView>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[cfg_attr(
        feature = "openapi",
        schema(
            nullable = false,
            example = "MjAyNi0xMS0yNFQxOTowMDowMC4wMDBaIzBhMWIyYzNkNGU1ZjZhN2I"
        )
    )]
    pub next_cursor: Option<String>,
}

impl ActivityPageView {
    /// The wire form of `page`.
    pub fn of(page: &ActivityPage) -> ActivityPageView {
        ActivityPageView {
            entries: page.entries.iter().map(ActivityEntryView::of).collect(),
            next_cursor: page.next.as_ref().map(ActivityPosition::to_cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn events_serialize_with_their_name() {
        let checked = ActivityEvent::Checked {
            status: CredentialStatus::Error,
            reason: Some(ErrorReason::Timeout),
            by: CheckedBy::Background,
        };
        let json = serde_json::to_value(&checked).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"event": "checked", "status": "error", "reason": "timeout", "by": "background"})
        );
        assert_eq!(serde_json::from_value::<ActivityEvent>(json).unwrap(), checked);
        assert_eq!(
            serde_json::to_value(ActivityEvent::Deleted).unwrap(),
            serde_json::json!({"event": "deleted"})
        );
    }

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let entry = ActivityEntry::new(at(0), ActivityEvent::Deleted);
        let position = entry.position();
        assert_eq!(
            ActivityPosition::from_cursor(&position.to_cursor()),
            Some(position.clone())
        );
        let back = ActivityEntry::from_stored(&position.0, &entry.detail_json()).unwrap();
        assert_eq!(back, entry);
        for bad in ["", "x", "!!!!", &URL_SAFE_NO_PAD.encode("2026-01-01T00:00:00.000Z#zz")] {
            assert_eq!(ActivityPosition::from_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn consumer_names_are_printable_ascii_up_to_128() {
        assert!(Consumer::parse("digest-function").is_some());
        assert!(Consumer::parse(&"a".repeat(128)).is_some());
        assert!(Consumer::parse(&"a".repeat(129)).is_none());
        assert!(Consumer::parse("").is_none());
        assert!(Consumer::parse("tab\there").is_none());
        assert!(Consumer::parse("é").is_none());
    }

    #[test]
    fn consumer_uses_keep_the_newest_twenty() {
        let mut uses = ConsumerUses::default();
        for i in 0..25 {
            uses = uses.with_use(&Consumer::parse(&format!("c{i}")).unwrap(), at(i));
        }
        assert_eq!(uses.len(), MAX_CONSUMERS);
        assert!(!uses.recorded_since(&Consumer::parse("c4").unwrap(), at(0)));
        assert!(uses.recorded_since(&Consumer::parse("c5").unwrap(), at(5)));
        assert!(!uses.recorded_since(&Consumer::parse("c5").unwrap(), at(6)));
        assert_eq!(ConsumerUses::from_json(&uses.to_json()), Some(uses));
    }
}
