//! A real AWS emulator for the AWS adapters: `moto_server` from the project
//! venv (the README's test command installs it), started once per test
//! binary on a free port and stopped when the test binary exits.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub endpoint: String,
    /// The watchdog shell; it ends (and stops moto_server) with this process.
    _watchdog: std::process::Child,
}

fn moto_server_binary() -> PathBuf {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let path = crate::repo_root().join(".venv/bin/moto_server");
    assert!(
        path.is_file(),
        "{} is missing: run ./scripts/venv.sh (the README's test command does)",
        path.display()
    );
    path
}

/// The shared emulator of this test binary.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(start)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn start() -> Moto {
    let port = free_port();
    let binary = moto_server_binary();
    // A watchdog shell owns moto_server and kills it once this test process is
    // gone, so no emulator outlives the tests (statics are never dropped).
    let script = format!(
        "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null; wait $m' EXIT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
        binary.display(),
        parent = std::process::id()
    );
    let watchdog = Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    Moto {
        endpoint,
        _watchdog: watchdog,
    }
}

impl Moto {
    /// SDK configuration pointing every client at the emulator.
    pub async fn sdk_config(&self) -> SdkConfig {
        aws_config::defaults(BehaviorVersion::latest())
            .region(aws_config::Region::new(REGION))
            .endpoint_url(&self.endpoint)
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
                "testing", "testing", None, None, "moto",
            ))
            .load()
            .await
    }

    /// The environment a Lambda function process needs to reach the emulator.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_REGION", REGION),
            ("AWS_DEFAULT_REGION", REGION),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_SESSION_TOKEN", "testing"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    /// A new table of the template's shape (`pk`/`sk` strings, on demand), uniquely named.
    pub async fn create_table(&self) -> String {
        let name = format!("mailmind-test-{}", mailmind::ids::random_hex(6));
        let client = aws_sdk_dynamodb::Client::new(&self.sdk_config().await);
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("attribute")
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .expect("key")
        };
        client
            .create_table()
            .table_name(&name)
            .attribute_definitions(attribute("pk"))
            .attribute_definitions(attribute("sk"))
            .key_schema(key("pk", KeyType::Hash))
            .key_schema(key("sk", KeyType::Range))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .expect("create table on moto");
        name
    }

    /// A new symmetric KMS key; returns its ARN.
    pub async fn create_kms_key(&self) -> String {
        let client = aws_sdk_kms::Client::new(&self.sdk_config().await);
        let key = client
            .create_key()
            .description("mailmind test key")
            .send()
            .await
            .expect("create key on moto");
        key.key_metadata()
            .map(|m| m.arn().unwrap_or(m.key_id()).to_owned())
            .expect("key metadata")
    }
}

/// SDK configuration aimed at a port nothing listens on, retries off: a
/// dependency that is down, for real.
pub async fn unreachable_sdk_config() -> SdkConfig {
    let port = free_port();
    aws_config::defaults(BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("t", "t", None, None, "test"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await
}
