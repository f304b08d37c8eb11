//! What other MailMind functions say after using a user's key, and what the
//! service made of it.

use super::wire_enum::wire_enum;

wire_enum! {
    /// How the provider refused a key a MailMind function used.
    pub enum UsageOutcome {
        /// The provider said the key is not valid (401/403): re-checked.
        Rejected = "rejected",
        /// The account is out of quota or credit: recorded as the status.
        QuotaExhausted = "quota_exhausted",
        /// The provider is rate limiting: counted, the status stays.
        RateLimited = "rate_limited",
    }
}

wire_enum! {
    /// What a usage report did.
    pub enum ReportResult {
        /// The key was checked with the provider again; the verdict is stored.
        Rechecked = "rechecked",
        /// The report was recorded without asking the provider.
        Recorded = "recorded",
        /// The key was re-checked moments ago: nothing was done.
        Debounced = "debounced",
        /// The report is about a key that has been replaced: nothing was done.
        Stale = "stale",
    }
}
