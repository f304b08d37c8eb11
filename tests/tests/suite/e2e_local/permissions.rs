//! The real binary refuses a data directory or master key that group or
//! others may access, saying how to fix it, and creates both owner-only.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;

/// Runs `mailmind-local` on `data_dir`; its exit status and stderr when it
/// stops on its own (a refusal), `None` when it started.
async fn refusal(data_dir: &Path) -> (bool, String) {
    let output = tokio::process::Command::new(mailmind_tests::workspace_binary("mailmind-local"))
        .args(["--port", "0", "--data-dir"])
        .arg(data_dir)
        .env_clear()
        .env("MAILMIND_LOG", "warn")
        .kill_on_drop(true)
        .output();
    // A server that starts never exits: the timeout is the "it started" answer.
    match tokio::time::timeout(Duration::from_secs(10), output).await {
        Ok(output) => {
            let output = output.unwrap();
            (
                output.status.success(),
                String::from_utf8_lossy(&output.stderr).into_owned(),
            )
        }
        Err(_) => (true, "started".to_owned()),
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn a_data_dir_or_master_key_open_to_others_is_refused_with_the_fix() {
    // First run creates both owner-only.
    let w = world().await;
    let data = w.server.data_dir.clone();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("master.key")), 0o600);
    drop(w.server);

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    for (dir_mode, message) in [(0o755, "chmod 700"), (0o750, "chmod 700"), (0o701, "chmod 700")] {
        set_mode(&data, dir_mode);
        let (ok, stderr) = refusal(&data).await;
        assert!(!ok, "mode {dir_mode:o} must be refused");
        assert!(
            stderr.contains(message) && stderr.contains(&data.display().to_string()),
            "{stderr}"
        );
        assert!(!data.join("master.key").exists(), "nothing created when refused");
    }
    set_mode(&data, 0o700);
    std::fs::write(data.join("master.key"), [7u8; 32]).unwrap();
    for key_mode in [0o644, 0o640, 0o604, 0o660] {
        set_mode(&data.join("master.key"), key_mode);
        let (ok, stderr) = refusal(&data).await;
        assert!(!ok, "master.key mode {key_mode:o} must be refused");
        assert!(
            stderr.contains("chmod 600") && stderr.contains("master.key"),
            "{stderr}"
        );
    }
    // Fixed as the message says: it starts.
    set_mode(&data.join("master.key"), 0o600);
    assert_eq!(refusal(&data).await, (true, "started".to_owned()));
}
