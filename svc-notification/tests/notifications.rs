#![allow(clippy::unwrap_used, clippy::expect_used)]
//! svc-notification end to end: events produced to the real topics, the real
//! svc-user for recipients, a capturing SMTP server and a recording SMS
//! provider; what a shopper sees in their history and stream.

mod support;

use std::time::Duration;

use futures::StreamExt;
use shopmesh_events::{EnvelopeExt, Event};
use shopmesh_platform::errors::violated_fields;
use shopmesh_proto::shop::events::v1::{NotificationSent, OrderCancelled, OrderFailed};
use shopmesh_proto::shop::notification::v1 as pb;
use shopmesh_testkit::{SignedIn, wait_for_events};
use support::{Fixture, ORDER_TOPIC, email_of, eur, eventually, order_confirmed, produce};
use tonic::Code;
use uuid::Uuid;

fn status_of(n: &pb::Notification) -> pb::NotificationStatus {
    pb::NotificationStatus::try_from(n.status).unwrap()
}

fn channel_of(n: &pb::Notification) -> pb::NotificationChannel {
    pb::NotificationChannel::try_from(n.channel).unwrap()
}

/// The shopper's history once one of their notifications is SENT.
async fn history_once_sent(shop: &Fixture, shopper: &SignedIn) -> Vec<pb::Notification> {
    eventually("a notification marked sent", || async {
        let history = shop.history(shopper).await;
        history
            .iter()
            .any(|n| status_of(n) == pb::NotificationStatus::Sent)
            .then_some(history)
    })
    .await
}

#[tokio::test]
async fn an_order_confirmed_twice_sends_one_email_records_it_and_announces_it() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    let event = order_confirmed(shopper.id);
    let order_id = event.aggregate_id.clone();
    // Delivered twice, as a producer retry or a rebalance would.
    produce(ORDER_TOPIC, &event).await;
    produce(ORDER_TOPIC, &event).await;

    let email = eventually("the email", || async {
        shop.emails_to(&shopper).into_iter().next()
    })
    .await;
    assert_eq!(email.mail_from, "orders@shopmesh.test");
    assert_eq!(
        email.header("Subject").as_deref(),
        Some(format!("Your order {} is confirmed", &order_id[..8]).as_str())
    );
    let body = email.body();
    assert!(body.contains(&order_id), "{body}");
    assert!(
        body.contains("2 x Tea pot (TEA-POT-1): EUR 39.98"),
        "{body}"
    );
    assert!(body.contains("Total charged: EUR 39.98"), "{body}");

    let history = history_once_sent(&shop, &shopper).await;
    assert_eq!(
        history.len(),
        2,
        "one email and one skipped SMS: {history:?}"
    );
    let sent = history
        .iter()
        .find(|n| channel_of(n) == pb::NotificationChannel::Email)
        .unwrap();
    assert_eq!(status_of(sent), pb::NotificationStatus::Sent);
    assert_eq!(sent.source_event_id, event.event_id);
    assert_eq!(sent.user_id, shopper.id.to_string());
    assert!(sent.sent_time.is_some());
    assert_eq!(
        email.header("Message-ID").as_deref(),
        Some(format!("<{}@notification.shopmesh>", sent.id).as_str())
    );
    let sms = history
        .iter()
        .find(|n| channel_of(n) == pb::NotificationChannel::Sms)
        .unwrap();
    assert_eq!(status_of(sms), pb::NotificationStatus::Skipped);
    assert_eq!(sms.status_reason, "sms disabled for order_confirmed");

    let announced = wait_for_events(svc_notification::TOPIC, &sent.id, 1).await;
    let payload: NotificationSent = announced[0].payload_as().unwrap();
    assert_eq!(payload.user_id, shopper.id.to_string());
    assert_eq!(payload.notification_type, "order_confirmed");
    assert_eq!(payload.source_event_id, event.event_id);

    // The redelivery, and any later sender pass, sent nothing more.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shop.emails_to(&shopper).len(), 1);
    assert!(shop.sms.sent().is_empty());
}

