//! Every REST route and its success codes, for the providers the world fakes.

use super::*;

#[tokio::test]
async fn every_rest_route_works_end_to_end() {
    let w = world().await;
    let s = &w.server;

    // GET /credentials/: one entry per provider, sorted, nothing set.
    let list = s.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(list.status, 200);
    let entries = list.json.as_array().unwrap();
    let ids: Vec<&str> = entries.iter().map(|e| e["provider"].as_str().unwrap()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    assert_eq!(ids, sorted);
    assert!(ids.contains(&"groq") && ids.contains(&"google_gemini"));
    for e in entries {
        assert_eq!(e["api_key_set"], false);
        for absent in ["created_at", "updated_at", "last_checked_at", "key_hint"] {
            assert!(e.get(absent).is_none(), "{absent} in {e}");
        }
    }

    // POST /credentials/: a pasted key with surrounding whitespace.
    let created = s.post_key("user-a", "groq", &format!("  \n{GROQ_KEY}\t ")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_no_secret(&created);
    let c = &created.json;
    assert_eq!(c["provider"], "groq");
    assert_eq!(c["provider_name"], "Groq");
    assert_eq!(c["api_key_set"], true);
    assert_eq!(c["key_hint"], "gsk_…9xQa");
    assert_eq!(c["status"], "valid");
    assert_eq!(c["status_message"], "Groq API key is valid.");
    assert_eq!(c["models_count"], 3);
    for field in ["created_at", "updated_at", "last_checked_at"] {
        let t = c[field].as_str().unwrap();
        assert!(
            t.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(t).is_ok(),
            "{field}: {t}"
        );
    }
    // The provider got the trimmed key.
    let sent = w.groq.requests().await;
    assert_eq!(
        sent.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );

    // GET /credentials/{provider}/, with and without the trailing slash.
    for path in ["/api/v1/credentials/groq/", "/api/v1/credentials/groq"] {
        let got = s.call_as("user-a", "GET", path, None).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json, created.json);
    }

    // GET /credentials/{provider}/models/: sorted, with facts.
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!(models.status, 200);
    let ids: Vec<&str> = mailmind_tests::strings(&models.json, "model_id");
    assert_eq!(ids, ["gemma2-9b-it", "llama-3.1-8b-instant", "llama-3.3-70b-versatile"]);
    let first = &models.json[0];
    assert_eq!(first["provider"], "groq");
    assert_eq!(first["model_name"], "gemma2-9b-it");
    assert_eq!(first["context_window"], 131072);
    assert!(chrono::DateTime::parse_from_rfc3339(first["discovered_at"].as_str().unwrap()).is_ok());

    // POST /credentials/{provider}/check/: a fresh validation.
    let before = w.groq.requests().await.len();
    let checked = s
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "valid");
    assert_eq!(checked.json["created_at"], c["created_at"]);
    assert_eq!(
        w.groq.requests().await.len(),
        before + 1,
        "the check asked the provider"
    );

    // PUT /credentials/{provider}/: new key, new hint, models re-discovered.
    let updated = s.put_key("user-a", "groq", GROQ_KEY_2).await;
    assert_eq!(updated.status, 200, "{}", updated.text);
    assert_eq!(updated.json["key_hint"], "gsk_…zzZZ");
    assert_eq!(updated.json["models_count"], 1);
    assert_eq!(updated.json["created_at"], c["created_at"]);
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models", None)
        .await;
    assert_eq!(models.json.as_array().unwrap().len(), 1);

    // Gemini pages through its list.
    let gemini = s
        .call_as(
            "user-a",
            "POST",
            "/api/v1/credentials",
            Some(&body("google_gemini", GEMINI_KEY)),
        )
        .await;
    assert_eq!(gemini.status, 201, "{}", gemini.text);
    assert_eq!(gemini.json["models_count"], 5);
    assert_eq!(gemini.json["key_hint"], "AIza…klmn");
    assert!(w.gemini.requests().await.len() >= 3, "three pages of two");
    let list = s.call_as("user-a", "GET", "/api/v1/credentials", None).await;
    let set = providers_with_a_key(&list.json);
    assert_eq!(set, ["google_gemini", "groq"]);

    // DELETE /credentials/{provider}/: gone, models too.
    let deleted = s.call_as("user-a", "DELETE", "/api/v1/credentials/groq/", None).await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.text.is_empty());
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await,
        404,
        "credential_not_found",
    );
    let models = s
        .call_as("user-a", "GET", "/api/v1/credentials/groq/models/", None)
        .await;
    assert_eq!((models.status, models.json.clone()), (200, json!([])));
    // And it can be created again.
    let again = s.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(again.status, 201);
}

