//! Where status changes go: Amazon EventBridge's default bus on AWS, a file
//! of JSON lines locally (each line the event as EventBridge delivers it to a
//! rule's target); a service built without either publishes nothing. Publishing never fails the request
//! that changed the status: each try is bounded, and a failure is logged and
//! counted (`StatusEventsFailed`).

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::domain::StatusChange;
use crate::domain::status_change::{EVENT_DETAIL_TYPE, EVENT_SOURCE};
use crate::ports::StatusEvents;

/// The longest a publish may hold up the request that changed the status.
pub const PUBLISH_TIMEOUT: Duration = Duration::from_millis(1500);

fn published(change: &StatusChange, result: Result<(), String>) {
    match result {
        Ok(()) => {
            tracing::info!(
                provider = change.provider,
                new_status = change.new_status.as_str(),
                cause = change.cause.as_str(),
                "status change published"
            );
            crate::metrics::status_event(true);
        }
        Err(error) => {
            tracing::warn!(provider = change.provider, error, "status change not published");
            crate::metrics::status_event(false);
        }
    }
}

/// Appends each change to a file, one JSON line each, as EventBridge would
/// deliver it (`mailmind-local --events-file`).
pub struct EventsFile {
    file: Mutex<std::fs::File>,
}

impl EventsFile {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<EventsFile> {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(EventsFile { file: Mutex::new(file) })
    }
}

/// The event as a rule's target receives it.
pub fn delivered_event(change: &StatusChange, account: &str, region: &str) -> Value {
    json!({
        "version": "0",
        "id": crate::ids::random_hex(16),
        "detail-type": EVENT_DETAIL_TYPE,
        "source": EVENT_SOURCE,
        "account": account,
        "time": change.changed_at,
        "region": region,
        "resources": [],
        "detail": change,
    })
}

#[async_trait]
impl StatusEvents for EventsFile {
    async fn publish(&self, change: &StatusChange) {
        let mut line = delivered_event(change, "000000000000", "local").to_string();
        line.push('\n');
        let written = self
            .file
            .lock()
            .map_err(|_| "the events file lock is poisoned".to_owned())
            .and_then(|mut file| file.write_all(line.as_bytes()).map_err(|e| e.to_string()));
        published(change, written);
    }
}

/// `PutEvents` to the account's default bus.
#[cfg(feature = "aws")]
pub struct EventBridgeEvents {
    client: aws_sdk_eventbridge::Client,
}

#[cfg(feature = "aws")]
impl EventBridgeEvents {
    /// Publishes through `client`.
    pub fn new(client: aws_sdk_eventbridge::Client) -> EventBridgeEvents {
        EventBridgeEvents { client }
    }

    async fn put(&self, change: &StatusChange) -> Result<(), String> {
        let detail = serde_json::to_string(change).map_err(|e| e.to_string())?;
        let entry = aws_sdk_eventbridge::types::PutEventsRequestEntry::builder()
            .source(EVENT_SOURCE)
            .detail_type(EVENT_DETAIL_TYPE)
            .detail(detail)
            .build();
        let output = self
            .client
            .put_events()
            .entries(entry)
            .send()
            .await
            .map_err(|e| aws_sdk_eventbridge::error::DisplayErrorContext(e).to_string())?;
        // A refused entry is reported in the answer, not as an error.
        match output.failed_entry_count() {
            0 => Ok(()),
            _ => Err(output
                .entries()
                .iter()
                .find_map(|e| e.error_code())
                .unwrap_or("refused")
                .to_owned()),
        }
    }
}

#[cfg(feature = "aws")]
#[async_trait]
impl StatusEvents for EventBridgeEvents {
    async fn publish(&self, change: &StatusChange) {
        let result = match tokio::time::timeout(PUBLISH_TIMEOUT, self.put(change)).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {PUBLISH_TIMEOUT:?}")),
        };
        published(change, result);
    }
}
