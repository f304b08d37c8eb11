//! Restarts on the same data dir, a malformed master key, and no raw key anywhere
//! on disk or in the logs.

use super::*;

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_keys_decryptable() {
    let mut w = world().await;
    let created = w.server.post_key("user-a", "groq", GROQ_KEY).await;
    assert_eq!(created.status, 201);
    w.server.restart().await;
    let got = w
        .server
        .call_as("user-a", "GET", "/api/v1/credentials/groq/", None)
        .await;
    assert_eq!(got.json, created.json);
    let checked = w
        .server
        .call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    assert_eq!(checked.status, 200, "{}", checked.text);
    assert_eq!(checked.json["status"], "valid");
    // The provider received exactly the original key, decrypted after the restart.
    assert_eq!(
        w.groq.requests().await.last().unwrap().headers["authorization"],
        format!("Bearer {GROQ_KEY}").as_str()
    );
}

#[tokio::test]
async fn a_malformed_master_key_stops_the_server_from_starting() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), b"too short").unwrap();
    // Owner-only, so that the size (not the mode) is what is refused.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path().join("master.key"), std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let output = tokio::process::Command::new(mailmind_tests::workspace_binary("mailmind-local"))
        .args(["--port", "0", "--data-dir"])
        .arg(dir.path())
        .output();
    let output = tokio::time::timeout(Duration::from_secs(20), output)
        .await
        .unwrap()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("malformed"), "{stderr}");
    assert_eq!(std::fs::read(dir.path().join("master.key")).unwrap(), b"too short");
}

#[tokio::test]
async fn no_raw_key_in_the_data_dir_or_the_logs() {
    let mut w = world().await;
    let s = &w.server;
    s.post_key("user-a", "groq", GROQ_KEY).await;
    s.post_key("user-a", "google_gemini", GEMINI_KEY).await;
    s.put_key("user-a", "groq", GROQ_KEY_2).await;
    s.put_key("user-a", "groq", GROQ_BAD_KEY).await;
    s.call_as("user-a", "POST", "/api/v1/credentials/groq/check/", None)
        .await;
    s.post_key("user-b", "groq", GROQ_BAD_KEY).await;
    s.call_as(
        "user-a",
        "POST",
        "/api/v1/credentials/",
        Some(&json!({"provider": "groq", "api_key": 5, "x": GROQ_KEY}).to_string()),
    )
    .await;
    let token = s.token("user-a");
    w.server.stop().await;

    let logs = w.server.logs();
    assert!(logs.contains("request handled"), "the server did log: {logs}");
    for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
        assert!(!logs.contains(key), "a key reached the logs");
        assert!(!logs.contains(&key[4..20]), "part of a key reached the logs");
    }
    assert!(!logs.contains(&token), "a bearer token reached the logs");
    // Every log line is one JSON object.
    for line in logs.lines().filter(|l| l.starts_with('{')) {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    }

    let mut files = 0;
    for entry in walk(&w.server.data_dir) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for key in [GROQ_KEY, GROQ_KEY_2, GROQ_BAD_KEY, GEMINI_KEY] {
            assert!(
                !bytes.windows(key.len()).any(|w| w == key.as_bytes()),
                "a raw key is in {}",
                entry.display()
            );
        }
    }
    assert!(files >= 2, "database and master key were scanned");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