#[tokio::test]
async fn anthropic_openrouter_and_cohere_create_then_list_models() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "anthropic",
            "sk-ant-api03-e2e0123456789abcdefghijklmnopqrstuvwxyz-AAAA",
            &["claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"][..],
            "Anthropic",
            "sk-ant-api03-…AAAA",
        ),
        (
            "openrouter",
            "sk-or-v1-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd",
            &["openai/gpt-4o", "anthropic/claude-sonnet-4.5"][..],
            "OpenRouter",
            "sk-or-v1-…abcd",
        ),
        (
            "cohere",
            "e2eCohereKey0123456789abcdefghijklmnopqrs",
            &["command-a-03-2025", "command-r", "command-r-plus"][..],
            "Cohere",
            "…pqrs",
        ),
    ];
    let mut fakes = Vec::new();
    for (id, key, models, _, _) in &cases {
        let fake = FakeProvider::start(id).await;
        fake.accept(key, models).await;
        fakes.push(fake);
    }
    let env: Vec<(String, String)> = fakes.iter().map(FakeProvider::env).collect();
    let server = LocalServer::start(&dir.path().join("data"), &env).await;
    for (id, key, models, name, hint) in cases {
        // A wrong key first: rejected, nothing stored.
        let wrong = server.post_key("user-a", id, "wrong-key-0000000000000000000000").await;
        assert_error(&wrong, 422, "key_rejected");
        assert!(wrong.json["detail"].as_str().unwrap().contains(name), "{}", wrong.text);

        let created = server.post_key("user-a", id, key).await;
        assert_eq!(created.status, 201, "{id}: {}", created.text);
        assert_eq!(created.json["provider_name"], name);
        assert_eq!(created.json["status"], "valid");
        assert_eq!(created.json["status_message"], format!("{name} API key is valid."));
        assert_eq!(created.json["key_hint"], hint);
        assert_eq!(created.json["models_count"], models.len());
        let listed = server
            .call_as("user-a", "GET", &format!("/api/v1/credentials/{id}/models/"), None)
            .await;
        let ids: Vec<&str> = mailmind_tests::strings(&listed.json, "model_id");
        let mut expected = models.to_vec();
        expected.sort_unstable();
        assert_eq!(ids, expected, "{id}");
        assert!(listed.json.as_array().unwrap().iter().all(|m| m["provider"] == id));
    }
    // Facts the providers give are kept: display names (Anthropic), context windows (Cohere).
    let anthropic = server
        .call_as("user-a", "GET", "/api/v1/credentials/anthropic/models/", None)
        .await;
    assert_eq!(anthropic.json[0]["model_name"], "Claude Haiku 4 5");
    let cohere = server
        .call_as("user-a", "GET", "/api/v1/credentials/cohere/models/", None)
        .await;
    assert_eq!(cohere.json[0]["context_window"], 128000);
    // All ten providers are listed, the three set.
    let list = server.call_as("user-a", "GET", "/api/v1/credentials/", None).await;
    assert_eq!(
        list.json.as_array().unwrap().len(),
        mailmind::domain::provider::PROVIDERS.len()
    );
    let set = providers_with_a_key(&list.json);
    assert_eq!(set, ["anthropic", "cohere", "openrouter"]);
}

/// The providers a `GET /credentials/` answer lists with a key set, in order.
fn providers_with_a_key(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|e| e["api_key_set"] == true)
        .map(|e| e["provider"].as_str().unwrap())
        .collect()
}
