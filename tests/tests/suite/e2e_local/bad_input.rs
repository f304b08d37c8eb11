//! Bad input and protocol through the real binary: unknown methods, oversized
//! headers and bodies that are not UTF-8 get the contract's JSON error shape
//! (and a 405 keeps its `Allow`).

use super::*;

async fn raw(s: &LocalServer, method: &str, path: &str, headers: &[(&str, String)], body: Option<Vec<u8>>) -> Answer {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().request(method, format!("{}{path}", s.base_url));
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    if let Some(body) = body {
        request = request.body(body);
    }
    Answer::read(request.send().await.expect("an answer")).await
}

#[tokio::test]
async fn unknown_methods_oversized_headers_and_non_utf8_bodies_get_json_errors() {
    let w = world().await;
    let s = &w.server;
    let auth = ("authorization", format!("Bearer {}", s.token("user-a")));

    for method in ["FOO", "PROPFIND", "PATCH"] {
        let answer = raw(s, method, "/api/v1/credentials/", std::slice::from_ref(&auth), None).await;
        assert_error(&answer, 405, "method_not_allowed");
        assert_eq!(answer.headers["allow"], "GET, POST", "{method}");
        let answer = raw(s, method, "/api/v1/nowhere", std::slice::from_ref(&auth), None).await;
        assert_error(&answer, 404, "not_found");
    }

    // Over API Gateway's 10 KiB of headers, one large header or many small ones.
    let big = raw(
        s,
        "GET",
        "/api/v1/credentials/",
        &[auth.clone(), ("x-big", "x".repeat(12 * 1024))],
        None,
    )
    .await;
    assert_error(&big, 431, "headers_too_large");
    let many: Vec<(&str, String)> = std::iter::once(auth.clone())
        .chain((0..40).map(|_| ("x-filler", "y".repeat(400))))
        .collect();
    assert_error(
        &raw(s, "GET", "/api/v1/credentials/", &many, None).await,
        431,
        "headers_too_large",
    );
    // Ordinary headers still pass.
    let fine = raw(
        s,
        "GET",
        "/api/v1/credentials/",
        &[auth.clone(), ("x-ok", "z".repeat(2048))],
        None,
    )
    .await;
    assert_eq!(fine.status, 200, "{}", fine.text);

    // Bodies that are not UTF-8, on every route that reads one; nothing stored.
    let mut not_utf8 = vec![0xff, 0xfe, 0xc3, 0x28];
    not_utf8.extend_from_slice(br#"{"provider":"groq","api_key":"gsk_x"}"#);
    let json_type = ("content-type", "application/json".to_owned());
    for (method, path) in [("POST", "/api/v1/credentials/"), ("PUT", "/api/v1/credentials/groq/")] {
        let answer = raw(
            s,
            method,
            path,
            &[auth.clone(), json_type.clone()],
            Some(not_utf8.clone()),
        )
        .await;
        assert_error(&answer, 400, "invalid_request");
    }
    assert_eq!(w.groq.requests().await.len(), 0, "no provider call");
    assert_error(
        &s.call_as("user-a", "GET", "/api/v1/credentials/groq/", None).await,
        404,
        "credential_not_found",
    );
}
