//! Pushes status messages over the API Gateway Management API
//! (`POST @connections/{id}`): on AWS to the WebSocket API's stage, locally to
//! the local server's emulation of it. Same client, same code.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement as apigw;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::future::join_all;

use crate::domain::UserId;
use crate::ports::{Audience, ConnectionStore, Notifier};

/// A push that takes longer than this is abandoned; the HTTP request that
/// triggered it must not wait on a slow socket.
pub const POST_TIMEOUT: Duration = Duration::from_millis(1500);

/// Pushes through the API Gateway Management API to the connections the store knows.
pub struct ApiGatewayNotifier {
    client: apigw::Client,
    connections: Arc<dyn ConnectionStore>,
}

enum PostResult {
    Delivered,
    Gone,
    Failed,
}

impl ApiGatewayNotifier {
    /// Posts with `client`, to the connections `connections` lists.
    pub fn new(client: apigw::Client, connections: Arc<dyn ConnectionStore>) -> ApiGatewayNotifier {
        ApiGatewayNotifier { client, connections }
    }

    /// A client for the local server's `@connections` endpoint, signing with
    /// the local server's access key (the only one that endpoint accepts).
    pub fn local_client(endpoint: &str, access_key_id: &str, secret: &str) -> apigw::Client {
        let config = apigw::Config::builder()
            .behavior_version(apigw::config::BehaviorVersion::latest())
            .region(apigw::config::Region::new("local"))
            .credentials_provider(apigw::config::Credentials::new(
                access_key_id,
                secret.to_owned(),
                None,
                None,
                "mailmind-local",
            ))
            .endpoint_url(endpoint)
            // One attempt: a push is best effort and must stay within its bound.
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build();
        apigw::Client::from_conf(config)
    }

    async fn post(&self, connection_id: &str, message: &str) -> PostResult {
        let send = self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(message.as_bytes()))
            .send();
        match tokio::time::timeout(POST_TIMEOUT, send).await {
            Ok(Ok(_)) => PostResult::Delivered,
            Ok(Err(SdkError::ServiceError(e))) if e.err().is_gone_exception() || e.raw().status().as_u16() == 410 => {
                PostResult::Gone
            }
            Ok(Err(e)) => {
                tracing::warn!(connection_id, error = %apigw::error::DisplayErrorContext(&e), "push failed");
                PostResult::Failed
            }
            Err(_) => {
                tracing::warn!(connection_id, "push timed out");
                PostResult::Failed
            }
        }
    }
}

#[async_trait]
impl Notifier for ApiGatewayNotifier {
    async fn audience(&self, user: &UserId) -> Audience {
        let connection_ids = match tokio::time::timeout(POST_TIMEOUT, self.connections.connections(user)).await {
            Ok(Ok(ids)) => ids,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot look up WebSocket connections; not pushing");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!("WebSocket connection lookup timed out; not pushing");
                Vec::new()
            }
        };
        Audience {
            user: user.clone(),
            connection_ids,
        }
    }

    async fn push(&self, audience: &mut Audience, message: &str) {
        if audience.connection_ids.is_empty() {
            return;
        }
        let results = join_all(audience.connection_ids.iter().map(|id| self.post(id, message))).await;
        let mut gone = Vec::new();
        let (mut sent, mut failed) = (0, 0);
        for (id, result) in audience.connection_ids.iter().zip(results) {
            match result {
                PostResult::Delivered => sent += 1,
                PostResult::Failed => failed += 1,
                PostResult::Gone => gone.push(id.clone()),
            }
        }
        crate::metrics::pushes(sent, failed, gone.len());
        if gone.is_empty() {
            return;
        }
        let user = &audience.user;
        let forget = gone.iter().map(|id| async move {
            tracing::info!(connection_id = %id, "connection gone; forgetting it");
            match tokio::time::timeout(POST_TIMEOUT, self.connections.remove_connection(user, id)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(connection_id = %id, error = %e, "cannot forget gone connection"),
                Err(_) => tracing::warn!(connection_id = %id, "forgetting gone connection timed out"),
            }
        });
        join_all(forget).await;
        audience.connection_ids.retain(|id| !gone.contains(id));
    }
}

/// For deployments without a WebSocket API: nobody to tell.
pub struct NoNotifier;

#[async_trait]
impl Notifier for NoNotifier {
    async fn audience(&self, user: &UserId) -> Audience {
        Audience {
            user: user.clone(),
            connection_ids: Vec::new(),
        }
    }

    async fn push(&self, _audience: &mut Audience, _message: &str) {}
}

/// A notifier built on its first use: for a function that pushes only on
/// some requests (`credentials-resolve` pushes for reports, never for a
/// resolve), so its cold start does not build the push client.
pub struct LazyNotifier<F> {
    make: F,
    built: std::sync::OnceLock<Arc<dyn Notifier>>,
}

impl<F: Fn() -> Arc<dyn Notifier> + Send + Sync> LazyNotifier<F> {
    /// The notifier `make` builds, once, when first needed.
    pub fn new(make: F) -> LazyNotifier<F> {
        LazyNotifier {
            make,
            built: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> &Arc<dyn Notifier> {
        self.built.get_or_init(|| (self.make)())
    }
}

#[async_trait]
impl<F: Fn() -> Arc<dyn Notifier> + Send + Sync> Notifier for LazyNotifier<F> {
    async fn audience(&self, user: &UserId) -> Audience {
        self.get().audience(user).await
    }

    async fn push(&self, audience: &mut Audience, message: &str) {
        self.get().push(audience, message).await
    }
}
