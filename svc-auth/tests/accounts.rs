//! Accounts against real PostgreSQL and Redis: registration rules, sign-in
//! errors that do not reveal accounts, failed-sign-in limits, and roles.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::{Duration, Instant};

use shopmesh_proto::shop::auth::v1::{
    GrantRoleRequest, LoginRequest, LogoutAllRequest, RegisterRequest, RevokeRoleRequest,
    RotateSigningKeyRequest,
};
use support::{
    PASSWORD, assert_refused, bearer, login, random_client_ip, refresh, register, start, try_login,
    unique_email, validate, violated_fields,
};
use tonic::Code;
use tonic_types::StatusExt;

#[tokio::test]
async fn an_email_registers_once_whatever_its_case_even_concurrently() {
    let mut h = start(&[]).await;
    let email = unique_email("dup");
    register(&mut h.client, &email).await;
    let status = h
        .client
        .register(RegisterRequest {
            email: format!("  {}  ", email.to_uppercase()),
            password: PASSWORD.into(),
            display_name: "Someone Else".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "EMAIL_TAKEN"
    );

    let contested = unique_email("race");
    let request = |email: String| RegisterRequest {
        email,
        password: PASSWORD.into(),
        display_name: "Racer".into(),
    };
    let (mut a, mut b) = (h.client.clone(), h.client.clone());
    let (first, second) = tokio::join!(
        a.register(request(contested.clone())),
        b.register(request(contested.to_uppercase()))
    );
    let codes: Vec<Code> = [&first, &second]
        .iter()
        .map(|r| r.as_ref().map_or_else(|s| s.code(), |_| Code::Ok))
        .collect();
    assert!(
        codes.contains(&Code::Ok) && codes.contains(&Code::AlreadyExists),
        "{codes:?}"
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users WHERE email_key = $1")
        .bind(contested.to_lowercase())
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert_eq!(accounts, 1);
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn weak_passwords_and_bad_fields_are_refused_by_name() {
    let mut h = start(&[]).await;
    let email = unique_email("weak");
    for password in [
        "short".to_owned(),
        "x".repeat(129),
        "Password123".to_owned(),
        "qwertyuiop".to_owned(),
        email.to_uppercase(),
    ] {
        let status = h
            .client
            .register(RegisterRequest {
                email: email.clone(),
                password: password.clone(),
                display_name: "Weak".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{password}");
        assert_eq!(violated_fields(&status), ["password"], "{password}");
    }

    let status = h
        .client
        .register(RegisterRequest {
            email: "not-an-email".into(),
            password: "short".into(),
            display_name: " ".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&status),
        ["email", "password", "display_name"]
    );
    let accounts: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert_eq!(accounts, 0);

    // The password is stored only as an Argon2id hash with the documented parameters.
    register(&mut h.client, &email).await;
    let hash: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    assert!(!hash.contains(PASSWORD));
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_email_and_wrong_password_look_the_same() {
    let mut h = start(&[]).await;
    let email = unique_email("probe");
    register(&mut h.client, &email).await;
    let ip = random_client_ip();

    let mut timed = Vec::new();
    let mut statuses = Vec::new();
    for (email, password) in [
        (unique_email("nobody"), PASSWORD),
        (email, "wrong password, sorry"),
    ] {
        let started = Instant::now();
        statuses.push(
            try_login(&mut h.client, &email, password, &ip)
                .await
                .unwrap_err(),
        );
        timed.push(started.elapsed());
    }
    let (unknown, wrong) = (&statuses[0], &statuses[1]);
    assert_eq!(unknown.code(), Code::Unauthenticated);
    assert_eq!(unknown.code(), wrong.code());
    assert_eq!(unknown.message(), wrong.message());
    assert_eq!(unknown.details(), wrong.details());
    assert_eq!(
        unknown.get_error_details().error_info().unwrap().reason,
        "INVALID_CREDENTIALS"
    );
    // An unknown email still costs a full Argon2id verification (a missing dummy
    // hash would answer in a few milliseconds instead).
    assert!(
        timed[0] * 3 >= timed[1],
        "unknown email {:?} vs wrong password {:?}",
        timed[0],
        timed[1]
    );
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_account() {
    let mut h = start(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]).await;
    let email = unique_email("guessed");
    register(&mut h.client, &email).await;

    // Three wrong guesses from three addresses…
    for _ in 0..3 {
        let status = try_login(&mut h.client, &email, "not it", &random_client_ip())
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    // …lock the account, from anywhere, even with the right password.
    let status = try_login(&mut h.client, &email, PASSWORD, &random_client_ip())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    let details = status.get_error_details();
    let delay = details.retry_info().unwrap().retry_delay.unwrap();
    assert!(
        delay > Duration::ZERO && delay <= Duration::from_secs(900),
        "{delay:?}"
    );

    // Another account is not affected.
    let other = unique_email("innocent");
    register(&mut h.client, &other).await;
    login(&mut h.client, &other).await;
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_no_more_tries_than_the_limit() {
    let mut h = start(&[("LOGIN_MAX_FAILURES_PER_ACCOUNT", "3")]).await;
    let email = unique_email("burst");
    register(&mut h.client, &email).await;
    let mut guesses = Vec::new();
    for i in 0..10 {
        let (mut client, email) = (h.client.clone(), email.clone());
        guesses.push(tokio::spawn(async move {
            let guess = format!("guess number {i}");
            try_login(&mut client, &email, &guess, &random_client_ip())
                .await
                .unwrap_err()
                .code()
        }));
    }
    let mut codes = Vec::new();
    for guess in guesses {
        codes.push(guess.await.unwrap());
    }
    let checked = codes
        .iter()
        .filter(|c| **c == Code::Unauthenticated)
        .count();
    let refused = codes
        .iter()
        .filter(|c| **c == Code::ResourceExhausted)
        .count();
    assert_eq!((checked, refused), (3, 7), "{codes:?}");
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn failed_sign_ins_are_limited_per_client_address() {
    let mut h = start(&[("LOGIN_MAX_FAILURES_PER_CLIENT", "3")]).await;
    let email = unique_email("sprayed");
    register(&mut h.client, &email).await;
    let sprayer = random_client_ip();

    // Password spraying: one guess at each of many accounts from one address.
    for _ in 0..3 {
        let victim = unique_email("victim");
        let status = try_login(&mut h.client, &victim, PASSWORD, &sprayer)
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
    }
    let status = try_login(&mut h.client, &email, PASSWORD, &sprayer)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.get_error_details().retry_info().is_some());

    // The same account from another address signs in.
    login(&mut h.client, &email).await;
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn without_x_client_ip_the_peer_address_is_counted() {
    let mut h = start(&[("LOGIN_MAX_FAILURES_PER_CLIENT", "2")]).await;
    // A loopback address of our own, so the counter is this test's alone.
    let id = uuid::Uuid::new_v4().as_u128();
    let peer: std::net::IpAddr = format!(
        "127.{}.{}.{}",
        id as u8,
        (id >> 8) as u8,
        ((id >> 16) as u8).max(2)
    )
    .parse()
    .unwrap();
    let channel = tonic::transport::Endpoint::from_shared(h.service.endpoint())
        .unwrap()
        .local_address(Some(peer))
        .connect()
        .await
        .unwrap();
    let mut from_peer = support::Client::new(channel);
    let mut codes = Vec::new();
    for _ in 0..3 {
        let request = LoginRequest {
            email: unique_email("peer"),
            password: PASSWORD.into(),
        };
        codes.push(from_peer.login(request).await.unwrap_err().code());
    }
    assert_eq!(
        codes,
        [
            Code::Unauthenticated,
            Code::Unauthenticated,
            Code::ResourceExhausted
        ]
    );
    // The usual test client (peer 127.0.0.1, own x-client-ip) is unaffected.
    let email = unique_email("fine");
    register(&mut h.client, &email).await;
    login(&mut h.client, &email).await;
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_bootstrap_admin_email_gets_the_admin_role_at_registration() {
    let admin_email = unique_email("root");
    let mut h = start(&[(
        "BOOTSTRAP_ADMIN_EMAILS",
        &format!("ops@example.com, {}", admin_email.to_uppercase()),
    )])
    .await;
    let admin = register(&mut h.client, &admin_email).await;
    let claims = validate(&mut h.client, &admin.tokens.unwrap().access_token)
        .await
        .unwrap();
    assert_eq!(claims.roles, ["admin"]);

    let shopper = register(&mut h.client, &unique_email("shopper")).await;
    let claims = validate(&mut h.client, &shopper.tokens.unwrap().access_token)
        .await
        .unwrap();
    assert!(claims.roles.is_empty());
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn admin_methods_refuse_a_shopper_and_roles_reach_the_next_token() {
    let admin_email = unique_email("admin");
    let mut h = start(&[("BOOTSTRAP_ADMIN_EMAILS", &admin_email)]).await;
    let admin = register(&mut h.client, &admin_email)
        .await
        .tokens
        .unwrap()
        .access_token;
    let shopper_email = unique_email("shopper");
    let shopper = register(&mut h.client, &shopper_email).await;
    let shopper_id = shopper.user_id.clone();
    let shopper_tokens = shopper.tokens.unwrap();

    // A shopper's token opens no ADMIN method.
    let token = &shopper_tokens.access_token;
    let denied = [
        h.client
            .rotate_signing_key(bearer(RotateSigningKeyRequest {}, token))
            .await
            .unwrap_err(),
        h.client
            .grant_role(bearer(
                GrantRoleRequest {
                    user_id: shopper_id.clone(),
                    role: "admin".into(),
                },
                token,
            ))
            .await
            .unwrap_err(),
        h.client
            .revoke_role(bearer(
                RevokeRoleRequest {
                    user_id: shopper_id.clone(),
                    role: "admin".into(),
                },
                token,
            ))
            .await
            .unwrap_err(),
    ];
    for status in denied {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    }

    // Validation and unknown users.
    let status = h
        .client
        .grant_role(bearer(
            GrantRoleRequest {
                user_id: shopper_id.clone(),
                role: "superuser".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&status), ["role"]);
    let status = h
        .client
        .grant_role(bearer(
            GrantRoleRequest {
                user_id: uuid::Uuid::now_v7().to_string(),
                role: "admin".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);

    // Granted (twice: idempotent); the current token is unchanged, the next carries it.
    for _ in 0..2 {
        let granted = h
            .client
            .grant_role(bearer(
                GrantRoleRequest {
                    user_id: shopper_id.clone(),
                    role: "admin".into(),
                },
                &admin,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(granted.roles, ["admin"]);
    }
    let claims = validate(&mut h.client, &shopper_tokens.access_token)
        .await
        .unwrap();
    assert!(claims.roles.is_empty());
    let refreshed = refresh(&mut h.client, &shopper_tokens.refresh_token)
        .await
        .unwrap();
    let claims = validate(&mut h.client, &refreshed.access_token)
        .await
        .unwrap();
    assert_eq!(claims.roles, ["admin"]);

    // Revoked: every session of that user ends at once.
    let revoked = h
        .client
        .revoke_role(bearer(
            RevokeRoleRequest {
                user_id: shopper_id.clone(),
                role: "admin".into(),
            },
            &admin,
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(revoked.roles.is_empty());
    assert_refused(&mut h.client, &refreshed.access_token).await;
    let again = login(&mut h.client, &shopper_email).await;
    assert!(
        validate(&mut h.client, &again.access_token)
            .await
            .unwrap()
            .roles
            .is_empty()
    );

    // The last admin keeps the role.
    let admin_id = validate(&mut h.client, &admin).await.unwrap().user_id;
    let status = h
        .client
        .revoke_role(bearer(
            RevokeRoleRequest {
                user_id: admin_id.clone(),
                role: "admin".into(),
            },
            &admin,
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(
        status.get_error_details().error_info().unwrap().reason,
        "LAST_ADMIN"
    );
    validate(&mut h.client, &admin).await.unwrap();
    h.client
        .logout_all(bearer(LogoutAllRequest {}, &admin))
        .await
        .unwrap();
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn two_admins_revoking_each_other_at_once_leave_one() {
    let (first_email, second_email) = (unique_email("a1"), unique_email("a2"));
    let mut h = start(&[(
        "BOOTSTRAP_ADMIN_EMAILS",
        &format!("{first_email},{second_email}"),
    )])
    .await;
    let first = register(&mut h.client, &first_email).await;
    let second = register(&mut h.client, &second_email).await;
    let revoke = |user_id: &str, token: &str| {
        bearer(
            RevokeRoleRequest {
                user_id: user_id.to_owned(),
                role: "admin".into(),
            },
            token,
        )
    };
    let (mut a, mut b) = (h.client.clone(), h.client.clone());
    let (one, two) = tokio::join!(
        a.revoke_role(revoke(
            &second.user_id,
            &first.tokens.as_ref().unwrap().access_token
        )),
        b.revoke_role(revoke(
            &first.user_id,
            &second.tokens.as_ref().unwrap().access_token
        ))
    );
    let admins: i64 = sqlx::query_scalar("SELECT count(*) FROM user_roles WHERE role = 'admin'")
        .fetch_one(h.service.db())
        .await
        .unwrap();
    assert_eq!(admins, 1, "{one:?} / {two:?}");
    h.service.stop().await.unwrap();
}

#[tokio::test]
async fn bootstrap_admin_emails_promote_existing_accounts_at_start() {
    use shopmesh_platform::app::{ServiceSettings, start as start_app};
    use shopmesh_platform::settings::Env;
    use shopmesh_testkit::{INTERNAL_TOKEN, redis_url, server_url};

    let mut h = start(&[]).await;
    let email = unique_email("promoted");
    let before = register(&mut h.client, &email).await;
    let claims = validate(&mut h.client, &before.tokens.unwrap().access_token)
        .await
        .unwrap();
    assert!(claims.roles.is_empty());
    let database = h
        .service
        .db()
        .connect_options()
        .get_database()
        .unwrap()
        .to_owned();
    h.service.stop().await.unwrap();

    // The operator restarts svc-auth on the same database naming that account.
    let server = server_url();
    let database_url = format!("{}/{database}", &server[..server.rfind('/').unwrap()]);
    let env = Env::from_pairs([
        ("DATABASE_URL", database_url.as_str()),
        ("GRPC_ADDR", "127.0.0.1:0"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("REDIS_URL", redis_url().as_str()),
        ("INTERNAL_SERVICE_TOKEN", INTERNAL_TOKEN),
        ("USER_GRPC_URL", "http://127.0.0.1:9"),
        ("REFRESH_TOKEN_TTL_HOURS", "1"),
        ("BOOTSTRAP_ADMIN_EMAILS", email.to_uppercase().as_str()),
    ]);
    let settings = ServiceSettings::from_env(&svc_auth::SPEC, &env).unwrap();
    let running = start_app(&svc_auth::SPEC, env, settings, svc_auth::build)
        .await
        .unwrap();
    let endpoint = format!("http://{}", running.grpc_addr);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(running.serve(async {
        let _ = stopped.await;
    }));
    let mut client = support::Client::connect(endpoint).await.unwrap();
    let tokens = login(&mut client, &email).await;
    let claims = validate(&mut client, &tokens.access_token).await.unwrap();
    assert_eq!(claims.roles, ["admin"]);
    let _ = stop.send(());
    served.await.unwrap().unwrap();
}
