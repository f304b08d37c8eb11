//! The Lambda functions, each declared once: its crate, what invokes it, what
//! it may touch, its limits. `template.yaml` is rendered from these
//! declarations, the providers of [`crate::domain::provider::PROVIDERS`] and
//! the hand-edited `template.base.yaml` (the renderer is [`template`], behind
//! the `deploy` feature); the tests, the benchmark and `scripts/` read the
//! same list. A function is its crate `functions/<name>/` plus one entry of
//! [`FUNCTIONS`].
//!
//! Data only, no I/O: the Lambda binaries link none of it.

#[cfg(feature = "deploy")]
pub mod template;

use crate::handlers::Route;

/// What invokes a function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A REST route of the HTTP API (JWT authorizer in front).
    Rest(Route),
    /// The WebSocket API's `$connect` authorizer.
    WebSocketAuthorizer,
    /// A WebSocket route (`$connect`, `$disconnect`, `$default` or an action).
    WebSocket {
        /// The route key.
        route_key: &'static str,
        /// The function's answer goes back to the client (a route response).
        two_way: bool,
    },
    /// An EventBridge schedule (the `RevalidateSchedule` parameter).
    Schedule,
    /// Other MailMind functions invoke it directly (`lambda:InvokeFunction`).
    Invoke,
}

/// A permission of a function's role. Logs come with every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// DynamoDB actions on the table's items, as one inline statement.
    Table {
        /// The statement's `Sid`.
        sid: &'static str,
        /// `dynamodb:<Action>` names.
        actions: &'static [&'static str],
    },
    /// Read, write and delete the table's items (`ReadWriteOwnItemsPolicy`).
    ReadWriteTable,
    /// `Query` on the due index only (background re-validation; never a Scan).
    QueryDueIndex,
    /// New data keys: KMS `GenerateDataKey` (`SealKeysPolicy` and the key policy).
    SealKeys,
    /// Unwrap stored data keys: KMS `Decrypt` (`OpenKeysPolicy` and the key policy).
    OpenKeys,
    /// Push to the users' WebSocket connections (`PushToConnectionsPolicy`).
    PushToConnections,
    /// Publish status changes to the default event bus: `events:PutEvents`
    /// (inline), `STATUS_EVENTS=eventbridge`.
    PublishStatusEvents,
    /// Hand the `rejected` usage reports, whose re-check opens the key, to
    /// the named function (which holds [`Grant::OpenKeys`]): invoke it, by
    /// `REPORT_RELAY_FUNCTION`.
    RelayReportsTo(&'static str),
}

/// One Lambda function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    /// Crate and binary under `functions/<name>/`; deployed as `<stack>-<name>`.
    pub name: &'static str,
    /// One line: what it serves and does (the function's description).
    pub summary: &'static str,
    /// Why it is configured as it is, for the reader of the template.
    pub notes: &'static str,
    /// What invokes it.
    pub trigger: Trigger,
    /// What its role may do besides logging.
    pub grants: &'static [Grant],
    /// It validates keys on a user's behalf: it spends the per-user validation
    /// budget, gets the validation throttling and reserved concurrency.
    pub spends_validation_budget: bool,
    /// The template parameter that reserves (and caps) its concurrency,
    /// `<Stem>ReservedConcurrency`, 0 meaning none; the template's condition
    /// `Reserve<Stem>Concurrency` says whether it is set.
    pub reserved_concurrency: Option<&'static str>,
    /// Environment variables besides those the grants imply, as
    /// (name, template value) pairs; values are YAML, e.g. `!Ref Parameter`.
    pub environment: &'static [(&'static str, &'static str)],
    /// Seconds; [`DEFAULT_TIMEOUT_SECS`] unless it calls providers.
    pub timeout_secs: u32,
    /// Megabytes.
    pub memory_mb: u32,
}

/// The timeout of a function that only reads or writes the table (every SDK
/// call gives up well within it, `shared/src/deadline.rs`).
pub const DEFAULT_TIMEOUT_SECS: u32 = 10;

/// The timeout of a function that asks a provider: the request's 25 s
/// deadline plus the final push, inside the HTTP API's 30 s.
pub const PROVIDER_TIMEOUT_SECS: u32 = 29;

