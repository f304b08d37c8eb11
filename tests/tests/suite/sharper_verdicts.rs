//! Sharper verdicts, end to end through the real `mailmind-local`:
//! a key pasted under the wrong provider is refused before any network call.

use mailmind::domain::key_prefix::DISTINCTIVE_PREFIXES;
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::{Answer, LocalServer};
use serde_json::json;

const GROQ_KEY: &str = "gsk_sharp0123456789abcdefghijklmnopqrstuvwxyzABCDEFG9xQa";

/// A key of `owner`'s distinctive shape (the rest is filler).
fn key_with(prefix: &str) -> String {
    format!("{prefix}Ab0123456789abcdefghijklmnopqrstuvwxyzABCDEF")
}

fn assert_mismatch(answer: &Answer, owner_name: &str) {
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(answer.json["code"], "key_provider_mismatch", "{}", answer.text);
    let article = if "AEIOUx".contains(&owner_name[..1]) { "an" } else { "a" };
    assert_eq!(
        answer.json["detail"],
        format!("This looks like {article} {owner_name} key."),
        "{}",
        answer.text
    );
    assert_eq!(answer.json.as_object().unwrap().len(), 2, "{}", answer.text);
}

#[tokio::test]
async fn a_key_with_another_providers_prefix_is_refused_before_any_network_call() {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant"]).await;
    let gemini = FakeProvider::start("google_gemini").await;
    let s = LocalServer::start(&dir.path().join("data"), &[groq.env(), gemini.env()]).await;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let calls = groq.requests().await.len();

    for (prefix, owner) in DISTINCTIVE_PREFIXES {
        let owner = mailmind::domain::provider::find(owner).unwrap();
        // Under a provider that is not its owner: Groq, or Gemini for a Groq key.
        let target = if owner.id == "groq" { "google_gemini" } else { "groq" };
        let key = key_with(prefix);
        let posted = s.post_key("user-b", target, &key).await;
        assert_mismatch(&posted, owner.display_name);
        assert!(!posted.text.contains(&key[prefix.len()..]), "the key is never echoed");
        let stored = s
            .call_as("user-b", "GET", &format!("/api/v1/credentials/{target}/"), None)
            .await;
        assert_eq!(stored.status, 404, "nothing stored for {prefix}");
        if target == "groq" {
            // A replacement is refused the same way, and the old key stays.
            let put = s.put_key("user-a", "groq", &key).await;
            assert_mismatch(&put, owner.display_name);
        }
    }
    assert_eq!(groq.requests().await.len(), calls, "no provider was asked");
    assert!(gemini.requests().await.is_empty(), "no provider was asked");
    let kept = s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await;
    assert_eq!(kept.json, created.json, "the stored key is untouched");

    // The provider's own key shape passes, and so does an ambiguous `sk-` key
    // under a provider that would reject it itself.
    let own = s.post_key("user-b", "groq", GROQ_KEY).await;
    assert_eq!(own.status, 201, "{}", own.text);
    let ambiguous = s
        .post_key("user-b", "google_gemini", "sk-proj-0123456789abcdefghij")
        .await;
    assert_eq!(ambiguous.status, 422, "asked the provider: {}", ambiguous.text);
    assert_eq!(ambiguous.json["code"], "key_rejected");
}

