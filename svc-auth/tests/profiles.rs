//! The svc-user profile of every account, against a fake svc-user: created at
//! registration with svc-auth's service credential, and when svc-user is down,
//! created later by the retry task, exactly once. Registration announces
//! UserRegistered on `shop.auth.events`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use shopmesh_events::EnvelopeExt as _;
use shopmesh_proto::shop::events::v1::UserRegistered;
use shopmesh_testkit::{INTERNAL_TOKEN, wait_for_events};
use support::{
    FakeUserService, eventually, free_port, register, start, start_with_user_url, unique_email,
};

async fn pending_rows(db: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pending_profiles")
        .fetch_one(db)
        .await
        .unwrap()
}

#[tokio::test]
async fn registration_creates_the_profile_with_the_service_credential() {
    let mut h = start(&[]).await;
    let email = unique_email("Profiled");
    let user_id = register(&mut h.client, &email).await.user_id;

    let calls = h.users.calls_for(&user_id);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.request.email, email, "the email as typed");
    assert_eq!(call.request.display_name, "Test Shopper");
    assert_eq!(call.service_name.as_deref(), Some("svc-auth"));
    assert_eq!(call.service_token.as_deref(), Some(INTERNAL_TOKEN));
    assert_eq!(pending_rows(h.service.db()).await, 0);

    // UserRegistered, from the registration's transaction through the outbox
    // (svc-notification sends the welcome email from it).
    let events = wait_for_events(shopmesh_proto::topics::AUTH_EVENTS, &user_id, 1).await;
    let registered: UserRegistered = events[0].payload_as().unwrap();
    assert_eq!(registered.user_id, user_id);
    assert_eq!(registered.email, email);
    assert_eq!(registered.display_name, "Test Shopper");
    assert_eq!(events[0].aggregate_type, "user");
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn svc_user_down_at_registration_gets_the_profile_created_once_it_is_back() {
    let port = free_port();
    let users = FakeUserService::default();
    let mut h = start_with_user_url(
        &format!("http://127.0.0.1:{port}"),
        &[("PROFILE_RETRY_MAX_BACKOFF_SECONDS", "1")],
        users.clone(),
    )
    .await;

    // Nothing listens on svc-user's port: registration still succeeds.
    let user_id = register(&mut h.client, &unique_email("early"))
        .await
        .user_id;
    let user: uuid::Uuid = user_id.parse().unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
        .bind(user)
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert!(exists);
    let (attempts, last_error): (i32, Option<String>) =
        sqlx::query_as("SELECT attempts, last_error FROM pending_profiles WHERE user_id = $1")
            .bind(user)
            .fetch_one(h.service.db())
            .await
            .unwrap();
    assert!(attempts >= 1);
    assert!(last_error.is_some());

    // Let a retry or two fail against the closed port, then bring svc-user up.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(pending_rows(h.service.db()).await, 1);
    users.clone().serve(port).await;

    let db = h.service.db().clone();
    let done = eventually(Duration::from_secs(15), || {
        let db = db.clone();
        async move { pending_rows(&db).await == 0 }
    })
    .await;
    assert!(done, "the pending profile was never created");
    // Exactly one call reached svc-user, and no retry follows the success.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(users.calls_for(&user_id).len(), 1);
    assert_eq!(users.profile_count(), 1);
    assert_eq!(
        users.profile(&user_id).unwrap().display_name,
        "Test Shopper"
    );
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn svc_user_answering_unavailable_is_retried_until_it_succeeds() {
    let users = FakeUserService::default();
    users.set_failing(true);
    let addr = users.clone().serve(free_port()).await;
    let mut h = start_with_user_url(
        &format!("http://{addr}"),
        &[("PROFILE_RETRY_MAX_BACKOFF_SECONDS", "1")],
        users.clone(),
    )
    .await;

    let user_id = register(&mut h.client, &unique_email("retried"))
        .await
        .user_id;
    let last_error: Option<String> = sqlx::query_scalar("SELECT last_error FROM pending_profiles")
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert!(last_error.unwrap().contains("Unavailable"));

    let mut failures = 0;
    let retried = eventually(Duration::from_secs(10), || {
        failures = users.calls_for(&user_id).len();
        async move { failures >= 2 }
    })
    .await;
    assert!(retried, "svc-auth stopped retrying");

    users.set_failing(false);
    let db = h.service.db().clone();
    let done = eventually(Duration::from_secs(10), || {
        let db = db.clone();
        async move { pending_rows(&db).await == 0 }
    })
    .await;
    assert!(done, "the pending profile was never created");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let calls = users.calls_for(&user_id);
    assert_eq!(
        calls.iter().filter(|c| c.answered_ok).count(),
        1,
        "one successful CreateProfile: {calls:?}"
    );
    assert!(
        calls.last().unwrap().answered_ok,
        "nothing after the success"
    );
    assert_eq!(users.profile_count(), 1);
    h.service.stop().await.unwrap();
}
