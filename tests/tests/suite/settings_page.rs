//! The settings page at `/`, in a real headless Chromium driven over
//! WebDriver (Debian's `chromium` and `chromium-driver`, installed by
//! `scripts/browser.sh`, which the test command runs), against
//! `mailmind-local --sandbox`. Without chromedriver the test fails: it is
//! never skipped.
//!
//! `MAILMIND_UPDATE_SCREENSHOT=1` also writes `docs/settings-page.png` from
//! the page in the middle of the run.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use mailmind_tests::local_server::LocalServer;
use serde_json::{Value, json};

/// Bound on the page reaching a state: a readiness wait, never a speed check.
const PAGE_WAIT: Duration = Duration::from_secs(30);
/// WebDriver's Enter key: submitting and pressing buttons from the keyboard.
const ENTER: &str = "\u{E007}";

/// chromedriver on a free loopback port, killed with the test.
struct Chromedriver {
    process: tokio::process::Child,
    url: String,
}

fn chromedriver_path() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("chromedriver"))
        .find(|candidate| candidate.is_file())
        .expect("chromedriver is not installed: run scripts/browser.sh (scripts/test.sh does)")
}

impl Chromedriver {
    async fn start() -> Chromedriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let process = tokio::process::Command::new(chromedriver_path())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + PAGE_WAIT;
        loop {
            let status = http.get(format!("{url}/status")).send().await;
            if let Ok(answer) = status
                && let Ok(body) = answer.json::<Value>().await
                && body["value"]["ready"] == true
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver never became ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Chromedriver { process, url }
    }

    async fn browser(&self) -> Client {
        let mut options = json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,1700", "--lang=en-US"
        ]});
        // Debian's binary; chromedriver finds it too, but say which one.
        if std::path::Path::new("/usr/bin/chromium").is_file() {
            options["binary"] = json!("/usr/bin/chromium");
        }
        let mut capabilities = serde_json::Map::new();
        capabilities.insert("goog:chromeOptions".into(), options);
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&self.url)
            .await
            .expect("a Chromium session")
    }
}

