//! The activity history over `mailmind-local`: every event of a key's life,
//! from the REST routes and from `credentials-resolve` (the local Invoke
//! API), newest first, only to its owner, paged, kept after the delete.

use serde_json::{Value, json};

use super::{GROQ_KEY, assert_error, world};

/// The entries without their times: (event, the other fields).
fn events(page: &Value) -> Vec<Value> {
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let mut entry = entry.clone();
            let at = entry.as_object_mut().unwrap().remove("at").unwrap();
            assert!(
                chrono::DateTime::parse_from_rfc3339(at.as_str().unwrap()).is_ok(),
                "{at}"
            );
            entry
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_shows_every_event_newest_first_to_its_owner_only() {
    let w = world().await;
    let s = &w.server;
    assert_eq!(s.post_key("alice", "groq", GROQ_KEY).await.status, 201);
    let checked = s
        .call_as("alice", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    let resolve = json!({"action": "resolve", "user_id": "alice", "provider": "groq", "consumer": "digest"});
    let key = s.invoke_resolve(&resolve).await;
    assert_eq!(key["ok"], true, "{key}");
    assert_eq!(s.invoke_resolve(&resolve).await["ok"], true);
    let report = json!({"action": "report", "user_id": "alice", "provider": "groq",
                        "key_revision": key["key_revision"], "outcome": "rejected", "consumer": "digest"});
    assert_eq!(s.invoke_resolve(&report).await["result"], "rechecked");
    assert_eq!(
        s.call_as("alice", "DELETE", "/api/v1/credentials/groq/", None)
            .await
            .status,
        204
    );

    let page = s
        .call_as("alice", "GET", "/api/v1/credentials/groq/activity/", None)
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert_eq!(page.headers["cache-control"], "no-store");
    let hint = checked.json["key_hint"].clone();
    assert_eq!(
        events(&page.json),
        vec![
            json!({"event": "deleted"}),
            json!({"event": "checked", "status": "valid", "by": "report"}),
            json!({"event": "reported", "outcome": "rejected", "consumer": "digest"}),
            json!({"event": "used", "consumer": "digest"}),
            json!({"event": "checked", "status": "valid", "by": "user"}),
            json!({"event": "set", "key_hint": hint}),
        ]
    );
    assert!(page.json.get("next_cursor").is_none(), "{}", page.text);
    let times: Vec<&str> = page.json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|pair| pair[0] >= pair[1]), "{times:?}");
    assert!(!page.text.contains(GROQ_KEY));

    // Paged: two at a time, the cursor leads on, the last page has none.
    let mut seen = Vec::new();
    let mut path = "/api/v1/credentials/groq/activity?limit=2".to_owned();
    loop {
        let page = s.call_as("alice", "GET", &path, None).await;
        assert_eq!(page.status, 200, "{}", page.text);
        assert!(page.json["entries"].as_array().unwrap().len() <= 2);
        seen.extend(events(&page.json));
        match page.json["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/v1/credentials/groq/activity?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(seen, events(&page_of(s, "alice").await));

    // Nobody else sees it; a provider without history answers an empty list.
    assert_eq!(page_of(s, "bob").await, json!({"entries": []}));
    let gemini = s
        .call_as("alice", "GET", "/api/v1/credentials/google_gemini/activity", None)
        .await;
    assert_eq!(gemini.json, json!({"entries": []}));
    let unknown = s
        .call_as("alice", "GET", "/api/v1/credentials/nope/activity", None)
        .await;
    assert_error(&unknown, 404, "unknown_provider");
    // The use is audited with its consumer and the key's revision.
    let revision = key["key_revision"].as_str().unwrap();
    let audit = s.logs_with("\"action\":\"report\"").await;
    let line = audit
        .lines()
        .find(|l| l.contains("\"action\":\"resolve\"") && l.contains("\"consumer\":\"digest\""))
        .unwrap_or_else(|| panic!("no resolve audit line in {audit}"));
    assert!(line.contains(revision), "{line}");
}

async fn page_of(server: &mailmind_tests::local_server::LocalServer, user: &str) -> Value {
    let page = server
        .call_as(user, "GET", "/api/v1/credentials/groq/activity", None)
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    page.json
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_limit_or_cursor_is_an_invalid_request() {
    let w = world().await;
    let s = &w.server;
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "limit=-1",
        "limit=",
        "limit=5&limit=6",
        "cursor=nope",
        "cursor=",
        "cursor=MjAyNi0xMS0yNFQxOTowMDowMC4wMDBaI3p6",
    ] {
        let path = format!("/api/v1/credentials/groq/activity?{query}");
        assert_error(&s.call_as("alice", "GET", &path, None).await, 400, "invalid_request");
    }
    for query in ["limit=1", "limit=100", "limit=50"] {
        let path = format!("/api/v1/credentials/groq/activity?{query}");
        let answer = s.call_as("alice", "GET", &path, None).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.text);
    }
    // An invalid consumer name is refused like any bad field.
    let answer = s
        .invoke_resolve(&json!({"action": "resolve", "user_id": "alice", "provider": "groq", "consumer": ""}))
        .await;
    assert_eq!(answer["error"]["code"], "invalid_request");
}
