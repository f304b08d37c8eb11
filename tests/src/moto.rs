//! A real AWS emulator for the AWS adapters: `moto_server` from the project
//! venv (the README's test command installs it), started once per test
//! binary on a free port and stopped when the test binary exits.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType,
};

pub const REGION: &str = "us-east-1";

pub struct Moto {
    pub endpoint: String,
    /// The watchdog shell; it ends (and stops moto_server) with this process.
    _watchdog: std::process::Child,
}

/// The command that starts the emulator: `MOTO_SERVER` if set, else the
/// venv's moto behind `tests/moto/serial_moto_server.py`, which answers one
/// request at a time so that conditional writes stay atomic as on DynamoDB.
fn moto_server_command() -> String {
    if let Ok(path) = std::env::var("MOTO_SERVER") {
        return format!("'{path}'");
    }
    let python = crate::repo_root().join(".venv/bin/python");
    assert!(
        crate::repo_root().join(".venv/bin/moto_server").is_file(),
        "moto_server is missing from .venv: run ./scripts/venv.sh (the README's test command does)"
    );
    let script = crate::repo_root().join("tests/moto/serial_moto_server.py");
    format!("'{}' '{}'", python.display(), script.display())
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
    let command = moto_server_command();
    // A watchdog shell owns moto_server and kills it once this test process is
    // gone, so no emulator outlives the tests (statics are never dropped).
    let script = format!(
        "{command} -H 127.0.0.1 -p {port} >/dev/null 2>&1 & m=$!; trap 'kill $m 2>/dev/null; wait $m' EXIT; \
         while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
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

    /// [`Moto::env`] plus the table, the KMS key and where
    /// `credentials-resolve` relays its reports: what the template gives
    /// every function that stores credentials.
    pub fn function_env(&self, table: &str, key: &str) -> Vec<(String, String)> {
        let mut env = self.env();
        env.push(("TABLE_NAME".to_owned(), table.to_owned()));
        env.push(("KMS_KEY_ID".to_owned(), key.to_owned()));
        env.push(("REPORT_RELAY_FUNCTION".to_owned(), "credentials-revalidate".to_owned()));
        env
    }

    /// A new table built from template.yaml's `CredentialsTable` (keys,
    /// attribute definitions, global secondary indexes; on demand), uniquely named.
    pub async fn create_table(&self) -> String {
        let name = format!("mailmind-test-{}", mailmind::ids::random_hex(6));
        let client = aws_sdk_dynamodb::Client::new(&self.sdk_config().await);
        let table = template_table();
        let str_of = |v: &serde_yaml_ng::Value, field: &str| -> String {
            v[field]
                .as_str()
                .unwrap_or_else(|| panic!("template.yaml CredentialsTable: {field} in {v:?}"))
                .to_owned()
        };
        let key_schema = |list: &serde_yaml_ng::Value| -> Vec<KeySchemaElement> {
            list.as_sequence()
                .expect("a KeySchema list")
                .iter()
                .map(|k| {
                    KeySchemaElement::builder()
                        .attribute_name(str_of(k, "AttributeName"))
                        .key_type(KeyType::from(str_of(k, "KeyType").as_str()))
                        .build()
                        .expect("key")
                })
                .collect()
        };
        let mut request = client
            .create_table()
            .table_name(&name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&table["KeySchema"])));
        for attribute in table["AttributeDefinitions"]
            .as_sequence()
            .expect("AttributeDefinitions")
        {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(str_of(attribute, "AttributeName"))
                    .attribute_type(ScalarAttributeType::from(str_of(attribute, "AttributeType").as_str()))
                    .build()
                    .expect("attribute"),
            );
        }
        for index in table["GlobalSecondaryIndexes"].as_sequence().into_iter().flatten() {
            let projection = &index["Projection"];
            let non_key: Option<Vec<String>> = projection["NonKeyAttributes"]
                .as_sequence()
                .map(|names| names.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect());
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(str_of(index, "IndexName"))
                    .set_key_schema(Some(key_schema(&index["KeySchema"])))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::from(str_of(projection, "ProjectionType").as_str()))
                            .set_non_key_attributes(non_key)
                            .build(),
                    )
                    .build()
                    .expect("index"),
            );
        }
        request.send().await.expect("create table on moto");
        name
    }

    /// Deletes a table [`Self::create_table`] made: moto keeps every table
    /// in memory, and its transactions slow down as they grow.
    pub async fn delete_table(&self, name: &str) {
        let client = aws_sdk_dynamodb::Client::new(&self.sdk_config().await);
        client
            .delete_table()
            .table_name(name)
            .send()
            .await
            .expect("delete table on moto");
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

/// The `Properties` of template.yaml's `CredentialsTable`.
fn template_table() -> serde_yaml_ng::Value {
    let path = crate::repo_root().join("template.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let root: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let properties = root["Resources"]["CredentialsTable"]["Properties"].clone();
    assert!(
        properties.is_mapping(),
        "template.yaml has no CredentialsTable properties"
    );
    properties
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
