//! Several named keys per provider over the local server: added, listed,
//! renamed, reordered, switched off and deleted; the provider routes act on
//! the primary key (the first enabled one) and list every key in brief.

use serde_json::{Value, json};

use super::{GROQ_KEY, GROQ_KEY_2, GROQ_MODELS, assert_error, world};

const KEYS: &str = "/api/v1/credentials/groq/keys/";

async fn add(w: &super::World, user: &str, body: Value) -> mailmind_tests::local_server::Answer {
    w.server.call_as(user, "POST", KEYS, Some(&body.to_string())).await
}

async fn patch(w: &super::World, user: &str, key_id: &str, body: Value) -> mailmind_tests::local_server::Answer {
    w.server
        .call_as(user, "PATCH", &format!("{KEYS}{key_id}/"), Some(&body.to_string()))
        .await
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|k| k["key_id"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn named_keys_are_added_ordered_switched_and_deleted_and_the_provider_routes_follow_the_primary() {
    let w = world().await;
    let empty = w.server.call_as("alice", "GET", KEYS, None).await;
    assert_eq!((empty.status, &empty.json), (200, &json!([])));

    // The first key is `default`; the next gets an id of its own, placed after it.
    let work = add(&w, "alice", json!({"name": " work ", "api_key": GROQ_KEY})).await;
    assert_eq!(work.status, 201, "{}", work.text);
    assert_eq!(
        (
            &work.json["key_id"],
            &work.json["key_name"],
            &work.json["priority"],
            &work.json["enabled"]
        ),
        (&json!("default"), &json!("work"), &json!(0), &json!(true))
    );
    assert_eq!(work.json["status"], "valid");
    let backup = add(&w, "alice", json!({"name": "backup", "api_key": GROQ_KEY_2})).await;
    assert_eq!(backup.status, 201, "{}", backup.text);
    let backup_id = backup.json["key_id"].as_str().unwrap().to_owned();
    assert!(backup_id.starts_with('k') && backup_id.len() == 11, "{backup_id}");
    assert_eq!(backup.json["priority"], 1);
    assert_eq!(
        ids(&w.server.call_as("alice", "GET", KEYS, None).await.json),
        ["default", backup_id.as_str()]
    );

    // Names are unique per provider, whatever their case; the name is never echoed.
    let taken = add(&w, "alice", json!({"name": "WORK", "api_key": GROQ_KEY_2})).await;
    assert_error(&taken, 409, "key_name_taken");
    assert!(!taken.text.contains("WORK"));
    let unnamed = add(&w, "alice", json!({"name": " ", "api_key": GROQ_KEY_2})).await;
    assert_error(&unnamed, 400, "invalid_request");
    // The contract's create still says a key is set.
    let again = w.server.post_key("alice", "groq", GROQ_KEY).await;
    assert_error(&again, 409, "credential_exists");

    // The provider's status is its primary key's, with every key in brief.
    let status = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(status.json["key_id"], "default", "{}", status.text);
    assert_eq!(status.json["keys_count"], 2);
    assert_eq!(
        status.json["keys"],
        json!([
            {"key_id": "default", "key_name": "work", "enabled": true, "status": "valid"},
            {"key_id": backup_id, "key_name": "backup", "enabled": true, "status": "valid"}
        ])
    );
    let models = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    let shared = mailmind_tests::entry(&models.json, "model_id", "llama-3.1-8b-instant");
    assert_eq!(
        shared["key_ids"],
        json!(["default", backup_id]),
        "what both keys unlock"
    );
    assert_eq!(models.json.as_array().unwrap().len(), GROQ_MODELS.len());

    // Each key has its own list, and can be checked on its own.
    let listed = w.server.model_ids("alice", &format!("groq/keys/{backup_id}")).await;
    assert_eq!(listed, ["llama-3.1-8b-instant"]);
    let asked = w.groq.requests().await.len();
    let checked = w
        .server
        .call_as("alice", "POST", &format!("{KEYS}{backup_id}/check/"), None)
        .await;
    assert_eq!(
        (checked.status, &checked.json["key_id"]),
        (200, &json!(backup_id)),
        "{}",
        checked.text
    );
    assert_eq!(w.groq.requests().await.len(), asked + 1);
    let last = w.groq.requests().await.pop().unwrap();
    assert_eq!(
        last.headers["authorization"],
        format!("Bearer {GROQ_KEY_2}").as_str(),
        "the backup key was asked"
    );
    assert_error(
        &w.server
            .call_as("alice", "GET", &format!("{KEYS}k0000000000/models/"), None)
            .await,
        404,
        "key_not_found",
    );

    // Switched off, the first key is skipped: the backup is primary, and only its models count.
    let off = patch(&w, "alice", "default", json!({"enabled": false})).await;
    assert_eq!((off.status, &off.json["enabled"]), (200, &json!(false)), "{}", off.text);
    let status = w
        .server
        .call_as("alice", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(status.json["key_id"], backup_id);
    assert_eq!(status.json["key_hint"], "gsk_…zzZZ");
    assert_eq!(w.server.model_ids("alice", "groq").await, ["llama-3.1-8b-instant"]);
    // A rename and a move: the backup first.
    let moved = patch(&w, "alice", &backup_id, json!({"name": "spare", "priority": 0})).await;
    assert_eq!(
        (moved.json["key_name"].as_str(), moved.json["priority"].as_u64()),
        (Some("spare"), Some(0))
    );
    let on = patch(&w, "alice", "default", json!({"enabled": true, "priority": 5})).await;
    assert_eq!(on.status, 200, "{}", on.text);
    assert_eq!(
        ids(&w.server.call_as("alice", "GET", KEYS, None).await.json),
        [backup_id.as_str(), "default"]
    );
    assert_error(&patch(&w, "alice", "default", json!({})).await, 400, "invalid_request");
    assert_error(
        &patch(&w, "alice", "default", json!({"name": "Spare"})).await,
        409,
        "key_name_taken",
    );
    assert_error(
        &patch(&w, "alice", "default", json!({"priority": -1})).await,
        400,
        "invalid_request",
    );
    assert_error(
        &patch(&w, "alice", "k0000000000", json!({"enabled": false})).await,
        404,
        "key_not_found",
    );

    // Nobody else sees them.
    let bob = w
        .server
        .call_as("bob", "GET", &format!("{KEYS}{backup_id}/"), None)
        .await;
    assert_error(&bob, 404, "key_not_found");
    assert_eq!(w.server.call_as("bob", "GET", KEYS, None).await.json, json!([]));

    // One key goes; the other stays; then the contract's DELETE takes them all.
    let gone = w
        .server
        .call_as("alice", "DELETE", &format!("{KEYS}{backup_id}/"), None)
        .await;
    assert_eq!(gone.status, 204, "{}", gone.text);
    assert_error(
        &w.server
            .call_as("alice", "GET", &format!("{KEYS}{backup_id}/"), None)
            .await,
        404,
        "key_not_found",
    );
    assert_error(
        &w.server
            .call_as("alice", "GET", &format!("{KEYS}not-an-id/"), None)
            .await,
        404,
        "key_not_found",
    );
    assert_eq!(
        ids(&w.server.call_as("alice", "GET", KEYS, None).await.json),
        ["default"]
    );
    let all = w
        .server
        .call_as("alice", "DELETE", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(all.status, 204);
    assert_eq!(w.server.call_as("alice", "GET", KEYS, None).await.json, json!([]));
    assert!(!w.server.logs().contains(GROQ_KEY), "a key reached the logs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_keeps_at_most_five_keys() {
    let w = world().await;
    for n in 0..5 {
        let added = add(&w, "alice", json!({"name": format!("key {n}"), "api_key": GROQ_KEY})).await;
        assert_eq!(added.status, 201, "{}", added.text);
    }
    let sixth = add(&w, "alice", json!({"name": "key 5", "api_key": GROQ_KEY})).await;
    assert_error(&sixth, 409, "too_many_keys");
    let list = w.server.call_as("alice", "GET", "/api/v1/credentials/", None).await;
    let groq = mailmind_tests::entry(&list.json, "provider", "groq");
    assert_eq!(groq["keys_count"], 5, "{groq}");
}

/// Each key answers with an `ETag` (its revision); `PATCH` and `DELETE`
/// honour `If-Match`: a stale tag is `412` and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_if_match_changes_nothing() {
    let w = world().await;
    let added = add(&w, "alice", json!({"name": "work", "api_key": GROQ_KEY})).await;
    let etag = added.headers["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"') && etag.len() > 2, "{etag}");
    let read = w.server.call_as("alice", "GET", &format!("{KEYS}default/"), None).await;
    assert_eq!(read.headers["etag"].to_str().unwrap(), etag);

    // The key is replaced (a new revision): the tag read before is stale.
    let replaced = w.server.put_key("alice", "groq", GROQ_KEY_2).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text);
    let with_tag = |method: &'static str, tag: String, body: Option<Value>| {
        let w = &w;
        async move {
            let request = reqwest::Client::new()
                .request(method.parse().unwrap(), format!("{}{KEYS}default/", w.server.base_url))
                .bearer_auth(w.server.token("alice"))
                .header("if-match", tag);
            let request = match body {
                Some(body) => request.json(&body),
                None => request,
            };
            mailmind_tests::local_server::Answer::read(request.send().await.unwrap()).await
        }
    };
    let stale = with_tag("PATCH", etag.clone(), Some(json!({"name": "renamed"}))).await;
    assert_error(&stale, 412, "precondition_failed");
    let weak = with_tag("PATCH", format!("W/{etag}"), Some(json!({"name": "renamed"}))).await;
    assert_error(&weak, 412, "precondition_failed");
    assert_error(
        &with_tag("DELETE", etag.clone(), None).await,
        412,
        "precondition_failed",
    );
    let now = w.server.call_as("alice", "GET", &format!("{KEYS}default/"), None).await;
    assert_eq!(now.json["key_name"], "work", "nothing changed");
    let current = now.headers["etag"].to_str().unwrap().to_owned();
    assert_ne!(current, etag);

    // With the current tag (in a list, as RFC 9110 allows), or `*`, it goes through.
    let renamed = with_tag("PATCH", format!("{etag}, {current}"), Some(json!({"name": "renamed"}))).await;
    assert_eq!(
        (renamed.status, &renamed.json["key_name"]),
        (200, &json!("renamed")),
        "{}",
        renamed.text
    );
    assert_eq!(
        renamed.headers["etag"].to_str().unwrap(),
        current,
        "a rename keeps the key's revision"
    );
    let gone = with_tag("DELETE", "*".to_owned(), None).await;
    assert_eq!(gone.status, 204, "{}", gone.text);
}

/// `PUT .../keys/{key_id}/` rotates: the new key replaces the old one only
/// when the provider finds it valid; otherwise the old key stays in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotation_swaps_only_a_valid_key() {
    let w = world().await;
    let added = add(&w, "alice", json!({"name": "work", "api_key": GROQ_KEY})).await;
    assert_eq!(added.status, 201, "{}", added.text);
    let first_tag = added.headers["etag"].to_str().unwrap().to_owned();
    let put = |key: &str, tag: Option<&str>| {
        let body = json!({"api_key": key}).to_string();
        let tag = tag.map(str::to_owned);
        let w = &w;
        async move {
            let mut request = reqwest::Client::new()
                .put(format!("{}{KEYS}default/", w.server.base_url))
                .bearer_auth(w.server.token("alice"))
                .body(body);
            if let Some(tag) = tag {
                request = request.header("if-match", tag);
            }
            mailmind_tests::local_server::Answer::read(request.send().await.unwrap()).await
        }
    };

    // Rejected by the provider: 422, the old key untouched.
    assert_error(&put(super::GROQ_BAD_KEY, None).await, 422, "key_rejected");
    assert_eq!(key_hint(&w).await, "gsk_…9xQa");
    // No verdict (rate limited): 503 with the provider's wait, the old key untouched.
    let limited = "gsk_limited456789abcdefghijklmnopqrstuvwxyzABCDEFlim1";
    w.groq.answer(limited, w.groq.rate_limited_response(30)).await;
    let unverified = put(limited, None).await;
    assert_error(&unverified, 503, "key_not_verified");
    assert_eq!(unverified.headers["retry-after"], "30");
    assert_eq!(key_hint(&w).await, "gsk_…9xQa");
    // Valid: swapped in, with a new revision.
    let rotated = put(GROQ_KEY_2, Some(&first_tag)).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(
        (rotated.json["key_hint"].as_str(), rotated.json["status"].as_str()),
        (Some("gsk_…zzZZ"), Some("valid"))
    );
    assert_ne!(rotated.headers["etag"].to_str().unwrap(), first_tag);
    // The tag read before the rotation is stale now.
    assert_error(&put(GROQ_KEY, Some(&first_tag)).await, 412, "precondition_failed");
    assert_eq!(key_hint(&w).await, "gsk_…zzZZ");
}

async fn key_hint(w: &super::World) -> Value {
    w.server
        .call_as("alice", "GET", &format!("{KEYS}default/"), None)
        .await
        .json["key_hint"]
        .clone()
}

/// `POST .../keys/{key_id}/rollback/` with an optional `If-Match`.
async fn rollback(w: &super::World, key_id: &str, tag: Option<&str>) -> mailmind_tests::local_server::Answer {
    let mut request = reqwest::Client::new()
        .post(format!("{}{KEYS}{key_id}/rollback/", w.server.base_url))
        .bearer_auth(w.server.token("alice"));
    if let Some(tag) = tag {
        request = request.header("if-match", tag);
    }
    mailmind_tests::local_server::Answer::read(request.send().await.unwrap()).await
}

/// A replaced key is kept sealed as the key's previous version; a rollback
/// checks it again and restores it only when it is valid, pushes the new
/// status, and keeps the key it replaced in turn (so it can be undone).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollback_restores_the_previous_key_once_it_checks_out() {
    let w = world().await;
    let added = add(&w, "alice", json!({"name": "work", "api_key": GROQ_KEY})).await;
    assert_eq!(added.status, 201, "{}", added.text);
    assert!(added.json.get("previous_key_hint").is_none(), "{}", added.text);
    assert_error(&rollback(&w, "default", None).await, 409, "no_previous_key");
    assert_error(&rollback(&w, "k0123456789", None).await, 404, "key_not_found");

    let put = |key: &'static str| {
        let w = &w;
        async move {
            w.server
                .call_as(
                    "alice",
                    "PUT",
                    &format!("{KEYS}default/"),
                    Some(&json!({"api_key": key}).to_string()),
                )
                .await
        }
    };
    let rotated = put(GROQ_KEY_2).await;
    assert_eq!(rotated.status, 200, "{}", rotated.text);
    assert_eq!(rotated.json["previous_key_hint"], "gsk_…9xQa");
    let until = chrono::DateTime::parse_from_rfc3339(rotated.json["rollback_until"].as_str().unwrap()).unwrap();
    let kept = until.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        kept > chrono::Duration::days(7) - chrono::Duration::minutes(5) && kept <= chrono::Duration::days(7),
        "kept for 7 days by default: {kept}"
    );
    let rotated_tag = rotated.headers["etag"].to_str().unwrap().to_owned();

    // A stale If-Match changes nothing.
    assert_error(
        &rollback(&w, "default", Some(added.headers["etag"].to_str().unwrap())).await,
        412,
        "precondition_failed",
    );
    assert_eq!(key_hint(&w).await, "gsk_…zzZZ");

    // Rolled back: the old key is back, checked again, its models with it,
    // and the socket hears of it; the rotated key is now the one kept.
    let mut socket = crate::e2e_websocket::connect(&w.server, "alice").await;
    let back = rollback(&w, "default", Some(&rotated_tag)).await;
    assert_eq!(back.status, 200, "{}", back.text);
    assert_eq!(
        (&back.json["key_hint"], &back.json["status"], &back.json["models_count"]),
        (&json!("gsk_…9xQa"), &json!("valid"), &json!(GROQ_MODELS.len()))
    );
    assert_eq!(back.json["previous_key_hint"], "gsk_…zzZZ");
    assert_ne!(back.headers["etag"].to_str().unwrap(), rotated_tag);
    let (_, verdict) = crate::e2e_websocket::validation_messages(&mut socket).await;
    assert_eq!(
        (&verdict["data"]["status"], &verdict["data"]["key_id"]),
        (&json!("valid"), &json!("default")),
        "{verdict}"
    );
    let mut models = w.server.model_ids("alice", "groq").await;
    models.sort();
    let mut expected: Vec<String> = GROQ_MODELS.iter().map(|m| m.to_string()).collect();
    expected.sort();
    assert_eq!(models, expected);

    // Undone, then tried again after the provider revoked the old key:
    // 422, and nothing changes (the rotated key stays, the old one kept).
    let undone = rollback(&w, "default", None).await;
    assert_eq!(undone.json["key_hint"], "gsk_…zzZZ", "{}", undone.text);
    w.groq.answer(GROQ_KEY, w.groq.invalid_key_response()).await;
    assert_error(&rollback(&w, "default", None).await, 422, "key_rejected");
    let now = w.server.call_as("alice", "GET", &format!("{KEYS}default/"), None).await;
    assert_eq!(
        (&now.json["key_hint"], &now.json["previous_key_hint"]),
        (&json!("gsk_…zzZZ"), &json!("gsk_…9xQa"))
    );

    // Each rollback is on the audit record, with its outcome.
    let logs = w
        .server
        .logs_with(r#""action":"rollback","provider":"groq","outcome":"key_rejected""#)
        .await;
    for outcome in ["valid", "key_rejected", "precondition_failed", "no_previous_key"] {
        let line = format!(r#""action":"rollback","provider":"groq","outcome":"{outcome}""#);
        assert!(logs.contains(&line), "no audit line {line}");
    }

    // The provider route's PUT keeps the replaced primary key as well.
    let replaced = w.server.put_key("alice", "groq", GROQ_KEY_2).await;
    assert_eq!(replaced.json["previous_key_hint"], "gsk_…zzZZ", "{}", replaced.text);

    // Deleting the key forgets its previous version with it.
    let gone = w
        .server
        .call_as("alice", "DELETE", &format!("{KEYS}default/"), None)
        .await;
    assert_eq!(gone.status, 204);
    assert_eq!(
        add(&w, "alice", json!({"name": "again", "api_key": GROQ_KEY_2}))
            .await
            .status,
        201
    );
    assert_error(&rollback(&w, "default", None).await, 409, "no_previous_key");
}