/// Lambda's smallest size, which every function fits: the largest peak, a
/// validation with an 1800-model catalogue, is 12.5 MB (docs/PERFORMANCE.md).
pub const DEFAULT_MEMORY_MB: u32 = 128;

const BASE: FunctionSpec = FunctionSpec {
    name: "",
    summary: "",
    notes: "",
    trigger: Trigger::Invoke,
    grants: &[],
    spends_validation_budget: false,
    reserved_concurrency: None,
    environment: &[],
    timeout_secs: DEFAULT_TIMEOUT_SECS,
    memory_mb: DEFAULT_MEMORY_MB,
};

/// What the functions that validate a key on a user's behalf hold: they read
/// and record the credential, spend the validation budget (an `UpdateItem`),
/// and push `checking` and the verdict.
const VALIDATING: FunctionSpec = FunctionSpec {
    spends_validation_budget: true,
    reserved_concurrency: Some("ValidationReservedConcurrency"),
    timeout_secs: PROVIDER_TIMEOUT_SECS,
    ..BASE
};

/// What checking a stored key takes: open it, record and push the verdict,
/// publish a change (the check route and the socket's `check`).
const CHECKS_STORED_KEYS: &[Grant] = &[
    Grant::ReadWriteTable,
    Grant::OpenKeys,
    Grant::PushToConnections,
    Grant::PublishStatusEvents,
];

/// What storing a new key takes: seal it, then as a check (create, update).
const STORES_NEW_KEYS: &[Grant] = &[
    Grant::ReadWriteTable,
    Grant::SealKeys,
    Grant::PushToConnections,
    Grant::PublishStatusEvents,
];

/// What a function that replaces keys reads: how long the replaced one is
/// kept to roll back to (update, rotation, rollback).
const KEEPS_PREVIOUS_KEYS: &[(&str, &str)] = &[("PREVIOUS_KEY_DAYS", "!Ref PreviousKeyDays")];

