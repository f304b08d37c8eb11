//! End to end through the real `mailmind-local` binary on a random port, with
//! a real SQLite file and fake providers that answer like the real ones.
//! The world and helpers are here; the tests are split by concern.

mod activity;
mod audit;
mod bad_input;
mod endpoints;
mod errors;
mod faults;
mod invoke;
mod isolation;
mod keys;
mod limits;
mod permissions;
mod restarts_and_secrecy;
mod routes;

use std::time::Duration;

use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::local_server::{Answer, LocalServer};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_live0123456789abcdefghijklmnopqrstuvwxyzABCDEFGH9xQa";
const GROQ_KEY_2: &str = "gsk_next0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHzzZZ";
const GROQ_BAD_KEY: &str = "gsk_revoked456789abcdefghijklmnopqrstuvwxyzABCDEFGHbad1";
const GEMINI_KEY: &str = "AIzaSyD-live-0123456789abcdefghijklmn";
const GROQ_MODELS: &[&str] = &["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"];
const GEMINI_MODELS: &[&str] = &[
    "gemini-2.0-flash",
    "gemini-1.5-pro",
    "gemini-1.5-flash",
    "text-embedding-004",
    "gemini-2.5-pro",
];

struct World {
    _dir: tempfile::TempDir,
    groq: FakeProvider,
    gemini: FakeProvider,
    server: LocalServer,
}

async fn world() -> World {
    world_with(&[]).await
}

async fn world_with(extra_env: &[(String, String)]) -> World {
    world_with_args(extra_env, &[]).await
}

/// [`world_with`], the server started with `args` as well.
async fn world_with_args(extra_env: &[(String, String)], args: &[&str]) -> World {
    let dir = tempfile::tempdir().unwrap();
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, GROQ_MODELS).await;
    groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
    let gemini = FakeProvider::start("google_gemini").await;
    gemini.accept(GEMINI_KEY, GEMINI_MODELS).await;
    let mut env = vec![groq.env(), gemini.env()];
    env.extend_from_slice(extra_env);
    let server = LocalServer::start_with_args(&dir.path().join("data"), &env, args).await;
    World {
        _dir: dir,
        groq,
        gemini,
        server,
    }
}

fn body(provider: &str, key: &str) -> String {
    json!({"provider": provider, "api_key": key}).to_string()
}

fn assert_error(answer: &Answer, status: u16, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.json["code"], code, "{}", answer.text);
    let detail = answer.json["detail"].as_str().expect("detail is a string");
    assert!(!detail.is_empty());
    assert_eq!(
        answer.json.as_object().unwrap().len(),
        2,
        "only detail and code: {}",
        answer.text
    );
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "JSON error"
    );
}

fn assert_no_secret(answer: &Answer) {
    for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
        assert!(
            !answer.text.contains(key),
            "a key leaked into a response: {}",
            answer.text
        );
        // Not even a large part of one.
        assert!(
            !answer.text.contains(&key[4..24]),
            "part of a key leaked: {}",
            answer.text
        );
    }
}