#[tokio::test]
async fn sms_on_and_email_off_sends_only_an_sms_with_an_idempotency_key() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    shop.set_phone(&shopper, "+14155550100").await;
    shop.set_preference(
        &shopper,
        pb::NotificationEventType::OrderFailed,
        false,
        true,
    )
    .await;
    let order_id = Uuid::now_v7().to_string();
    let failed = OrderFailed {
        order_id: order_id.clone(),
        user_id: shopper.id.to_string(),
        total: eur(1_500),
        reason: "card declined: insufficient_funds".to_owned(),
        failure_code: "payment_declined".to_owned(),
        ..Default::default()
    };
    produce(
        ORDER_TOPIC,
        &Event::new(&failed, "order", &order_id).into_envelope(),
    )
    .await;

    let sms = eventually("the SMS", || async { shop.sms.sent().into_iter().next() }).await;
    assert_eq!(sms.to, "+14155550100");
    assert_eq!(
        sms.text,
        format!(
            "shopmesh: order {} could not be completed: card declined: insufficient_funds.",
            &order_id[..8]
        )
    );
    let history = history_once_sent(&shop, &shopper).await;
    let sent = history
        .iter()
        .find(|n| channel_of(n) == pb::NotificationChannel::Sms)
        .unwrap();
    assert_eq!(sms.idempotency_key, sent.id);
    assert_eq!(sent.subject, "");
    let email = history
        .iter()
        .find(|n| channel_of(n) == pb::NotificationChannel::Email)
        .unwrap();
    assert_eq!(status_of(email), pb::NotificationStatus::Skipped);
    assert_eq!(email.status_reason, "email disabled for order_failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(shop.emails_to(&shopper).is_empty());
    assert_eq!(shop.sms.sent().len(), 1);
}

#[tokio::test]
async fn sms_without_a_phone_is_skipped() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    shop.set_preference(
        &shopper,
        pb::NotificationEventType::OrderConfirmed,
        false,
        true,
    )
    .await;
    produce(ORDER_TOPIC, &order_confirmed(shopper.id)).await;
    let sms = eventually("the SMS settled", || async {
        shop.history(&shopper).await.into_iter().find(|n| {
            channel_of(n) == pb::NotificationChannel::Sms
                && status_of(n) != pb::NotificationStatus::Unspecified
        })
    })
    .await;
    assert_eq!(status_of(&sms), pb::NotificationStatus::Skipped);
    assert_eq!(sms.status_reason, "no phone on the profile");
    assert!(shop.sms.sent().is_empty());
}

#[tokio::test]
async fn an_smtp_server_refusing_for_a_while_gets_the_email_once_it_accepts() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    shop.smtp.refuse_next(&email_of(&shopper), 2);
    produce(ORDER_TOPIC, &order_confirmed(shopper.id)).await;
    let email = eventually("the email after two refusals", || async {
        shop.emails_to(&shopper).into_iter().next()
    })
    .await;
    assert_eq!(shop.smtp.refused(), 2);
    assert!(email.body().contains("Total charged: EUR 39.98"));
    let attempts: i32 = eventually("the email marked sent", || async {
        sqlx::query_scalar(
            "SELECT attempts FROM notifications WHERE user_id = $1 AND channel = 'email' AND status = 'sent'",
        )
        .bind(shopper.id)
        .fetch_optional(shop.notification.db())
        .await
        .unwrap()
    })
    .await;
    assert_eq!(attempts, 3);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(shop.emails_to(&shopper).len(), 1);
}

