//! AWS Lambda's Invoke API, played locally for the functions other MailMind
//! functions call (`credentials-resolve`): `POST
//! /2015-03-31/functions/{name}/invocations`, so a consumer's unchanged SDK
//! code runs against this server by pointing the Lambda client's endpoint at
//! it with the local server's access key (`<data-dir>/aws-credentials`):
//! [`crate::doors`] lets in only requests signed with it (SigV4, service
//! `lambda`) or carrying its secret as a bearer token, and refuses others
//! with `403` as Lambda does.
//!
//! <https://docs.aws.amazon.com/lambda/latest/api/API_Invoke.html>

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::LocalGateway;

/// The function this server plays, by the name in `functions/`.
pub const RESOLVE_FUNCTION: &str = "credentials-resolve";

/// `credentials-resolve`, `<stack>-credentials-resolve`, or either as an ARN
/// (with or without a qualifier): the names a consumer may invoke it by.
fn is_resolve_function(name: &str) -> bool {
    let name = name.rsplit_once(":function:").map_or(name, |(_, rest)| rest);
    let name = name.split(':').next().unwrap_or(name);
    name == RESOLVE_FUNCTION || name.ends_with(&format!("-{RESOLVE_FUNCTION}"))
}

/// The header `name`, if it is there and is text.
fn text_header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

use crate::doors::rest_json_error as lambda_error;

/// `POST /2015-03-31/functions/{name}/invocations`.
pub async fn invoke(
    State(gateway): State<Arc<LocalGateway>>,
    Path(function): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    // The access key was checked on the way in (`doors::guard`).
    if !is_resolve_function(&function) {
        return lambda_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            format!("Function not found: this server plays only {RESOLVE_FUNCTION}."),
        );
    }
    // Lambda refuses a payload that is not JSON before any function runs.
    let event: Value = if body.is_empty() {
        json!({})
    } else {
        match serde_json::from_slice(&body) {
            Ok(event) => event,
            Err(_) => {
                return lambda_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    "Could not parse request body into json".to_owned(),
                );
            }
        }
    };
    let invocation_type = text_header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    match invocation_type {
        "DryRun" => StatusCode::NO_CONTENT.into_response(),
        "Event" => {
            tokio::spawn(async move {
                let budgets = gateway.budgets;
                mailmind::deadline::scope(budgets, mailmind::handlers::keys::invoke(&gateway.app, None, event)).await;
            });
            StatusCode::ACCEPTED.into_response()
        }
        _ => {
            let answer = mailmind::deadline::scope(
                gateway.budgets,
                mailmind::handlers::keys::invoke(&gateway.app, None, event),
            )
            .await;
            let mut response = (StatusCode::OK, axum::Json(answer)).into_response();
            response
                .headers_mut()
                .insert("x-amz-executed-version", HeaderValue::from_static("$LATEST"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_function_is_found_by_name_stack_name_or_arn() {
        for name in [
            "credentials-resolve",
            "mailmind-credentials-credentials-resolve",
            "arn:aws:lambda:eu-west-1:123456789012:function:mailmind-credentials-credentials-resolve",
            "arn:aws:lambda:eu-west-1:123456789012:function:credentials-resolve:$LATEST",
        ] {
            assert!(is_resolve_function(name), "{name}");
        }
        for name in ["credentials-check", "resolve", "credentials-resolver"] {
            assert!(!is_resolve_function(name), "{name}");
        }
    }
}