/// The element `xpath` finds once the page shows it.
async fn shown(c: &Client, xpath: &str) -> Element {
    match c.wait().at_most(PAGE_WAIT).for_element(Locator::XPath(xpath)).await {
        Ok(element) => element,
        Err(e) => {
            let body = match c.find(Locator::Css("body")).await {
                Ok(body) => body.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            panic!("the page never showed {xpath}: {e}\n--- page text ---\n{body}")
        }
    }
}

/// `//*[@id=ID]` whose whole text is `text`.
fn with_text(id: &str, text: &str) -> String {
    format!("//*[@id='{id}'][normalize-space(.)='{text}']")
}

/// What the REST API says about the demo user's `provider` key.
async fn stored(base_url: &str, token: &str, provider: &str) -> (u16, Value) {
    let answer = reqwest::Client::new()
        .get(format!("{base_url}/api/v1/credentials/{provider}/"))
        .bearer_auth(token)
        .send()
        .await
        .expect("server answers");
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

async fn add_key(c: &Client, provider: &str, key: &str) {
    choose_provider(c, provider).await;
    let input = c.find(Locator::Id("key-value")).await.expect("key input");
    input.clear().await.expect("clear key input");
    // Typed and submitted from the keyboard, as a user would.
    input.send_keys(&format!("{key}{ENTER}")).await.expect("type the key");
}

async fn choose_provider(c: &Client, provider: &str) {
    c.find(Locator::Id("key-provider"))
        .await
        .expect("provider select")
        .select_by_value(provider)
        .await
        .expect("provider selectable");
}

/// [`add_key`] for a provider whose keys name their endpoint: the URL field first.
async fn add_key_at(c: &Client, provider: &str, endpoint: &str, key: &str) {
    choose_provider(c, provider).await;
    let field = c.find(Locator::Id("key-endpoint")).await.expect("endpoint input");
    assert!(field.is_displayed().await.unwrap(), "{provider} asks for its endpoint");
    field.clear().await.unwrap();
    field.send_keys(endpoint).await.expect("type the endpoint");
    add_key(c, provider, key).await;
}

async fn scenario(c: Client, base_url: String, demo_token: String, pasted_token: String) {
    c.goto(&format!("{base_url}/")).await.expect("page loads");
    assert_eq!(c.title().await.unwrap(), "AI provider keys · MailMind");

    // Signed in with the demo token, socket open, every provider listed.
    shown(&c, "//*[@id='who'][contains(., 'Signed in as demo-user')]").await;
    shown(&c, &with_text("connection", "Live updates: connected.")).await;
    shown(&c, &with_text("status-groq", "unchecked")).await;
    shown(&c, &with_text("status-xai", "unchecked")).await;
    let note = c.find(Locator::Id("sandbox-note")).await.unwrap();
    assert!(note.is_displayed().await.unwrap(), "the sandbox note is shown");

    // A valid key: `checking`, then `valid`, arrive live over the socket.
    add_key(&c, "groq", "gsk_sandbox-valid-0123456789abcdef").await;
    shown(
        &c,
        "//ol[@id='activity']/li[@data-provider='groq'][@data-status='checking'][contains(., 'Groq: Checking Groq API key...')]",
    )
    .await;
    shown(
        &c,
        "//ol[@id='activity']/li[@data-provider='groq'][@data-status='valid'][contains(., 'Groq: Groq API key is valid.')]",
    )
    .await;
    shown(&c, &with_text("status-groq", "valid")).await;
    shown(&c, &with_text("models-groq", "3 models")).await;
    shown(&c, &with_text("hint-groq", "gsk_…cdef")).await;
    shown(&c, "//*[@id='checked-groq']/time").await;
    let (status, body) = stored(&base_url, &demo_token, "groq").await;
    assert_eq!((status, body["status"].as_str()), (200, Some("valid")), "{body}");

    // Checked again, then its history: newest first, `checked` by the user above `set`.
    c.find(Locator::Id("check-groq")).await.unwrap().click().await.unwrap();
    shown(
        &c,
        "//ol[@id='activity']/li[@data-provider='groq'][@data-status='valid'][2]",
    )
    .await;
    c.find(Locator::Id("history-toggle-groq"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    shown(
        &c,
        "//ol[@id='history-groq']/li[1][@data-event='checked'][contains(., 'Checked by user: valid')]",
    )
    .await;
    shown(
        &c,
        "//ol[@id='history-groq']/li[2][@data-event='set'][contains(., 'Key set (gsk_…cdef)')]",
    )
    .await;
    shown(&c, "//ol[@id='history-groq']/li[1]/time").await;
    let more = c.find(Locator::Id("history-more-groq")).await.unwrap();
    assert!(!more.is_displayed().await.unwrap(), "one page: no 'More'");

    // Its model list.
    c.find(Locator::Id("models-groq")).await.unwrap().click().await.unwrap();
    shown(&c, &with_text("models-title", "Groq models (3)")).await;
    shown(&c, "//ul[@id='models-list']/li[contains(., 'llama-3.1-8b-instant')]").await;

    // An invalid key: the API's detail, shown as it is; nothing stored.
    add_key(&c, "google_gemini", "AIza-sandbox-invalid-0123456789").await;
    shown(
        &c,
        "//ol[@id='activity']/li[@data-provider='google_gemini'][@data-status='invalid']",
    )
    .await;
    let error = shown(
        &c,
        &with_text(
            "error",
            "Google Gemini rejected this API key: it is not valid. Nothing was stored.",
        ),
    )
    .await;
    assert!(error.is_displayed().await.unwrap());
    assert_eq!(error.attr("role").await.unwrap().as_deref(), Some("alert"));
    shown(&c, &with_text("hint-google_gemini", "No key")).await;
    assert_eq!(stored(&base_url, &demo_token, "google_gemini").await.0, 404);

    // A key with its own endpoint: a local OpenAI-compatible server, shown
    // with its URL; an internal address is refused with the API's reason.
    add_key_at(
        &c,
        "openai_compatible",
        "http://127.0.0.1:11434/v1/",
        "sandbox-valid-local",
    )
    .await;
    shown(&c, &with_text("status-openai_compatible", "valid")).await;
    shown(
        &c,
        &with_text("endpoint-openai_compatible", "http://127.0.0.1:11434/v1"),
    )
    .await;
    let (status, body) = stored(&base_url, &demo_token, "openai_compatible").await;
    assert_eq!(
        (status, body["base_url"].as_str()),
        (200, Some("http://127.0.0.1:11434/v1")),
        "{body}"
    );
    add_key_at(
        &c,
        "azure_openai",
        "https://169.254.169.254/",
        "sandbox-valid-0123456789abcdef",
    )
    .await;
    shown(
        &c,
        &with_text(
            "error",
            "This endpoint is not allowed: 169.254.169.254 is a link-local address. Nothing was stored.",
        ),
    )
    .await;
    assert_eq!(stored(&base_url, &demo_token, "azure_openai").await.0, 404);
    choose_provider(&c, "groq").await;
    let field = c.find(Locator::Id("endpoint-field")).await.unwrap();
    assert!(!field.is_displayed().await.unwrap(), "Groq keys have no endpoint");

    if std::env::var_os("MAILMIND_UPDATE_SCREENSHOT").is_some() {
        let png = c.screenshot().await.expect("screenshot");
        let path = mailmind_tests::repo_root().join("docs/settings-page.png");
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    // Delete, from the keyboard.
    c.find(Locator::Id("delete-groq"))
        .await
        .unwrap()
        .send_keys(ENTER)
        .await
        .unwrap();
    shown(&c, &with_text("hint-groq", "No key")).await;
    shown(&c, &with_text("status-groq", "unchecked")).await;
    assert_eq!(stored(&base_url, &demo_token, "groq").await.0, 404);

    // A pasted token signs in as its own user.
    c.find(Locator::Id("token"))
        .await
        .unwrap()
        .send_keys(&format!("{pasted_token}{ENTER}"))
        .await
        .unwrap();
    shown(
        &c,
        "//*[@id='who'][contains(., 'Signed in as pasted-user (pasted token)')]",
    )
    .await;
    shown(&c, &with_text("connection", "Live updates: connected.")).await;
}

/// Runs `scenario` in a fresh headless Chromium against a fresh
/// `mailmind-local --sandbox`, with the demo user's and another user's tokens.
async fn in_chromium<F>(name: &str, scenario: fn(Client, String, String, String) -> F)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let server = LocalServer::start_with_args(&dir.path().join("data"), &[], &["--sandbox"]).await;
    let mut driver = Chromedriver::start().await;
    let browser = driver.browser().await;
    let run = tokio::spawn(scenario(
        browser.clone(),
        server.base_url.clone(),
        server.token("demo-user"),
        server.token("pasted-user"),
    ))
    .await;
    let _ = browser.close().await;
    let _ = driver.process.kill().await;
    if let Err(failure) = run {
        std::panic::resume_unwind(failure.into_panic());
    }
    eprintln!("{name} in Chromium: {:.1} s", started.elapsed().as_secs_f64());
}

#[tokio::test]
async fn add_a_valid_key_see_it_live_see_an_invalid_ones_error_and_delete_it_in_chromium() {
    in_chromium("the settings page", scenario).await;
}

/// The `key_id` the page shows for the key in place `place` (1-based) of `provider`.
async fn key_id_at(c: &Client, provider: &str, place: usize) -> String {
    shown(c, &format!("//ol[@id='keys-{provider}']/li[{place}]"))
        .await
        .attr("data-key-id")
        .await
        .unwrap()
        .expect("a key item names its key")
}

async fn press(c: &Client, id: &str) {
    // Found again each time: every refresh rebuilds the rows.
    let deadline = Instant::now() + PAGE_WAIT;
    loop {
        let pressed = match c.find(Locator::Id(id)).await {
            Ok(control) => control.send_keys(ENTER).await.is_ok(),
            Err(_) => false,
        };
        if pressed {
            return;
        }
        assert!(Instant::now() < deadline, "the page never offered {id}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn several_keys_scenario(c: Client, base_url: String, demo_token: String, _other_token: String) {
    c.goto(&format!("{base_url}/")).await.expect("page loads");
    shown(&c, &with_text("connection", "Live updates: connected.")).await;
    add_key(&c, "groq", "gsk_sandbox-valid-0123456789abcdef").await;
    shown(&c, &with_text("status-groq", "valid")).await;
    shown(&c, &with_text("hint-groq", "gsk_…cdef")).await;

    // Another key, named, from the same form: listed second, not in use.
    let name = c.find(Locator::Id("key-name")).await.unwrap();
    assert!(
        name.is_displayed().await.unwrap(),
        "a provider with a key offers another"
    );
    name.send_keys("backup").await.unwrap();
    c.find(Locator::Id("key-value"))
        .await
        .unwrap()
        .send_keys("gsk_sandbox-valid-9876543210fedcba")
        .await
        .unwrap();
    press(&c, "key-add-another").await;
    shown(&c, "//ol[@id='keys-groq']/li[2]/strong[normalize-space(.)='backup']").await;
    shown(
        &c,
        "//*[@id='keys-toggle-groq'][starts-with(normalize-space(.), 'Keys (2)')]",
    )
    .await;
    let backup = key_id_at(&c, "groq", 2).await;
    assert!(backup.starts_with('k'), "{backup}");
    shown(&c, &with_text("key-note-groq-default", "(in use)")).await;

    // Moved up: it is the one in use now, and the provider row says so.
    press(&c, &format!("key-up-groq-{backup}")).await;
    shown(&c, &format!("//ol[@id='keys-groq']/li[1][@data-key-id='{backup}']")).await;
    shown(&c, &with_text("hint-groq", "gsk_…dcba")).await;
    let (_, primary) = stored(&base_url, &demo_token, "groq").await;
    assert_eq!(primary["key_id"], backup.as_str(), "{primary}");

    // Switched off: the next key is in use again.
    press(&c, &format!("key-switch-groq-{backup}")).await;
    shown(
        &c,
        &format!("//ol[@id='keys-groq']/li[1][@data-key-id='{backup}'][@data-enabled='false']"),
    )
    .await;
    shown(&c, &with_text(&format!("key-note-groq-{backup}"), "(switched off)")).await;
    shown(&c, &with_text("hint-groq", "gsk_…cdef")).await;

    // Replaced from the form: the old key is kept, and rolled back to.
    add_key(&c, "groq", "gsk_sandbox-valid-aaaabbbbcccc1111").await;
    shown(&c, &with_text("hint-groq", "gsk_…1111")).await;
    shown(
        &c,
        "//*[@id='key-previous-groq-default'][starts-with(normalize-space(.), 'Replaced gsk_…cdef, kept until')]",
    )
    .await;
    assert!(
        c.find(Locator::Id(&format!("key-rollback-groq-{backup}")))
            .await
            .is_err(),
        "a key never replaced has nothing to roll back to"
    );
    press(&c, "key-rollback-groq-default").await;
    shown(&c, &with_text("hint-groq", "gsk_…cdef")).await;
    shown(
        &c,
        "//*[@id='key-previous-groq-default'][starts-with(normalize-space(.), 'Replaced gsk_…1111')]",
    )
    .await;
    shown(&c, "//*[@id='announcer'][contains(., 'rolled back to gsk_…cdef')]").await;

    // One key deleted; the other stays.
    press(&c, &format!("key-delete-groq-{backup}")).await;
    shown(
        &c,
        "//*[@id='keys-toggle-groq'][starts-with(normalize-space(.), 'Keys (1)')]",
    )
    .await;
    let keys: Value = reqwest::Client::new()
        .get(format!("{base_url}/api/v1/credentials/groq/keys/"))
        .bearer_auth(&demo_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hints: Vec<&str> = mailmind_tests::strings(&keys, "key_hint");
    assert_eq!(hints, ["gsk_…cdef"]);
}

#[tokio::test]
async fn several_keys_are_added_reordered_switched_off_rolled_back_and_deleted_in_chromium() {
    in_chromium("several keys", several_keys_scenario).await;
}