#[tokio::test]
async fn a_permanent_smtp_refusal_fails_after_the_last_attempt() {
    let shop = Fixture::start_with(true, &[("NOTIFICATION_MAX_ATTEMPTS", "2")]).await;
    let shopper = shop.shopper().await;
    shop.smtp.refuse_next(&email_of(&shopper), 5);
    produce(ORDER_TOPIC, &order_confirmed(shopper.id)).await;
    let failed = eventually("the email failed", || async {
        shop.history(&shopper).await.into_iter().find(|n| {
            channel_of(n) == pb::NotificationChannel::Email
                && status_of(n) == pb::NotificationStatus::Failed
        })
    })
    .await;
    assert!(
        failed.status_reason.contains("451"),
        "{}",
        failed.status_reason
    );
    assert!(failed.sent_time.is_none());
    assert_eq!(shop.smtp.refused(), 2);
    assert!(shop.emails_to(&shopper).is_empty());
}

#[tokio::test]
async fn with_svc_user_down_the_notification_waits_and_is_sent_once_it_is_back() {
    let mut shop = Fixture::start_with(false, &[]).await;
    let shopper = shop.signed_in().await;
    produce(ORDER_TOPIC, &order_confirmed(shopper.id)).await;
    eventually("the notification recorded", || async {
        let pending: Option<String> = sqlx::query_scalar(
            "SELECT status FROM notifications WHERE user_id = $1 AND channel = 'email'",
        )
        .bind(shopper.id)
        .fetch_optional(shop.notification.db())
        .await
        .unwrap();
        pending.filter(|s| s == "pending")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(shop.emails_to(&shopper).is_empty());
    let status: String = sqlx::query_scalar(
        "SELECT status FROM notifications WHERE user_id = $1 AND channel = 'email'",
    )
    .bind(shopper.id)
    .fetch_one(shop.notification.db())
    .await
    .unwrap();
    assert_eq!(status, "pending", "still waiting, not failed");

    shop.start_user().await;
    shop.create_profile(&shopper).await;
    eventually("the email once svc-user is back", || async {
        shop.emails_to(&shopper).into_iter().next()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(shop.emails_to(&shopper).len(), 1);
}

#[tokio::test]
async fn history_pages_newest_first_and_shows_only_the_callers_own() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    let other = shop.shopper().await;
    let mut orders = Vec::new();
    for i in 0..3 {
        let order_id = Uuid::now_v7().to_string();
        let cancelled = OrderCancelled {
            order_id: order_id.clone(),
            user_id: shopper.id.to_string(),
            total: eur(100 * (i + 1)),
            reason: "changed my mind".to_owned(),
            cancelled_by: shopper.id.to_string(),
            ..Default::default()
        };
        produce(
            ORDER_TOPIC,
            &Event::new(&cancelled, "order", &order_id).into_envelope(),
        )
        .await;
        orders.push(order_id);
    }
    eventually("six notifications", || async {
        (shop.history(&shopper).await.len() == 6).then_some(())
    })
    .await;

    let mut client = shop.client().await;
    let mut seen = Vec::new();
    let mut token = String::new();
    let mut pages = 0;
    loop {
        let page = client
            .list_my_notifications(shopper.request(pb::ListMyNotificationsRequest {
                page_size: 4,
                page_token: token.clone(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        seen.extend(page.notifications);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(pages, 2);
    assert_eq!(seen.len(), 6);
    let ids: Vec<Uuid> = seen.iter().map(|n| n.id.parse().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first);
    assert!(seen.iter().all(|n| n.user_id == shopper.id.to_string()));

    let emails = client
        .list_my_notifications(shopper.request(pb::ListMyNotificationsRequest {
            channel: pb::NotificationChannel::Email as i32,
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert_eq!(emails.len(), 3);
    assert!(
        emails
            .iter()
            .all(|n| channel_of(n) == pb::NotificationChannel::Email)
    );

    assert!(shop.history(&other).await.is_empty());
    let refused = client
        .list_my_notifications(shopper.request(pb::ListMyNotificationsRequest {
            page_size: -1,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&refused), ["page_size"]);
    let foreign_token = client
        .list_my_notifications(other.request(pb::ListMyNotificationsRequest {
            page_size: 4,
            page_token: token,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&foreign_token), ["page_token"]);
    let anonymous = client
        .list_my_notifications(pb::ListMyNotificationsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_watcher_receives_new_notifications_and_resumes_after_the_last_one_seen() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    let other = shop.shopper().await;
    let mut client = shop.client().await;
    let mut stream = client
        .watch_my_notifications(shopper.request(pb::WatchMyNotificationsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    // Someone else's notification is not streamed.
    produce(ORDER_TOPIC, &order_confirmed(other.id)).await;
    let event = order_confirmed(shopper.id);
    produce(ORDER_TOPIC, &event).await;

    let mut received = Vec::new();
    while received.len() < 2 {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("a notification within 30 s")
            .expect("the stream stays open")
            .unwrap();
        received.push(next.notification.unwrap());
    }
    assert!(received.iter().all(|n| n.user_id == shopper.id.to_string()));
    assert!(received.iter().all(|n| n.source_event_id == event.event_id));
    let email = received
        .iter()
        .find(|n| channel_of(n) == pb::NotificationChannel::Email)
        .expect("the email is streamed");
    assert_eq!(status_of(email), pb::NotificationStatus::Sent);

    // Resuming after the first one sends the second, then live ones.
    let mut resumed = client
        .watch_my_notifications(shopper.request(pb::WatchMyNotificationsRequest {
            after_id: received[0].id.clone(),
        }))
        .await
        .unwrap()
        .into_inner();
    let again = tokio::time::timeout(Duration::from_secs(10), resumed.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(again.notification.unwrap().id, received[1].id);

    let bad = client
        .watch_my_notifications(shopper.request(pb::WatchMyNotificationsRequest {
            after_id: "not-an-id".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["after_id"]);
}

#[tokio::test]
async fn preferences_default_to_email_only_and_updates_are_validated() {
    let shop = Fixture::start().await;
    let shopper = shop.signed_in().await;
    let mut client = shop.client().await;
    let prefs = client
        .get_my_preferences(shopper.request(pb::GetMyPreferencesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(prefs.user_id, shopper.id.to_string());
    assert_eq!(prefs.event_types.len(), 5);
    assert!(prefs.event_types.iter().all(|p| p.email && !p.sms));
    assert!(prefs.update_time.is_none());

    let entry = |event_type: pb::NotificationEventType, email, sms| pb::EventTypePreference {
        event_type: event_type as i32,
        email,
        sms,
    };
    let refused = client
        .update_my_preferences(shopper.request(pb::UpdateMyPreferencesRequest {
            preferences: Some(pb::NotificationPreferences {
                event_types: vec![
                    entry(pb::NotificationEventType::OrderRefunded, false, true),
                    entry(pb::NotificationEventType::Unspecified, true, true),
                    entry(pb::NotificationEventType::OrderRefunded, true, true),
                ],
                ..Default::default()
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        violated_fields(&refused),
        [
            "preferences.event_types[1].event_type",
            "preferences.event_types[2].event_type"
        ]
    );
    let missing = client
        .update_my_preferences(
            shopper.request(pb::UpdateMyPreferencesRequest { preferences: None }),
        )
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing), ["preferences"]);

    let updated = client
        .update_my_preferences(shopper.request(pb::UpdateMyPreferencesRequest {
            preferences: Some(pb::NotificationPreferences {
                event_types: vec![entry(pb::NotificationEventType::OrderRefunded, false, true)],
                ..Default::default()
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(updated.event_types.len(), 5);
    for p in &updated.event_types {
        let expected = p.event_type != pb::NotificationEventType::OrderRefunded as i32;
        assert_eq!((p.email, p.sms), (expected, !expected), "{p:?}");
    }
    assert!(updated.update_time.is_some());
    let again = client
        .get_my_preferences(shopper.request(pb::GetMyPreferencesRequest {}))
        .await
        .unwrap()
        .into_inner()
        .preferences
        .unwrap();
    assert_eq!(again, updated);
}