/// Every function, sorted by name.
pub static FUNCTIONS: &[FunctionSpec] = &[
    FunctionSpec {
        name: "credentials-activity",
        summary: "GET /api/v1/credentials/{provider}/activity - a key's history, newest first",
        notes: "One Query of the user's ACTIVITY#<provider># items, backwards, a page plus one;                 reads only.",
        trigger: Trigger::Rest(Route::CredentialActivity),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["Query"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "credentials-check",
        summary: "POST /api/v1/credentials/{provider}/check - revalidate a stored key",
        trigger: Trigger::Rest(Route::CheckCredential),
        grants: CHECKS_STORED_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "credentials-create",
        summary: "POST /api/v1/credentials - store, validate and discover models of a new key",
        notes: "A validation holds one provider page (at most 4 MiB, read incrementally) and a \
                model list of at most 10 000 models / 2 MiB of JSON plus its deflated copy: \
                measured peak 12.5 MB with an 1800-model catalogue, so 128 MB holds the worst \
                case several times over. Same for update, check and ws-check.",
        trigger: Trigger::Rest(Route::CreateCredential),
        grants: STORES_NEW_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "credentials-delete",
        summary: "DELETE /api/v1/credentials/{provider} - remove a key and its models",
        notes: "One Query of the provider's keys, then every key and its model list in one \
                TransactWriteItems of deletes; then the deleted entry of the key's history \
                (PutItem; the history stays).",
        trigger: Trigger::Rest(Route::DeleteCredential),
        grants: &[Grant::Table {
            sid: "DeleteOwnItemsNoteActivity",
            actions: &["Query", "DeleteItem", "PutItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "credentials-get",
        summary: "GET /api/v1/credentials/{provider} - status of the provider's primary key",
        notes: "One Query of the provider's keys.",
        trigger: Trigger::Rest(Route::GetCredential),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["Query"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "credentials-list",
        summary: "GET /api/v1/credentials - status of every provider's key",
        trigger: Trigger::Rest(Route::ListCredentials),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["Query"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "credentials-resolve",
        summary: "Resolve a user's key for another MailMind function; take its usage reports",
        notes: "Reads the credential and answers it sealed: it holds no KMS permission, the \
                consumer opens the key with its own kms:Decrypt (KeyConsumerRoleArns). A \
                consumer's first use in the hour writes last_used_at, its consumer map and a used \
                entry in one TransactWriteItems (later ones write nothing); a report records a \
                status and pushes to the user's sockets, and a rejected one is relayed to \
                credentials-revalidate, which re-checks with the provider (hence the provider \
                timeout). Consumers' roles attach KeyConsumerPolicy.",
        trigger: Trigger::Invoke,
        grants: &[
            Grant::ReadWriteTable,
            Grant::PushToConnections,
            Grant::RelayReportsTo("credentials-revalidate"),
            Grant::PublishStatusEvents,
        ],
        reserved_concurrency: Some("ResolveReservedConcurrency"),
        timeout_secs: PROVIDER_TIMEOUT_SECS,
        ..BASE
    },
    FunctionSpec {
        name: "credentials-revalidate",
        summary: "Scheduled - re-checks credentials whose verdict is older than RevalidateAfter; runs relayed rejected reports",
        notes: "Invoked by credentials-resolve with a rejected usage report, it answers as \
                resolve would (the re-check opens the key). On its schedule it \
                finds due credentials through DueIndex, claims each with a conditional write \
                (overlapping runs never check one twice), checks with the provider \
                (RevalidateConcurrency per provider), stores and pushes the verdict. It claims \
                nothing new after REVALIDATE_BUDGET (10 minutes); the checks in flight then \
                finish, within Lambda's maximum of 900 s.",
        trigger: Trigger::Schedule,
        grants: &[
            Grant::ReadWriteTable,
            Grant::QueryDueIndex,
            Grant::OpenKeys,
            Grant::PushToConnections,
            Grant::PublishStatusEvents,
        ],
        environment: &[
            ("REVALIDATE_AFTER", "!Ref RevalidateAfter"),
            ("REVALIDATE_BUDGET", "10m"),
            ("REVALIDATE_CONCURRENCY", "!Ref RevalidateConcurrency"),
        ],
        timeout_secs: 900,
        ..BASE
    },
    FunctionSpec {
        name: "credentials-update",
        summary: "PUT /api/v1/credentials/{provider} - replace, validate and rediscover a key",
        trigger: Trigger::Rest(Route::UpdateCredential),
        grants: STORES_NEW_KEYS,
        environment: KEEPS_PREVIOUS_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "keys-check",
        summary: "POST /api/v1/credentials/{provider}/keys/{key_id}/check - revalidate one named key",
        notes: "The check route's work on one key: GetItem instead of the provider's Query.",
        trigger: Trigger::Rest(Route::CheckKey),
        grants: CHECKS_STORED_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "keys-create",
        summary: "POST /api/v1/credentials/{provider}/keys - add another named key",
        notes: "A create's work (seal, check, one TransactWriteItems), after one Query of the \
                provider's keys for the limit and the names.",
        trigger: Trigger::Rest(Route::CreateKey),
        grants: STORES_NEW_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "keys-delete",
        summary: "DELETE /api/v1/credentials/{provider}/keys/{key_id} - remove one key and its models",
        notes: "One TransactWriteItems of deletes; then the deleted entry of the history (PutItem).",
        trigger: Trigger::Rest(Route::DeleteKey),
        grants: &[Grant::Table {
            sid: "DeleteOwnItemsNoteActivity",
            actions: &["DeleteItem", "PutItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "keys-get",
        summary: "GET /api/v1/credentials/{provider}/keys/{key_id} - status of one named key",
        trigger: Trigger::Rest(Route::GetKey),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["GetItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "keys-list",
        summary: "GET /api/v1/credentials/{provider}/keys - the provider's keys in order",
        trigger: Trigger::Rest(Route::ListKeys),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["Query"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "keys-models",
        summary: "GET /api/v1/credentials/{provider}/keys/{key_id}/models - discovered models of one key",
        notes: "The key and its list: GetItem each (TransactGetItems for a chunked list).",
        trigger: Trigger::Rest(Route::KeyModels),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["GetItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "keys-patch",
        summary: "PATCH /api/v1/credentials/{provider}/keys/{key_id} - rename, reorder or switch a key",
        notes: "One Query (the names), one conditional UpdateItem.",
        trigger: Trigger::Rest(Route::PatchKey),
        grants: &[Grant::Table {
            sid: "ReadUpdateOwnItems",
            actions: &["Query", "UpdateItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "keys-rollback",
        summary: "POST /api/v1/credentials/{provider}/keys/{key_id}/rollback - restore a key's previous version",
        notes: "Reads the kept version (GetItem), opens it (Decrypt) and checks it again; only a \
                valid one is restored, as sealed (no new data key), in one TransactWriteItems \
                that keeps the key it replaces.",
        trigger: Trigger::Rest(Route::RollbackKey),
        grants: CHECKS_STORED_KEYS,
        environment: KEEPS_PREVIOUS_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "keys-update",
        summary: "PUT /api/v1/credentials/{provider}/keys/{key_id} - rotate a named key, swapping only a valid one",
        notes: "An update's work on one key (Query, seal, check, one TransactWriteItems); without \
                a valid verdict nothing is written.",
        trigger: Trigger::Rest(Route::ReplaceKey),
        grants: STORES_NEW_KEYS,
        environment: KEEPS_PREVIOUS_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "models-list",
        summary: "GET /api/v1/credentials/{provider}/models - what the provider's usable keys unlock",
        notes: "One Query of the provider's keys, then each enabled, valid key's list (GetItem, \
                or TransactGetItems for a chunked one).",
        trigger: Trigger::Rest(Route::ListModels),
        grants: &[Grant::Table {
            sid: "ReadOwnItems",
            actions: &["Query", "GetItem"],
        }],
        ..BASE
    },
    FunctionSpec {
        name: "ws-authorizer",
        summary: "WebSocket $connect authorizer - verifies the token query parameter",
        notes: "RS256 against JwtIssuer's JWKS (docs/OPERATIONS.md, Configuration); a cold \
                JWKS fetch is bounded at 4 s. Reads no table.",
        trigger: Trigger::WebSocketAuthorizer,
        environment: &[
            ("JWT_ISSUER", "!Ref JwtIssuer"),
            ("JWT_AUDIENCE", "!Join [\",\", !Ref JwtAudience]"),
        ],
        timeout_secs: 5,
        ..BASE
    },
    FunctionSpec {
        name: "ws-check",
        summary: "WebSocket check - revalidate a stored key asked for over the socket",
        notes: "The REST check's work and permissions; a check that cannot run is answered on \
                this socket only, the verdict is pushed to all of the user's sockets.",
        trigger: Trigger::WebSocket {
            route_key: "check",
            two_way: true,
        },
        grants: CHECKS_STORED_KEYS,
        ..VALIDATING
    },
    FunctionSpec {
        name: "ws-connect",
        summary: "WebSocket $connect - remembers the connection for its user",
        notes: "USER#<sub> / CONN#<connection id>, expiring (TTL); counted (Query) against \
                MaxConnectionsPerUser and forgotten again (DeleteItem) when over it.",
        trigger: Trigger::WebSocket {
            route_key: "$connect",
            two_way: false,
        },
        grants: &[Grant::Table {
            sid: "RememberConnection",
            actions: &["PutItem", "Query", "DeleteItem"],
        }],
        environment: &[("MAX_CONNECTIONS_PER_USER", "!Ref MaxConnectionsPerUser")],
        ..BASE
    },
    FunctionSpec {
        name: "ws-default",
        summary: "WebSocket $default - answers ping with pong",
        notes: "Answers {\"action\":\"ping\"} and unknown actions itself: no AWS permission.",
        trigger: Trigger::WebSocket {
            route_key: "$default",
            two_way: true,
        },
        ..BASE
    },
    FunctionSpec {
        name: "ws-disconnect",
        summary: "WebSocket $disconnect - forgets the connection",
        notes: "The user comes from the authorizer context of the connection.",
        trigger: Trigger::WebSocket {
            route_key: "$disconnect",
            two_way: false,
        },
        grants: &[Grant::Table {
            sid: "ForgetConnection",
            actions: &["DeleteItem"],
        }],
        ..BASE
    },
];

impl FunctionSpec {
    /// The template's logical id stem: `credentials-check` → `CredentialsCheck`
    /// (the function is `<stem>Function`, its role `<stem>FunctionRole`).
    pub fn logical_stem(&self) -> String {
        upper_camel(self.name)
    }

    /// The function's logical id in the template, e.g. `CredentialsCheckFunction`.
    pub fn logical_id(&self) -> String {
        format!("{}Function", self.logical_stem())
    }

    /// Whether its role holds `grant`.
    pub fn holds(&self, grant: Grant) -> bool {
        self.grants.contains(&grant)
    }

    /// Whether it opens or seals keys (and so needs the KMS key's id).
    pub fn uses_key(&self) -> bool {
        self.holds(Grant::SealKeys) || self.holds(Grant::OpenKeys)
    }

    /// The template condition under which its concurrency is reserved.
    pub fn reserved_concurrency_condition(&self) -> Option<String> {
        let parameter = self.reserved_concurrency?;
        let stem = parameter.strip_suffix("ReservedConcurrency").unwrap_or(parameter);
        Some(format!("Reserve{stem}Concurrency"))
    }

    /// The REST route it serves, if any.
    pub fn route(&self) -> Option<Route> {
        match self.trigger {
            Trigger::Rest(route) => Some(route),
            _ => None,
        }
    }
}

/// `credentials-check`, `$connect`, `google_gemini` → `CredentialsCheck`,
/// `Connect`, `GoogleGemini`: names as CloudFormation logical ids.
pub fn upper_camel(name: &str) -> String {
    name.split(['-', '_', '$'])
        .map(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The function declared under `name`.
pub fn function(name: &str) -> Option<&'static FunctionSpec> {
    FUNCTIONS.iter().find(|f| f.name == name)
}

/// The function that serves a REST route.
pub fn function_of(route: Route) -> &'static FunctionSpec {
    FUNCTIONS
        .iter()
        .find(|f| f.route() == Some(route))
        .unwrap_or_else(|| unreachable!("every route has its function: see the test below"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn functions_are_sorted_unique_and_every_route_has_exactly_one() {
        assert!(
            FUNCTIONS.windows(2).all(|pair| pair[0].name < pair[1].name),
            "FUNCTIONS must be sorted by name without duplicates"
        );
        for route in Route::ALL {
            let serving = FUNCTIONS.iter().filter(|f| f.route() == Some(route)).count();
            assert_eq!(serving, 1, "{route:?} needs exactly one function in FUNCTIONS");
        }
        for f in FUNCTIONS {
            assert!(!f.summary.is_empty(), "{}: a summary", f.name);
            assert!(f.timeout_secs >= 1 && f.timeout_secs <= 900, "{}", f.name);
            assert!(f.memory_mb >= 128 && f.memory_mb <= 10_240, "{}", f.name);
            if f.spends_validation_budget {
                assert!(
                    f.timeout_secs >= PROVIDER_TIMEOUT_SECS,
                    "{}: it asks a provider",
                    f.name
                );
            }
        }
    }

    #[test]
    fn reports_are_relayed_to_a_declared_function_that_opens_keys() {
        for f in FUNCTIONS {
            for grant in f.grants {
                if let Grant::RelayReportsTo(target) = grant {
                    let target = function(target).unwrap_or_else(|| panic!("{}: no function {target}", f.name));
                    assert!(target.holds(Grant::OpenKeys), "{} cannot open keys", target.name);
                    assert!(target.timeout_secs >= f.timeout_secs, "{} times out first", target.name);
                }
            }
        }
    }

    #[test]
    fn logical_ids_round_trip_the_names() {
        assert_eq!(function("ws-check").unwrap().logical_id(), "WsCheckFunction");
        assert_eq!(function("credentials-list").unwrap().logical_stem(), "CredentialsList");
        assert_eq!(function_of(Route::ListModels).name, "models-list");
    }
}
