//! Measures every function binary side by side with a hello-world
//! `lambda_runtime` binary built with the same profile: init time (process
//! start to first Runtime API request), warm invocation time against
//! `moto_server`, peak RSS, binary size, and the AWS calls each route makes
//! (counted by a proxy in front of the emulator).
//!
//! Run through `scripts/bench.sh`, which builds the release binaries first.
//! Writes the figures between the `bench:begin` / `bench:end` markers of the
//! output file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mailmind_tests::aws_proxy::CountingProxy;
use mailmind_tests::bench::{machine, median, ms, p90, write_between_markers};
use mailmind_tests::fake_providers::FakeProvider;
use mailmind_tests::lambda_emulator::LambdaProcess;
use mailmind_tests::moto::moto;
use mailmind_tests::{function_names, repo_root};
use serde_json::{Value, json};

const GROQ_KEY: &str = "gsk_bench0123456789abcdefghijklmnopqrstuvwxyzABCDEFG9xQa";
const GROQ_KEY_2: &str = "gsk_benchnext56789abcdefghijklmnopqrstuvwxyzABCDEFzzZZ";
/// A key whose provider lists a large catalogue (1800 models with ~220-character
/// ids): the worst ordinary load of the validating functions' memory.
const GROQ_KEY_LARGE: &str = "gsk_benchlarge6789abcdefghijklmnopqrstuvwxyzABCDEFlarg";

/// Peak RSS of a fresh process of a validating function after `rounds`
/// invocations that each validate the large-catalogue key.
async fn large_catalogue_rss(
    name: &str,
    binary: &Path,
    env: &[(String, String)],
    creator: &LambdaProcess,
    rounds: usize,
) -> Option<u64> {
    let process = LambdaProcess::start(binary, env).await;
    for i in 0..rounds {
        let user = format!("bench-large-{name}-{i}-{}", mailmind::ids::random_hex(4));
        let event = match name {
            "credentials-create" => event(
                name,
                &user,
                Some(json!({"provider": "groq", "api_key": GROQ_KEY_LARGE})),
            ),
            "credentials-update" => {
                create_credential(creator, &user, GROQ_KEY).await;
                event(name, &user, Some(json!({"api_key": GROQ_KEY_LARGE})))
            }
            _ => {
                create_credential(creator, &user, GROQ_KEY_LARGE).await;
                event(name, &user, None)
            }
        };
        let response = process.invoke(event).await.response();
        assert!(status_of(&response) < 300, "{name} with a large catalogue: {response}");
    }
    process.pid().and_then(peak_rss_kib)
}

/// A key whose provider, once the key is stored, answers a 4 MiB page of
/// `[0,0,0,…]` (about two million entries).
const GROQ_KEY_ZEROS: &str = "gsk_benchzeros789abcdefghijklmnopqrstuvwxyzABCDEFzero";

/// Peak RSS of a fresh `credentials-check` process that checks the zeros
/// key once: the page is refused while it is read (`bad_response`).
async fn zeros_page_rss(
    binary: &Path,
    env: &[(String, String)],
    creator: &LambdaProcess,
    groq: &FakeProvider,
) -> (usize, Option<u64>) {
    let user = format!("bench-zeros-{}", mailmind::ids::random_hex(4));
    // Stored while the key is good; from then on its provider answers the page.
    create_credential(creator, &user, GROQ_KEY_ZEROS).await;
    let page = mailmind_tests::fake_providers::page_of_zeros();
    let bytes = page.len();
    groq.answer(
        GROQ_KEY_ZEROS,
        wiremock::ResponseTemplate::new(200).set_body_raw(page, "application/json"),
    )
    .await;
    let process = LambdaProcess::start(binary, env).await;
    let response = process.invoke(event("credentials-check", &user, None)).await.response();
    let body: Value = serde_json::from_str(response["body"].as_str().unwrap_or("null")).unwrap_or_default();
    assert_eq!(
        (body["status"].as_str(), body["status_reason"].as_str()),
        (Some("error"), Some("bad_response")),
        "{response}"
    );
    (bytes, process.pid().and_then(peak_rss_kib))
}

/// Secret the authorizer checks HS256 tokens with during the benchmark.
const WS_SECRET: &str = "bench-ws-secret-of-at-least-32-bytes";

struct Options {
    bin_dir: PathBuf,
    out: PathBuf,
    cold_starts: usize,
    warm: usize,
}

