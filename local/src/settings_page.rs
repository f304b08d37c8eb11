//! The settings page at `/`: the reference for the frontend's settings page
//! and key form, on the REST API and the socket of this very server. One
//! static file with inline CSS and JavaScript, compiled into the binary: no
//! build step, nothing downloaded at run time.
//!
//! It signs in with the demo token of the banner, put into the page when it
//! is served. That is safe only because this server answers loopback names
//! alone (`loopback.rs`): no other site can read the page, since it sends no
//! CORS header to any origin but the ones given with `--cors-origin`.

use axum::http::HeaderValue;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
};
use axum::response::{IntoResponse, Response};

const PAGE: &str = include_str!("settings_page.html");

/// The providers whose keys name their own endpoint, for the page's URL
/// field: `{"<id>": {"example": .., "key_optional": ..}}`, from the registry.
fn endpoint_providers() -> String {
    let map: serde_json::Map<String, serde_json::Value> = mailmind::domain::provider::PROVIDERS
        .iter()
        .filter_map(|p| {
            let example = p.endpoint_example()?;
            Some((
                p.id.to_owned(),
                serde_json::json!({"example": example, "key_optional": p.key_optional}),
            ))
        })
        .collect();
    // Inside a <script> element: no `<` may close it early.
    serde_json::Value::Object(map).to_string().replace('<', "\\u003c")
}

/// What the page is told when it is served.
pub struct SettingsPage {
    /// Signs the page in until the user pastes a token of their own.
    pub demo_token: String,
    /// Shows the sandbox's test keys.
    pub sandbox: bool,
}

impl SettingsPage {
    /// The page, with a fresh nonce that lets only its own inline script and style run.
    pub fn render(&self) -> Response {
        let nonce = mailmind::ids::random_hex(16);
        let html = PAGE
            .replace("{{NONCE}}", &nonce)
            .replace("{{DEMO_TOKEN}}", &self.demo_token)
            .replace("{{SANDBOX}}", if self.sandbox { "on" } else { "off" })
            .replace("{{ENDPOINT_PROVIDERS}}", &endpoint_providers());
        let policy = format!(
            "default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        );
        let mut response = html.into_response();
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        headers.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        if let Ok(policy) = HeaderValue::from_str(&policy) {
            headers.insert(CONTENT_SECURITY_POLICY, policy);
        }
        response
    }
}
