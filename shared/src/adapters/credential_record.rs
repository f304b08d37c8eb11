//! A credential as both stores keep it: one record of named fields (the
//! SQLite columns, the DynamoDB attributes; the names are the same but for
//! [`Fields::QUOTA`]), and the one reading of such a record back into a
//! [`StoredCredential`].

use chrono::{DateTime, Utc};

use crate::domain::activity::ConsumerUses;
use crate::domain::endpoint::Endpoint;
use crate::domain::named_key::{KeyId, KeyMeta};
use crate::domain::{
    CheckState, CredentialStatus, ErrorReason, FailedAttempt, PreviousKey, PreviousNote, SealedKey, StoredCredential,
    UserId, provider,
};
use crate::ports::StoreError;
use crate::time;

/// A field that is missing where it must be, or that does not read as its type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unreadable(pub &'static str);

impl From<Unreadable> for StoreError {
    fn from(Unreadable(field): Unreadable) -> Self {
        StoreError::Internal(format!("stored record has no readable {field}"))
    }
}

/// One stored record's fields by name, as a store holds them: `Ok(None)`
/// for a field that is absent or null.
pub trait Fields {
    /// The name of the field holding the key's credit (JSON).
    const QUOTA: &'static str;

    /// A text field.
    fn text(&self, name: &'static str) -> Result<Option<String>, Unreadable>;

    /// A whole-number field.
    fn integer(&self, name: &'static str) -> Result<Option<i64>, Unreadable>;

    /// A binary field.
    fn bytes(&self, name: &'static str) -> Result<Option<Vec<u8>>, Unreadable>;
}

/// Typed reads of a record's fields; a missing required field, or one that
/// does not parse, is [`Unreadable`].
pub struct Read<'a, F>(pub &'a F);

impl<F: Fields> Read<'_, F> {
    /// A text field that must be there.
    pub fn text(&self, name: &'static str) -> Result<String, Unreadable> {
        self.0.text(name)?.ok_or(Unreadable(name))
    }

    /// A text field that may be absent.
    pub fn opt_text(&self, name: &'static str) -> Result<Option<String>, Unreadable> {
        self.0.text(name)
    }

    /// A number that must be there and fit `T`.
    pub fn number<T: TryFrom<i64>>(&self, name: &'static str) -> Result<T, Unreadable> {
        self.opt_number(name)?.ok_or(Unreadable(name))
    }

    /// A number that may be absent, and must fit `T` when present.
    pub fn opt_number<T: TryFrom<i64>>(&self, name: &'static str) -> Result<Option<T>, Unreadable> {
        self.0
            .integer(name)?
            .map(|n| T::try_from(n).map_err(|_| Unreadable(name)))
            .transpose()
    }

    /// A binary field that must be there.
    pub fn bytes(&self, name: &'static str) -> Result<Vec<u8>, Unreadable> {
        self.0.bytes(name)?.ok_or(Unreadable(name))
    }

    /// A time that must be there (stored as `time::to_stored` writes it).
    pub fn time(&self, name: &'static str) -> Result<DateTime<Utc>, Unreadable> {
        self.opt_time(name)?.ok_or(Unreadable(name))
    }

    /// A time that may be absent.
    pub fn opt_time(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, Unreadable> {
        self.opt_parsed(name, time::parse)
    }

    /// A text field that must be there and that `parse` understands.
    pub fn parsed<T>(&self, name: &'static str, parse: impl Fn(&str) -> Option<T>) -> Result<T, Unreadable> {
        self.opt_parsed(name, parse)?.ok_or(Unreadable(name))
    }

    /// A text field that may be absent, and that `parse` understands when present.
    pub fn opt_parsed<T>(
        &self,
        name: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, Unreadable> {
        self.0
            .text(name)?
            .map(|text| parse(&text).ok_or(Unreadable(name)))
            .transpose()
    }
}

/// Whether the record's `provider` is one this build knows: a credential of
/// another (a newer build's, after a rollback) is left out of a user's list,
/// not an error.
pub fn of_known_provider(fields: &impl Fields) -> bool {
    matches!(Read(fields).opt_parsed("provider", provider::find), Ok(Some(_)))
}

/// `user`'s credential from its record.
pub fn credential<F: Fields>(user: UserId, fields: &F) -> Result<StoredCredential, Unreadable> {
    let r = Read(fields);
    let sealed = sealed(&r)?;
    let check = CheckState {
        status: r.parsed("status", CredentialStatus::parse)?,
        reason: r.opt_parsed("status_reason", ErrorReason::parse)?,
        retry_after_secs: r.opt_number("retry_after_secs")?,
        checked_at: r.opt_time("last_checked_at")?,
        quota: r.opt_parsed(F::QUOTA, |json| serde_json::from_str(json).ok())?,
    };
    let last_attempt = match r.opt_time("last_attempt_at")? {
        None => None,
        Some(at) => Some(FailedAttempt {
            at,
            reason: r.parsed("last_attempt_reason", ErrorReason::parse)?,
            failures: r.number("attempt_failures")?,
        }),
    };
    // A record from before keys had ids is the first key, `default`.
    let default = KeyMeta::default_key();
    let key = KeyMeta {
        id: r.opt_parsed("key_ref", KeyId::parse)?.unwrap_or(default.id),
        name: r.opt_text("key_name")?.unwrap_or(default.name),
        priority: r.opt_number("priority")?.unwrap_or(default.priority),
        enabled: r
            .opt_number::<i64>("enabled")?
            .map_or(default.enabled, |flag| flag != 0),
    };
    Ok(StoredCredential {
        user_id: user,
        provider: r.parsed("provider", provider::find)?,
        key,
        sealed,
        key_hint: r.text("key_hint")?,
        endpoint: r.opt_parsed("endpoint", |url| Some(Endpoint::accepted(url.to_owned())))?,
        check,
        models_count: r.number("models_count")?,
        revision: r.text("revision")?,
        created_at: r.time("created_at")?,
        updated_at: r.time("updated_at")?,
        last_used_at: r.opt_time("last_used_at")?,
        consumer_uses: r
            .opt_parsed("consumer_uses", ConsumerUses::from_json)?
            .unwrap_or_default(),
        last_recheck_at: r.opt_time("last_recheck_at")?,
        last_attempt,
        cooling_until: r.opt_time("cooling_until")?,
        previous: match r.opt_time("previous_until")? {
            None => None,
            Some(kept_until) => Some(PreviousNote {
                key_hint: r.text("previous_hint")?,
                kept_until,
            }),
        },
    })
}

/// The sealed key of a record (a credential's, or a previous version's).
fn sealed<F: Fields>(r: &Read<'_, F>) -> Result<SealedKey, Unreadable> {
    Ok(SealedKey {
        format_version: r.number("format_version")?,
        key_id: r.text("key_id")?,
        wrapped_data_key: r.bytes("wrapped_data_key")?,
        nonce: r.bytes("nonce")?,
        ciphertext: r.bytes("ciphertext")?,
    })
}

/// A previous version from its record: the sealed key's fields, `key_hint`
/// and `endpoint` as a credential's, `replaced_at` and `kept_until`.
pub fn previous_key<F: Fields>(fields: &F) -> Result<PreviousKey, Unreadable> {
    let r = Read(fields);
    Ok(PreviousKey {
        sealed: sealed(&r)?,
        key_hint: r.text("key_hint")?,
        endpoint: r.opt_parsed("endpoint", |url| Some(Endpoint::accepted(url.to_owned())))?,
        replaced_at: r.time("replaced_at")?,
        kept_until: r.time("kept_until")?,
    })
}

/// A page of `limit` entries from `entries`, read newest first with one
/// more than the page holds: that one, if there, says a next page exists.
pub fn page_of(
    mut entries: Vec<crate::domain::activity::ActivityEntry>,
    limit: usize,
) -> crate::domain::activity::ActivityPage {
    let more = entries.len() > limit;
    entries.truncate(limit);
    let next = if more {
        entries.last().map(|e| e.position())
    } else {
        None
    };
    crate::domain::activity::ActivityPage { entries, next }
}