fn parse_options() -> Options {
    let mut options = Options {
        bin_dir: repo_root().join("target/lambda"),
        out: repo_root().join("docs/PERFORMANCE.md"),
        cold_starts: 100,
        warm: 40,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--bin-dir" => options.bin_dir = PathBuf::from(value()),
            "--out" => options.out = PathBuf::from(value()),
            "--cold-starts" => options.cold_starts = value().parse().expect("a number"),
            "--warm" => options.warm = value().parse().expect("a number"),
            other => panic!("unknown argument {other}"),
        }
    }
    options
}

fn event(name: &str, user: &str, body: Option<Value>) -> Value {
    let mut event = mailmind_tests::rest_event(name, user);
    if name.starts_with("ws-") {
        let token = mailmind::auth::Hs256Verifier::new(WS_SECRET.as_bytes()).issue(user, 600);
        if event.get("queryStringParameters").is_some() {
            event["queryStringParameters"]["token"] = json!(token);
        }
        if event["requestContext"].get("authorizer").is_some() {
            event["requestContext"]["authorizer"]["principalId"] = json!(user);
        }
        event["requestContext"]["connectionId"] = json!(format!("conn-{user}"));
    }
    match body {
        Some(body) => mailmind_tests::with_body(event, body),
        None => event,
    }
}

fn status_of(response: &Value) -> u64 {
    response["statusCode"].as_u64().unwrap_or(0)
}

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Environment variables of a function process.
type Env = Vec<(String, String)>;

struct Figures {
    size_bytes: u64,
    init_median: Duration,
    init_p90: Duration,
    warm_median: Duration,
    warm_p90: Duration,
    peak_rss_kib: Option<u64>,
    calls: Vec<String>,
}

/// The work one warm invocation of `function` does, for a fresh `user`.
/// Preparation (a credential to read, update, check or delete) goes through
/// the create function and is not timed.
/// The functions that store what a benchmarked function needs first.
struct Preparers {
    create: LambdaProcess,
    update: LambdaProcess,
    /// The function's own table, deleted once it is measured.
    table: String,
}

async fn prepare(function: &str, user: &str, with: &Preparers) {
    if matches!(function, "credentials-create" | "credentials-list") || function.starts_with("ws-") {
        return;
    }
    create_credential(&with.create, user, GROQ_KEY).await;
    if function == "keys-rollback" {
        // A replaced key to roll back to.
        let update = event("credentials-update", user, Some(json!({"api_key": GROQ_KEY_2})));
        let updated = with.update.invoke(update).await.response();
        assert_eq!(status_of(&updated), 200, "replacing {user}'s key: {updated}");
    }
}

/// Stores `key` as `user`'s Groq key through the create function.
async fn create_credential(creator: &LambdaProcess, user: &str, key: &str) {
    let created = creator
        .invoke(event(
            "credentials-create",
            user,
            Some(json!({"provider": "groq", "api_key": key})),
        ))
        .await
        .response();
    // A fresh user's create answered 409 when moto paused past the SDK's
    // attempt timeout after the transaction landed: the SDK's retry carries
    // the same ClientRequestToken, which DynamoDB answers as the first
    // attempt and moto ignores. The key is stored either way.
    assert!(
        matches!(status_of(&created), 201 | 409),
        "creating {user}'s key: {created}"
    );
}

/// The function other MailMind functions invoke for a user's key.
const RESOLVE: &str = "credentials-resolve";

fn timed_event(function: &str, user: &str) -> Value {
    match function {
        RESOLVE => json!({"action": "resolve", "user_id": user, "provider": "groq"}),
        "credentials-create" => event(function, user, Some(json!({"provider": "groq", "api_key": GROQ_KEY}))),
        "credentials-update" | "keys-update" => event(function, user, Some(json!({"api_key": GROQ_KEY_2}))),
        "keys-create" => event(function, user, Some(json!({"name": "spare", "api_key": GROQ_KEY_2}))),
        _ => event(function, user, None),
    }
}

/// Process start to the runtime's first poll for work.
async fn cold_start(name: &str, binary: &Path, env: &[(String, String)]) -> Duration {
    let process = LambdaProcess::start(binary, env).await;
    let first = tokio::time::timeout(Duration::from_secs(30), process.api.first_poll())
        .await
        .unwrap_or_else(|_| panic!("{name} never polled: {}", process.logs()));
    first - process.started_at
}

