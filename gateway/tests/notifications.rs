#![allow(clippy::unwrap_used, clippy::expect_used)]
//! WatchMyNotifications through the gateway as Server-Sent Events: a browser's
//! GET with a bearer token gets `text/event-stream`, one `data:` event per
//! notification with its id as the SSE id, and resumes after `Last-Event-ID`.

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::Value;
use shopmesh_testkit::{TestIdentity, TestService};
use tower::ServiceExt as _;
use uuid::Uuid;

/// A sent notification for `user`, as svc-notification's sender settles one
/// (the row, then `pg_notify` to the replicas' watchers).
async fn settle_notification(service: &TestService, user: Uuid, subject: &str) -> Uuid {
    let id = Uuid::now_v7();
    let mut tx = service.db().begin().await.unwrap();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, channel, event_type, source_event_id, subject, \
             body, status, sent_at, settled_seq) \
         VALUES ($1, $2, 'email', 'order_confirmed', $3, $4, 'Thank you for your order!', \
             'sent', now(), nextval('notifications_settled_seq'))",
    )
    .bind(id)
    .bind(user)
    .bind(Uuid::now_v7())
    .bind(subject)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("SELECT pg_notify('notification_settled', $1)")
        .bind(user.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

/// Reads SSE frames until the first event with data; returns (id, data JSON).
async fn next_event(body: &mut Body) -> (String, Value) {
    let mut buffer = String::new();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(20), body.frame())
            .await
            .expect("an SSE event within 20 s")
            .expect("the stream stays open")
            .unwrap();
        let Ok(data) = frame.into_data() else {
            continue;
        };
        buffer.push_str(std::str::from_utf8(&data).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            let mut id = String::new();
            let mut json = None;
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().to_owned();
                } else if let Some(v) = line.strip_prefix("data:") {
                    json = Some(serde_json::from_str(v.trim()).unwrap());
                }
            }
            if let Some(json) = json {
                return (id, json);
            }
        }
    }
}

#[tokio::test]
async fn watch_my_notifications_is_served_as_server_sent_events_and_resumes() {
    let identity = TestIdentity::start().await.unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let nowhere = format!("http://{closed}");
    let notification = TestService::spawn(
        &svc_notification::SPEC,
        &[
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("USER_GRPC_URL", nowhere.as_str()),
            ("SMTP_URL", "log:"),
            // No broker: this test streams rows, it consumes no events.
            ("KAFKA_BROKERS", &closed.to_string()),
        ],
        svc_notification::build,
    )
    .await
    .unwrap();
    let router = support::gateway(&identity, &[("NOTIFICATION", notification.endpoint())]);
    let (user, _, token) = identity.sign_in(&[]).await.unwrap();
    let watch = |last_event_id: Option<&str>| {
        let mut request = Request::get("/v1/me/notifications:watch")
            .header("authorization", format!("Bearer {token}"))
            .header("accept", "text/event-stream");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        router.clone().oneshot(request.body(Body::empty()).unwrap())
    };

    let response = watch(None).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut body = response.into_body();
    let first = settle_notification(&notification, user, "Your order is confirmed").await;
    let (sse_id, json) = next_event(&mut body).await;
    assert_eq!(sse_id, first.to_string());
    let streamed = &json["notification"];
    assert_eq!(streamed["id"], first.to_string());
    assert_eq!(streamed["userId"], user.to_string());
    assert_eq!(streamed["subject"], "Your order is confirmed");
    assert_eq!(streamed["status"], "NOTIFICATION_STATUS_SENT");
    assert_eq!(streamed["channel"], "NOTIFICATION_CHANNEL_EMAIL");
    drop(body);

    // A reconnecting browser sends the last id it saw and gets what it missed.
    let missed = settle_notification(&notification, user, "Missed while away").await;
    let response = watch(Some(&first.to_string())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let (sse_id, json) = next_event(&mut body).await;
    assert_eq!(sse_id, missed.to_string());
    assert_eq!(json["notification"]["subject"], "Missed while away");

    let anonymous = router
        .clone()
        .oneshot(
            Request::get("/v1/me/notifications:watch")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}
