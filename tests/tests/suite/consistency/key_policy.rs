//! The KMS key policy of `template.yaml`: the key's use is granted by name to
//! the roles of the functions that seal or open keys (those attaching a
//! managed policy with `kms:GenerateDataKey` / `kms:Decrypt`) and to the
//! consumers' roles (`KeyConsumerRoleArns`, decrypt only), always under the
//! encryption context `app=mailmind`; the account may administer the key
//! but not use it, so no identity policy (not even `kms:*` on `*`) lets any
//! other principal decrypt; and a Deny refuses use to everyone else. Pinned:
//! exactly check, ws-check, revalidate and the consumers may decrypt, create
//! and update may make data keys, resolve may do neither. Also the
//! `LogLevel` parameter: a fixed choice that cannot turn on `trace`.

use std::collections::BTreeSet;

use serde_yaml_ng::Value;

use super::cfn::{self as template, Template};
use super::fail_on;

/// What lets a principal use the key (or hand its use on).
const USE_ACTIONS: &[&str] = &[
    "kms:decrypt",
    "kms:encrypt",
    "kms:generatedatakey",
    "kms:generatedatakeywithoutplaintext",
    "kms:generatedatakeypair",
    "kms:generatedatakeypairwithoutplaintext",
    "kms:reencryptfrom",
    "kms:reencryptto",
    "kms:creategrant",
];

fn list(value: &Value) -> Vec<Value> {
    match value {
        Value::Sequence(items) => items.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    }
}

fn actions(statement: &Value) -> Vec<String> {
    list(&statement["Action"])
        .iter()
        .map(|a| a.as_str().unwrap_or("?").to_lowercase())
        .collect()
}

/// Whether IAM's wildcard `pattern` (e.g. `kms:*`, `kms:Re*`) matches `action`.
fn matches(pattern: &str, action: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == action,
        Some((prefix, _)) => action.starts_with(prefix),
    }
}

/// The role logical ids of the functions attaching a managed policy that
/// allows `action` (SAM names a function's role `<Function>Role`).
fn roles_of_functions_holding(template: &Template, action: &str) -> BTreeSet<String> {
    let policies: BTreeSet<&String> = template
        .resources
        .iter()
        .filter(|(_, r)| r.get("Type").and_then(Value::as_str) == Some("AWS::IAM::ManagedPolicy"))
        .filter(|(_, r)| {
            list(&r["Properties"]["PolicyDocument"]["Statement"])
                .iter()
                .any(|s| s["Effect"].as_str() == Some("Allow") && actions(s).iter().any(|a| matches(a, action)))
        })
        .map(|(id, _)| id)
        .collect();
    template
        .functions()
        .into_iter()
        .filter(|f| {
            template::references(&template.resources[&f.logical_id]["Properties"]["Policies"])
                .iter()
                .any(|r| policies.contains(r))
        })
        .map(|f| format!("{}Role", f.logical_id))
        .collect()
}

fn has_app_context_condition(statement: &Value) -> bool {
    statement["Condition"]["StringEquals"]["kms:EncryptionContext:app"].as_str() == Some("mailmind")
}