/// Warm invocations, the AWS calls of one, and the peak RSS afterwards.
/// Each invocation is for a fresh user, unless `same_user` (then the first
/// user's credential is used again and again: resolve's warm key cache).
async fn warm(
    name: &str,
    binary: &Path,
    env: &[(String, String)],
    options: &Options,
    preparers: Option<&Preparers>,
    proxy: &CountingProxy,
    same_user: bool,
) -> (Vec<Duration>, Vec<String>, Option<u64>) {
    let process = LambdaProcess::start(binary, env).await;
    let mut times = Vec::new();
    let mut calls = Vec::new();
    let first_user = format!("bench-{name}-0-{}", mailmind::ids::random_hex(4));
    for i in 0..=options.warm {
        let user = if same_user || i == 0 {
            first_user.clone()
        } else {
            format!("bench-{name}-{i}-{}", mailmind::ids::random_hex(4))
        };
        let event = match preparers {
            Some(preparers) => {
                if !same_user || i == 0 {
                    prepare(name, &user, preparers).await;
                }
                timed_event(name, &user)
            }
            None => json!({"hello": "world"}),
        };
        proxy.take();
        let started = Instant::now();
        let response = process.invoke(event).await.response();
        let elapsed = started.elapsed();
        let ok = match name {
            "hello-world" => response["statusCode"] == 200,
            "ws-authorizer" => response["policyDocument"]["Statement"][0]["Effect"] == "Allow",
            RESOLVE => response["ok"] == true,
            _ => status_of(&response) < 300,
        };
        assert!(ok, "{name}: {response}");
        // The first invocation opens connections: not a warm one.
        if i == 0 {
            continue;
        }
        if i == 1 {
            calls = proxy.take();
        }
        times.push(elapsed);
    }
    let rss = process.pid().and_then(peak_rss_kib);
    (times, calls, rss)
}

