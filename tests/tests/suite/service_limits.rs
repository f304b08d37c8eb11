//! The validation budget at the service: create, update and check spend it
//! and are refused once it is spent, before any provider call; failure-report
//! re-checks do not spend it and still run when it is spent.

use std::sync::Arc;

use mailmind::adapters::local_keyring::LocalKeyring;
use mailmind::adapters::notifier::NoNotifier;
use mailmind::adapters::sqlite_store::SqliteStore;
use mailmind::domain::activity::Consumer;
use mailmind::domain::{ApiKey, ReportResult, UsageOutcome, UserId, provider};
use mailmind::service::{CredentialService, ServiceError, ValidationLimit};
use mailmind_tests::fake_providers::AcceptsAll;
use zeroize::Zeroizing;

const KEY: &str = "gsk_limits0123456789abcdefghijklmnopqrstuvwxyzAB9xQa";
const GEMINI_KEY: &str = "limits-gemini-0123456789abcdefghijklmnopqrstu";
const KEY_2: &str = "gsk_limits2123456789abcdefghijklmnopqrstuvwxyzAB9xQb";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validations_spend_the_budget_and_report_rechecks_do_not() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(&dir.path().join("mailmind.db")).unwrap());
    let providers = Arc::new(AcceptsAll::default());
    let limit = ValidationLimit {
        per_window: 2,
        window: chrono::Duration::hours(1),
    };
    let service = CredentialService::new(
        Arc::clone(&store) as _,
        Arc::new(LocalKeyring::from_master(Zeroizing::new([7u8; 32]))),
        Arc::clone(&providers) as _,
        Arc::new(NoNotifier),
    )
    .with_validation_limit(Arc::clone(&store) as _, limit);
    let (user, other) = (UserId::parse("user-a").unwrap(), UserId::parse("user-b").unwrap());
    let groq = provider::find("groq").unwrap();
    let gemini = provider::find("google_gemini").unwrap();

    service
        .create(&user, groq, ApiKey::parse(KEY).unwrap().into())
        .await
        .unwrap();
    service.check(&user, groq).await.unwrap();
    assert_eq!(providers.checks(), 2);
    // Answers that call no provider spend nothing: a duplicate, a missing key.
    assert!(matches!(
        service.create(&user, groq, ApiKey::parse(KEY).unwrap().into()).await,
        Err(ServiceError::CredentialExists(_))
    ));
    assert!(matches!(
        service.check(&user, gemini).await,
        Err(ServiceError::CredentialNotFound(_))
    ));

    let refused = [
        service.check(&user, groq).await.map(|_| ()),
        service
            .update(&user, groq, ApiKey::parse(KEY_2).unwrap().into())
            .await
            .map(|_| ()),
        service
            .create(&user, gemini, ApiKey::parse(GEMINI_KEY).unwrap().into())
            .await
            .map(|_| ()),
    ];
    for answer in refused {
        match answer {
            Err(ServiceError::TooManyRequests {
                limit: 2,
                window_secs: 3600,
                retry_after_secs,
            }) => assert!((1..=3600).contains(&retry_after_secs), "{retry_after_secs}"),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(providers.checks(), 2, "a refusal calls no provider");
    let stored = service.get(&user, groq).await.unwrap();
    assert_eq!(
        stored.key_hint.as_deref(),
        Some("gsk_…9xQa"),
        "the update stored nothing"
    );
    assert!(matches!(
        service.get(&user, gemini).await,
        Err(ServiceError::CredentialNotFound(_))
    ));

    // A MailMind function reports the key refused: the re-check runs although
    // the user's budget is spent, and spends none of it.
    let revision = service
        .resolve(&user, groq, &Consumer::unknown())
        .await
        .unwrap()
        .key_revision;
    let report = service
        .report(
            &user,
            groq,
            &revision,
            UsageOutcome::Rejected,
            &Consumer::unknown(),
            None,
        )
        .await
        .unwrap();
    assert_eq!(report.result, ReportResult::Rechecked);
    assert_eq!(providers.checks(), 3);

    // Another user has a budget of their own.
    service
        .create(&other, groq, ApiKey::parse(KEY).unwrap().into())
        .await
        .unwrap();
}
