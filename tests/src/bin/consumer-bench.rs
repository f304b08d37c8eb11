//! What a consumer of `credentials-resolve` sees: the time of
//! `KeyClient::resolve` and the calls it makes, cold (a new client: invoke
//! and KMS `Decrypt`), warm (the data key remembered: invoke only) and with
//! the record cache (no call). The function is the release binary under the
//! Runtime API emulator behind an emulated Invoke API; KMS and DynamoDB are
//! `moto_server` behind a counting proxy.
//!
//! Run through `scripts/bench.sh`, which builds the release binaries first.
//! Writes between the `consumer-bench:begin` / `consumer-bench:end` markers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mailmind_keys::Calls;
use mailmind_tests::aws_proxy::{CountingProxy, through_proxy};
use mailmind_tests::bench::{machine, median, ms, p90, write_between_markers};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::invoke_api::InvokeApi;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{repo_root, rest_event, with_body};
use serde_json::json;

const GROQ_KEY: &str = "gsk_consumerbench9abcdefghijklmnopqrstuvwxyzABCDEFG9xQa";
const USER: &str = "bench-consumer";

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut bin_dir, mut out, mut rounds) = (
        repo_root().join("target/lambda"),
        repo_root().join("docs/PERFORMANCE.md"),
        50usize,
    );
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bin-dir" => bin_dir = PathBuf::from(value()),
            "--out" => out = PathBuf::from(value()),
            "--rounds" => rounds = value().parse().expect("a number"),
            other => panic!("unknown argument {other}"),
        }
    }

    let moto = moto();
    let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
    let groq = FakeProvider::start("groq").await;
    groq.accept(GROQ_KEY, &["llama-3.3-70b-versatile"]).await;
    let invoke_api = InvokeApi::start().await;
    let (table, key) = (moto.create_table().await, moto.create_kms_key().await);
    let mut env = through_proxy(moto.function_env(&table, &key), &proxy_url);
    env.push(groq.env());
    // `target/lambda/<name>/bootstrap` as shipped, or a plain `target/<profile>/<name>`.
    let binary = |name: &str| {
        let shipped = bin_dir.join(name).join("bootstrap");
        if shipped.is_file() { shipped } else { bin_dir.join(name) }
    };
    let create = LambdaProcess::start(&binary("credentials-create"), &env).await;
    let resolve = Arc::new(LambdaProcess::start(&binary("credentials-resolve"), &env).await);
    invoke_api.register("credentials-resolve", Arc::clone(&resolve));
    let event = with_body(
        rest_event("credentials-create", USER),
        json!({"provider": "groq", "api_key": GROQ_KEY}),
    );
    assert_eq!(create.invoke(event).await.response()["statusCode"], 201);

    let config = moto.sdk_config().await;
    let consumer = || invoke_api.consumer(&config, &proxy_url, "bench");

    // Each case: (label, a client per round or one for all, its record cache).
    let mut table = format!(
        "Measured {} by `scripts/bench.sh` on {} ({rounds} resolves per case; the function warm, \
         its Invoke API emulated on loopback, KMS and DynamoDB `moto_server`: on AWS an invoke adds \
         Lambda's own few milliseconds).\n\n\
         | consumer's resolve | median (p90) | consumer's calls per resolve | AWS calls per resolve |\n\
         |---|---|---|---|\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        machine(),
    );
    let shared = consumer();
    let cached = consumer().with_record_cache(Duration::from_secs(600));
    shared.resolve(USER, "groq").await.expect("warms");
    cached.resolve(USER, "groq").await.expect("warms");
    for (label, fresh_client, client) in [
        ("cold (new client: invoke + KMS Decrypt)", true, &shared),
        ("warm (data key remembered)", false, &shared),
        ("record cache on (`with_record_cache`)", false, &cached),
    ] {
        let mut times = Vec::new();
        let mut calls = Calls::default();
        let mut aws_calls = Vec::new();
        for _ in 0..rounds {
            let fresh;
            let client = if fresh_client {
                fresh = consumer();
                &fresh
            } else {
                client
            };
            let before = client.calls();
            proxy.take();
            let started = Instant::now();
            let key = client.resolve(USER, "groq").await.expect("resolves");
            times.push(started.elapsed());
            drop(key);
            let after = client.calls();
            calls.invokes += after.invokes - before.invokes;
            calls.kms_decrypts += after.kms_decrypts - before.kms_decrypts;
            aws_calls = proxy.take();
        }
        eprintln!("{label} measured");
        let per = |n: u64| n as f64 / rounds as f64;
        table.push_str(&format!(
            "| {label} | {} ms ({} ms) | {:.0} invoke, {:.0} KMS | {} |\n",
            ms(median(times.clone())),
            ms(p90(times)),
            per(calls.invokes),
            per(calls.kms_decrypts),
            if aws_calls.is_empty() {
                "none".to_owned()
            } else {
                aws_calls.join(", ")
            },
        ));
    }
    println!("{table}");
    write_between_markers(&out, "consumer-bench", &table);
    eprintln!("figures written to {}", out.display());
}