/// `value` with every `!If [HasKeyConsumers, a, b]` replaced by `a` when
/// `consumers`, else `b`, and list items that are `!Ref AWS::NoValue` dropped:
/// what CloudFormation makes of it for either kind of deployment.
fn with_consumers(value: &Value, consumers: bool) -> Value {
    match value {
        Value::Tagged(tagged) if tagged.tag == "If" => {
            let branches = list(&tagged.value);
            assert_eq!(branches[0].as_str(), Some("HasKeyConsumers"), "{value:?}");
            with_consumers(&branches[if consumers { 1 } else { 2 }], consumers)
        }
        Value::Tagged(tagged) => Value::Tagged(Box::new(serde_yaml_ng::value::TaggedValue {
            tag: tagged.tag.clone(),
            value: with_consumers(&tagged.value, consumers),
        })),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|v| with_consumers(v, consumers))
                .filter(|v| !format!("{v:?}").contains("AWS::NoValue"))
                .collect(),
        ),
        Value::Mapping(entries) => Value::Mapping(
            entries
                .iter()
                .map(|(k, v)| (k.clone(), with_consumers(v, consumers)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The `!Sub` text of a principal like `arn:...:iam::${AWS::AccountId}:root`.
fn is_account_root(principal: &Value) -> bool {
    format!("{principal:?}").contains(":root")
}

/// The parameter naming the consumers' roles.
const CONSUMERS: &str = "KeyConsumerRoleArns";

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| (*n).to_owned()).collect()
}

#[test]
fn key_policy_lets_exactly_the_service_roles_and_the_listed_consumers_use_the_key() {
    let template = super::template();
    let decrypters = roles_of_functions_holding(&template, "kms:decrypt");
    let sealers = roles_of_functions_holding(&template, "kms:generatedatakey");
    // Pinned: resolve answers keys sealed and may do neither.
    assert_eq!(
        decrypters,
        names(&[
            "CredentialsCheckFunctionRole",
            "CredentialsRevalidateFunctionRole",
            "KeysCheckFunctionRole",
            "KeysRollbackFunctionRole",
            "WsCheckFunctionRole"
        ])
    );
    assert_eq!(
        sealers,
        names(&[
            "CredentialsCreateFunctionRole",
            "CredentialsUpdateFunctionRole",
            "KeysCreateFunctionRole",
            "KeysUpdateFunctionRole"
        ])
    );
    for consumers in [false, true] {
        check_key_policy(&template, consumers, &decrypters, &sealers);
    }
}

/// The key policy of a deployment with (`consumers`) or without consumer roles.
fn check_key_policy(template: &Template, consumers: bool, decrypters: &BTreeSet<String>, sealers: &BTreeSet<String>) {
    let key = template
        .resources
        .get("CredentialsKey")
        .cloned()
        .expect("template.yaml has CredentialsKey");
    let statements = list(&with_consumers(&key["Properties"]["KeyPolicy"]["Statement"], consumers));
    let service_roles: BTreeSet<String> = decrypters.union(sealers).cloned().collect();
    let mut decrypters = decrypters.clone();
    let mut key_users = service_roles.clone();
    if consumers {
        decrypters.insert(CONSUMERS.to_owned());
        key_users.insert(CONSUMERS.to_owned());
    }

    let mut problems = Vec::new();
    let (mut decrypt_granted, mut seal_granted) = (BTreeSet::new(), BTreeSet::new());
    let mut deny_exempts = None;
    for statement in &statements {
        let sid = statement["Sid"].as_str().unwrap_or("<no Sid>");
        let acts = actions(statement);
        let principal = &statement["Principal"];
        if statement.get("NotAction").is_some()
            || statement.get("NotPrincipal").is_some()
            || statement.get("NotResource").is_some()
        {
            problems.push(format!(
                "{sid}: NotAction/NotPrincipal/NotResource hide what is granted"
            ));
        }
        match statement["Effect"].as_str() {
            Some("Allow") => {
                let grants_use = acts.iter().any(|a| USE_ACTIONS.iter().any(|u| matches(a, u)));
                if is_account_root(principal) {
                    // Administration only: were any use allowed to the
                    // account, identity policies would decide who decrypts.
                    if grants_use || acts.iter().any(|a| a.contains('*')) {
                        problems.push(format!("{sid}: the account may use the key or a wildcard: {acts:?}"));
                    }
                    continue;
                }
                let named = template::references(principal);
                if format!("{principal:?}").contains("\"*\"") || named.is_empty() {
                    problems.push(format!(
                        "{sid}: allows a principal other than named roles: {principal:?}"
                    ));
                }
                if !named.is_subset(&key_users) {
                    problems.push(format!(
                        "{sid}: names {named:?}, not only the service roles and consumers {key_users:?}"
                    ));
                }
                if !has_app_context_condition(statement) {
                    problems.push(format!("{sid}: use without the kms:EncryptionContext:app condition"));
                }
                for action in &acts {
                    match action.as_str() {
                        "kms:decrypt" => decrypt_granted.extend(named.iter().cloned()),
                        "kms:generatedatakey" if named.contains(CONSUMERS) => {
                            problems.push(format!("{sid}: consumers may make data keys"));
                        }
                        "kms:generatedatakey" => seal_granted.extend(named.iter().cloned()),
                        other => problems.push(format!("{sid}: allows {other}; only Decrypt or GenerateDataKey")),
                    }
                }
            }
            Some("Deny") => {
                if USE_ACTIONS.iter().all(|u| acts.iter().any(|a| matches(a, u)))
                    && format!("{principal:?}").contains("\"*\"")
                {
                    deny_exempts = Some(template::references(
                        &statement["Condition"]["ArnNotEquals"]["aws:PrincipalArn"],
                    ));
                }
            }
            other => problems.push(format!("{sid}: Effect {other:?}")),
        }
    }
    if decrypt_granted != decrypters {
        problems.push(format!(
            "kms:Decrypt is granted to {decrypt_granted:?}; the functions attaching a Decrypt policy have roles {decrypters:?}"
        ));
    }
    if &seal_granted != sealers {
        problems.push(format!(
            "kms:GenerateDataKey is granted to {seal_granted:?}; the functions attaching a GenerateDataKey policy have roles {sealers:?}"
        ));
    }
    match deny_exempts {
        Some(exempt) if exempt == key_users => {}
        Some(exempt) => problems.push(format!(
            "the Deny of use exempts {exempt:?}, the key's users are {key_users:?}"
        )),
        None => problems.push(format!(
            "no Deny of every use action {USE_ACTIONS:?} to Principal * except the service roles (ArnNotEquals aws:PrincipalArn)"
        )),
    }
    let deployment = if consumers {
        "with consumer roles"
    } else {
        "without consumer roles"
    };
    fail_on(
        problems,
        &format!("CredentialsKey's key policy ({deployment}) and the functions' KMS policies"),
    );
}

#[test]
fn log_level_parameter_is_a_fixed_choice_without_trace() {
    let text = std::fs::read_to_string(mailmind_tests::repo_root().join("template.yaml")).unwrap();
    let root: Value = serde_yaml_ng::from_str(&text).unwrap();
    let parameter = &root["Parameters"]["LogLevel"];
    let allowed = list(&parameter["AllowedValues"]);
    assert!(
        !allowed.is_empty(),
        "LogLevel must list its AllowedValues: {parameter:?}"
    );
    for value in &allowed {
        let value = value.as_str().expect("a string");
        assert!(!value.to_lowercase().contains("trace"), "{value}");
        // Only MailMind's own targets may go below warn.
        for directive in value.split(',') {
            let (target, level) = directive.split_once('=').unwrap_or(("", directive));
            let verbose = matches!(level.trim(), "info" | "debug");
            assert!(!verbose || target.starts_with("mailmind"), "{value}: {directive}");
        }
    }
    assert!(allowed.contains(&parameter["Default"]), "{parameter:?}");
}