#[tokio::test]
async fn models_keep_their_first_sighting_and_the_push_counts_what_changed() {
    use crate::e2e_websocket::{connect, next_message, validation_messages};
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(
        GROQ_KEY,
        &["gemma2-9b-it", "llama-3.1-8b-instant", "mixtral-8x7b-32768"],
    )
    .await;
    let s = LocalServer::start(&dir.path().join("data"), &[groq.env()]).await;
    let mut socket = connect(&s, "user-a").await;
    let created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let (_, first) = validation_messages(&mut socket).await;
    assert!(
        first["data"].get("models_added").is_none(),
        "a first discovery: {first}"
    );
    let first_seen = |models: &serde_json::Value, id: &str| {
        models
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["model_id"] == id)
            .map(|m| m["first_seen_at"].clone())
    };
    let listed = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    for id in ["gemma2-9b-it", "llama-3.1-8b-instant", "mixtral-8x7b-32768"] {
        assert_eq!(
            first_seen(&listed.json, id),
            Some(created.json["last_checked_at"].clone()),
            "{id}"
        );
    }

    // A second later the provider lists one model fewer and two more.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    groq.server.reset().await;
    groq.accept(
        GROQ_KEY,
        &[
            "gemma2-9b-it",
            "llama-3.1-8b-instant",
            "llama-3.3-70b-versatile",
            "qwen-qwq-32b",
        ],
    )
    .await;
    let checked = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.json["status"], "valid", "{}", checked.text);
    assert_ne!(checked.json["last_checked_at"], created.json["last_checked_at"]);
    let (_, verdict) = validation_messages(&mut socket).await;
    assert_eq!(verdict["data"]["models_count"], 4);
    assert_eq!(verdict["data"]["models_added"], 2, "{verdict}");
    assert_eq!(verdict["data"]["models_removed"], 1, "{verdict}");
    let listed = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    for kept in ["gemma2-9b-it", "llama-3.1-8b-instant"] {
        assert_eq!(
            first_seen(&listed.json, kept),
            Some(created.json["last_checked_at"].clone()),
            "{kept}"
        );
    }
    for new in ["llama-3.3-70b-versatile", "qwen-qwq-32b"] {
        assert_eq!(
            first_seen(&listed.json, new),
            Some(checked.json["last_checked_at"].clone()),
            "{new}"
        );
    }
    assert_eq!(first_seen(&listed.json, "mixtral-8x7b-32768"), None);

    // The same list again: no change to report, the sightings stay.
    s.call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    let (_, same) = validation_messages(&mut socket).await;
    assert!(same["data"].get("models_added").is_none(), "{same}");
    assert!(same["data"].get("models_removed").is_none(), "{same}");
    let relisted = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    let sightings = |models: &serde_json::Value| -> Vec<(String, String)> {
        models
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["model_id"].to_string(), m["first_seen_at"].to_string()))
            .collect()
    };
    assert_eq!(sightings(&relisted.json), sightings(&listed.json));
    assert_eq!(
        next_message(&mut socket, std::time::Duration::from_millis(300)).await,
        None
    );
}

#[tokio::test]
async fn openrouter_credit_is_kept_in_the_status_and_spent_credit_is_quota_exhausted() {
    const OR_KEY: &str = "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    let dir = tempfile::tempdir().unwrap();
    let openrouter = FakeProvider::start("openrouter").await;
    openrouter
        .accept(OR_KEY, &["openai/gpt-4o", "anthropic/claude-sonnet-4.5"])
        .await;
    openrouter.credit(OR_KEY, Some(10.0), 2.5, false).await;
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.1-8b-instant"]).await;
    let s = LocalServer::start(&dir.path().join("data"), &[openrouter.env(), groq.env()]).await;
    let created = s.post_key("user-a", "openrouter", OR_KEY).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["status"], "valid");
    assert_eq!(
        created.json["quota"],
        json!({"limit": 10.0, "usage": 2.5, "limit_remaining": 7.5, "is_free_tier": false})
    );
    // Stored: a re-read shows it.
    let read = s
        .call_as("user-a", "GET", "/api/v1/credentials/openrouter/", None)
        .await;
    assert_eq!(read.json["quota"], created.json["quota"]);
    // A provider that tells nothing: `null`, present.
    let groq_created = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(
        groq_created.json.get("quota"),
        Some(&serde_json::Value::Null),
        "{}",
        groq_created.text
    );

    // The credit runs out: no verdict on the key, the reason says why, models kept.
    openrouter.server.reset().await;
    openrouter
        .accept(OR_KEY, &["openai/gpt-4o", "anthropic/claude-sonnet-4.5"])
        .await;
    openrouter.credit(OR_KEY, Some(10.0), 10.0, true).await;
    let checked = s
        .call_as("user-a", "POST", "/api/v1/credentials/openrouter/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "error");
    assert_eq!(checked.json["status_reason"], "quota_exhausted");
    assert_eq!(checked.json["models_count"], 2);
    assert_eq!(
        checked.json["quota"],
        json!({"limit": 10.0, "usage": 10.0, "limit_remaining": 0.0, "is_free_tier": true})
    );
    let list = s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    let openrouter_view = mailmind_tests::entry(&list.json, "provider", "openrouter");
    assert_eq!(openrouter_view["quota"], checked.json["quota"]);
}