fn summarize_calls(calls: &[String]) -> String {
    if calls.is_empty() {
        return "–".to_owned();
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for call in calls {
        *counts.entry(call.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(op, n)| if *n == 1 { op.to_string() } else { format!("{op} ×{n}") })
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let options = parse_options();
    let moto = moto();
    let (proxy, proxy_url) = CountingProxy::start(&moto.endpoint).await;
    let table = moto.create_table().await;
    let key = moto.create_kms_key().await;
    let groq = FakeProvider::start("groq").await;
    groq.accept(
        GROQ_KEY,
        &["llama-3.3-70b-versatile", "llama-3.1-8b-instant", "gemma2-9b-it"],
    )
    .await;
    groq.accept(GROQ_KEY_2, &["llama-3.1-8b-instant"]).await;
    let large = mailmind_tests::fake_providers::large_catalogue();
    let large: Vec<&str> = large.iter().map(String::as_str).collect();
    groq.accept(GROQ_KEY_LARGE, &large).await;
    groq.accept(GROQ_KEY_ZEROS, &["llama-3.1-8b-instant"]).await;
    let mut env = mailmind_tests::aws_proxy::through_proxy(moto.function_env(&table, &key), &proxy_url);
    env.extend([
        ("JWT_HS256_SECRET".to_owned(), WS_SECRET.to_owned()),
        // HS256 is refused on Lambda; this emulation declares itself local
        // (the REST functions, whose events carry claims, are unaffected).
        ("AWS_SAM_LOCAL".to_owned(), "true".to_owned()),
        groq.env(),
    ]);

    let creator_binary = options.bin_dir.join("credentials-create/bootstrap");
    let updater_binary = options.bin_dir.join("credentials-update/bootstrap");
    // Each function is measured over a table of its own, with a create
    // function to prepare it: moto copies the whole table for every
    // transaction, so a table holding every earlier function's users would
    // slow the later ones' writes past the SDK's attempt timeout.
    let deployment = |env: &Env| {
        let (moto, env, creator_binary, updater_binary) = (&moto, env.clone(), &creator_binary, &updater_binary);
        async move {
            let table = moto.create_table().await;
            let env: Env = env
                .into_iter()
                .map(|(k, v)| if k == "TABLE_NAME" { (k, table.clone()) } else { (k, v) })
                .collect();
            let create = LambdaProcess::start(creator_binary, &env).await;
            let update = LambdaProcess::start(updater_binary, &env).await;
            (env, Preparers { create, update, table })
        }
    };
    // Every declared function, after the baseline.
    let mut binaries: Vec<(String, PathBuf, Env)> = vec![(
        "hello-world".to_owned(),
        options.bin_dir.join("hello-world/bootstrap"),
        Vec::new(),
    )];
    binaries.extend(
        function_names()
            .into_iter()
            .map(|name| (name.clone(), options.bin_dir.join(&name).join("bootstrap"), env.clone())),
    );

    // Cold starts in rounds over all binaries, so machine noise hits them alike.
    let mut inits: Vec<Vec<Duration>> = vec![Vec::new(); binaries.len()];
    for _ in 0..options.cold_starts {
        for (index, (name, binary, env)) in binaries.iter().enumerate() {
            inits[index].push(cold_start(name, binary, env).await);
        }
    }
    eprintln!("cold starts measured");
    let mut rows = Vec::new();
    for ((name, binary, env), inits) in binaries.iter().zip(inits) {
        let (env, preparers) = if name == "hello-world" {
            (env.clone(), None)
        } else {
            let (env, preparers) = deployment(env).await;
            (env, Some(preparers))
        };
        // Resolve twice: a credential resolved for the first time (fresh
        // user each time: GetItem, Decrypt, the hourly last-use write), then
        // the same credential again and again (the warm key cache).
        let variants: &[(bool, &str)] = if name == RESOLVE {
            &[
                (false, " (first resolve of a credential)"),
                (true, " (same credential again)"),
            ]
        } else {
            &[(false, "")]
        };
        for (same_user, label) in variants {
            let (times, calls, peak_rss_kib) =
                warm(name, binary, &env, &options, preparers.as_ref(), &proxy, *same_user).await;
            eprintln!("{name}{label} measured");
            rows.push((
                format!("{name}{label}"),
                Figures {
                    size_bytes: std::fs::metadata(binary).map(|m| m.len()).unwrap_or(0),
                    init_median: median(inits.clone()),
                    init_p90: p90(inits.clone()),
                    warm_median: median(times.clone()),
                    warm_p90: p90(times),
                    peak_rss_kib,
                    calls,
                },
            ));
        }
        if let Some(preparers) = &preparers {
            moto.delete_table(&preparers.table).await;
        }
    }
    let hello_init = rows[0].1.init_median;

    let mut table = String::new();
    table.push_str(&format!(
        "Measured {} by `scripts/bench.sh` on {} ({} cold starts and {} warm invocations per function; \
         AWS is `moto_server` on loopback, the provider a local fake).\n\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        machine(),
        options.cold_starts,
        options.warm
    ));
    table.push_str("| binary | size (stripped) | init median (p90) | init vs hello world | warm invocation median (p90) | peak RSS | AWS calls per invocation |\n");
    table.push_str("|---|---|---|---|---|---|---|\n");
    let row = |name: &str, f: &Figures| {
        let (binary, label) = name.split_once(" (").map_or((name, ""), |(b, l)| (b, l));
        let name = if label.is_empty() {
            format!("`{binary}`")
        } else {
            format!("`{binary}` ({label}")
        };
        format!(
            "| {name} | {:.2} MB | {} ms ({} ms) | {:.2}× | {} ms ({} ms) | {} | {} |\n",
            f.size_bytes as f64 / 1_000_000.0,
            ms(f.init_median),
            ms(f.init_p90),
            f.init_median.as_secs_f64() / hello_init.as_secs_f64(),
            ms(f.warm_median),
            ms(f.warm_p90),
            f.peak_rss_kib
                .map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                .unwrap_or("–".into()),
            summarize_calls(&f.calls),
        )
    };
    for (name, figures) in &rows {
        table.push_str(&row(name, figures));
    }

    // The validating functions' memory with a large catalogue: the basis of
    // their `MemorySize` in template.yaml.
    table.push_str(
        "\nPeak RSS of the validating functions with a large catalogue (1800 models, ~220-character ids; \
         5 validations per fresh process):\n\n| function | peak RSS |\n|---|---|\n",
    );
    for (name, binary, env) in &binaries {
        if !matches!(
            name.as_str(),
            "credentials-create" | "credentials-update" | "credentials-check"
        ) {
            continue;
        }
        let (env, preparers) = deployment(env).await;
        let rss = large_catalogue_rss(name, binary, &env, &preparers.create, 5).await;
        moto.delete_table(&preparers.table).await;
        eprintln!("{name} with a large catalogue measured");
        table.push_str(&format!(
            "| `{name}` | {} |\n",
            rss.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                .unwrap_or("–".into())
        ));
    }
    // A page of millions of non-models, refused while it is read.
    if let Some((_, binary, env)) = binaries.iter().find(|(name, ..)| name == "credentials-check") {
        let (env, preparers) = deployment(env).await;
        let (bytes, rss) = zeros_page_rss(binary, &env, &preparers.create, &groq).await;
        moto.delete_table(&preparers.table).await;
        eprintln!("credentials-check with a page of zeros measured");
        table.push_str(&format!(
            "\nPeak RSS of `credentials-check` checking a key whose provider answers `{{\"data\":[0,0,0,…]}}` \
             ({:.1} MiB, about {} entries; answered `error` / `bad_response`): {}\n",
            bytes as f64 / (1024.0 * 1024.0),
            bytes / 2,
            rss.map(|k| format!("{:.1} MB", k as f64 / 1024.0))
                .unwrap_or("–".into())
        ));
    }
    println!("{table}");
    write_between_markers(&options.out, "bench", &table);
    eprintln!("figures written to {}", options.out.display());
}
