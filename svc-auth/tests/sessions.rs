//! Sessions end to end against real PostgreSQL and Redis: sign-in, refresh
//! rotation, logout, theft detection, and "log out everywhere".

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use shopmesh_proto::shop::auth::v1::{LogoutAllRequest, LogoutRequest};
use support::{assert_refused, bearer, login, refresh, register, start, unique_email, validate};
use tonic::Code;

#[tokio::test]
async fn register_login_refresh_logout_and_every_old_token_is_dead() {
    let mut h = start(&[]).await;
    let email = unique_email("flow");
    let registered = register(&mut h.client, &email).await;
    let first = registered.tokens.unwrap();
    assert_eq!(first.token_type, "Bearer");
    assert_eq!(first.expires_in_seconds, 900);
    assert_eq!(first.refresh_expires_in_seconds, 3600);

    // A second session by signing in.
    let second = login(&mut h.client, &email.to_uppercase()).await;
    let claims = validate(&mut h.client, &second.access_token).await.unwrap();
    assert_eq!(claims.user_id, registered.user_id);
    assert!(claims.roles.is_empty());
    let issued = claims.issue_time.unwrap().seconds;
    assert_eq!(claims.expire_time.unwrap().seconds - issued, 900);

    // A USER call with the first session's access token: it ends that session only.
    h.client
        .logout(bearer(LogoutRequest {}, &first.access_token))
        .await
        .unwrap();
    assert_refused(&mut h.client, &first.access_token).await;
    assert_eq!(
        refresh(&mut h.client, &first.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );

    // The second session refreshes: a new pair in the same session.
    let renewed = refresh(&mut h.client, &second.refresh_token).await.unwrap();
    assert_ne!(renewed.refresh_token, second.refresh_token);
    assert_ne!(renewed.access_token, second.access_token);
    let renewed_claims = validate(&mut h.client, &renewed.access_token)
        .await
        .unwrap();
    assert_eq!(renewed_claims.session_id, claims.session_id);
    let rotated: bool = sqlx::query_scalar(
        "SELECT used_at IS NOT NULL FROM refresh_tokens WHERE token_hash = sha256($1::bytea)",
    )
    .bind(second.refresh_token.as_bytes())
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert!(rotated, "the presented refresh token is marked used");
    let stored_in_clear: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE encode(token_hash, 'escape') = $1",
    )
    .bind(&renewed.refresh_token)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(stored_in_clear, 0);

    // Logout with the renewed access token ends the session.
    h.client
        .logout(bearer(LogoutRequest {}, &renewed.access_token))
        .await
        .unwrap();
    for token in [&second.access_token, &renewed.access_token] {
        assert_refused(&mut h.client, token).await;
        let status = h
            .client
            .logout(bearer(LogoutRequest {}, token))
            .await
            .unwrap_err();
        assert_eq!(
            status.code(),
            Code::Unauthenticated,
            "a USER call is refused"
        );
    }
    let status = refresh(&mut h.client, &renewed.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_reused_refresh_token_revokes_the_session() {
    let mut h = start(&[]).await;
    let email = unique_email("theft");
    let stolen = register(&mut h.client, &email).await.tokens.unwrap();

    // The legitimate client refreshes first…
    let legit = refresh(&mut h.client, &stolen.refresh_token).await.unwrap();
    validate(&mut h.client, &legit.access_token).await.unwrap();

    // …then the thief presents the old token: refused, and the session dies.
    let status = refresh(&mut h.client, &stolen.refresh_token)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    use tonic_types::StatusExt;
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "REFRESH_TOKEN_REUSED"
    );

    // Both the newer refresh token and the access token are dead now.
    assert_eq!(
        refresh(&mut h.client, &legit.refresh_token)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    for token in [&legit.access_token, &stolen.access_token] {
        assert_refused(&mut h.client, token).await;
    }
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens WHERE revoked_at IS NULL AND used_at IS NULL",
    )
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(live, 0, "the whole family is revoked");

    // Other sessions of the same user are untouched.
    let other = login(&mut h.client, &email).await;
    validate(&mut h.client, &other.access_token).await.unwrap();
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_at_most_one_through() {
    let mut h = start(&[]).await;
    let tokens = register(&mut h.client, &unique_email("race"))
        .await
        .tokens
        .unwrap();
    let (mut a, mut b) = (h.client.clone(), h.client.clone());
    let (first, second) = tokio::join!(
        refresh(&mut a, &tokens.refresh_token),
        refresh(&mut b, &tokens.refresh_token)
    );
    // One wins and the other is reuse (which then kills the winner too), or the
    // reuse is seen first: either way no two live sessions come out of one token.
    let winners = [&first, &second].iter().filter(|r| r.is_ok()).count();
    assert!(winners <= 1, "{first:?} / {second:?}");
    for result in [first, second].into_iter().flatten() {
        assert_refused(&mut h.client, &result.access_token).await;
    }
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn logging_out_everywhere_ends_every_session_of_the_user_only() {
    let mut h = start(&[]).await;
    let email = unique_email("everywhere");
    let phone = register(&mut h.client, &email).await.tokens.unwrap();
    let laptop = login(&mut h.client, &email).await;
    let someone_else = register(&mut h.client, &unique_email("bystander"))
        .await
        .tokens
        .unwrap();

    let response = h
        .client
        .logout_all(bearer(LogoutAllRequest {}, &laptop.access_token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.revoked_sessions, 2);

    for tokens in [&phone, &laptop] {
        assert_refused(&mut h.client, &tokens.access_token).await;
        assert_eq!(
            refresh(&mut h.client, &tokens.refresh_token)
                .await
                .unwrap_err()
                .code(),
            Code::Unauthenticated
        );
    }
    let dead_in_postgres: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM refresh_tokens t JOIN users u ON u.id = t.user_id \
         WHERE u.email = $1 AND t.revoked_at IS NOT NULL",
    )
    .bind(&email)
    .fetch_one(h.service.db())
    .await
    .unwrap();
    assert_eq!(dead_in_postgres, 2);
    validate(&mut h.client, &someone_else.access_token)
        .await
        .unwrap();

    // Idempotent: nothing is left to revoke, but the call itself needs a live token.
    let status = h
        .client
        .logout_all(bearer(LogoutAllRequest {}, &laptop.access_token))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn user_methods_need_a_token_and_tokens_are_checked() {
    let mut h = start(&[]).await;
    let status = h.client.logout(LogoutRequest {}).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);
    let status = h
        .client
        .logout(bearer(LogoutRequest {}, "not-a-jwt"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // ValidateToken is INTERNAL: no service credential, no answer.
    let tokens = register(&mut h.client, &unique_email("internal"))
        .await
        .tokens
        .unwrap();
    let status = h
        .client
        .validate_token(shopmesh_proto::shop::auth::v1::ValidateTokenRequest {
            access_token: tokens.access_token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated);

    // A token with one character of its signature changed is refused.
    // (Not the last character: its low bits are padding.)
    let mut forged: Vec<char> = tokens.access_token.chars().collect();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    assert_refused(&mut h.client, &forged).await;
    assert_eq!(
        refresh(&mut h.client, "made-up-refresh-token")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    h.service.stop().await.unwrap();
}
