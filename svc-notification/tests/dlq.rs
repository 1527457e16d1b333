#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Dead letters at the level of the service: svc-notification's real
//! consumer (its own group) on the real `shop.order.events`. A message it can
//! never apply goes to `shop.order.events.dlq` with the error and where it came
//! from, and the consumer goes on; one that fails for a reason an operator can
//! fix goes there after the configured attempts, and once the cause is fixed
//! the real `svc-notification replay-dlq` command brings it back: one email,
//! and a second replay (or another copy of the event) sends nothing more.

mod support;

use std::time::Duration;

use prost::Message as _;
use rdkafka::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use shopmesh_events::{EventEnvelope, header};
use shopmesh_proto::shop::notification::v1 as pb;
use shopmesh_testkit::{Record, SignedIn, TestBroker, free_port, read_topic, service_command};
use support::{Fixture, ORDER_TOPIC, eventually, order_confirmed, produce_on};
use uuid::Uuid;

const BINARY: &str = env!("CARGO_BIN_EXE_svc-notification");
const DLQ_TOPIC: &str = "shop.order.events.dlq";

/// Produces a record as any producer could, returning (partition, offset).
async fn produce_raw(
    shop: &Fixture,
    key: &str,
    value: &[u8],
    headers: &[(&str, &str)],
) -> (i32, i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &shop.brokers)
        .create()
        .unwrap();
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, (key, value)| {
            all.insert(Header {
                key,
                value: Some(*value),
            })
        });
    let delivery = producer
        .send(
            FutureRecord::to(ORDER_TOPIC)
                .key(key)
                .payload(value)
                .headers(headers),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(err, _)| err)
        .unwrap();
    (delivery.partition, delivery.offset)
}

/// The dead letters with `key` that the fixture's group left, once there are `count`.
async fn dead_letters(shop: &Fixture, key: &str, count: usize) -> Vec<Record> {
    eventually(&format!("{count} dead letters for {key}"), || async {
        let found: Vec<Record> = read_topic(&shop.brokers, DLQ_TOPIC)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.key() == key && r.header(header::DLQ_GROUP) == Some(shop.group.as_str()))
            .collect();
        (found.len() >= count).then_some(found)
    })
    .await
}

/// The notifications recorded for an event: (channel, status).
async fn notifications_of(shop: &Fixture, event_id: &str) -> Vec<(String, String)> {
    sqlx::query_as(
        "SELECT channel, status FROM notifications WHERE source_event_id = $1 ORDER BY channel",
    )
    .bind(Uuid::parse_str(event_id).unwrap())
    .fetch_all(shop.notification.db())
    .await
    .unwrap()
}

async fn inbox_rows(shop: &Fixture, event_id: &str) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbox WHERE consumer_group = $1 AND event_id = $2")
        .bind(&shop.group)
        .bind(Uuid::parse_str(event_id).unwrap())
        .fetch_one(shop.notification.db())
        .await
        .unwrap()
}

/// The email once sent to `shopper`, after which nothing more comes for a while.
async fn one_email(shop: &Fixture, shopper: &SignedIn) -> support::smtp::Captured {
    let email = eventually("the email", || async {
        shop.emails_to(shopper).into_iter().next()
    })
    .await;
    // The sender polls every second: a second email would be here by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(shop.emails_to(shopper).len(), 1);
    email
}

/// Runs `svc-notification replay-dlq shop.order.events <group>` as an operator
/// would; returns how many dead letters it says it replayed.
async fn replay(shop: &Fixture) -> u64 {
    let output = service_command(BINARY, free_port())
        .env("KAFKA_BROKERS", &shop.brokers)
        .env("LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .args(["replay-dlq", ORDER_TOPIC, shop.group.as_str()])
        .output()
        .await
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "replay-dlq failed: {said}");
    said.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find(|line| line["message"] == "dead letters replayed")
        .and_then(|line| line["replayed"].as_u64())
        .unwrap_or_else(|| panic!("replay-dlq did not report what it replayed: {said}"))
}

#[tokio::test]
async fn poison_goes_to_the_dlq_with_its_error_and_the_consumer_goes_on() {
    let shop = Fixture::start().await;
    let shopper = shop.shopper().await;
    let valid = order_confirmed(shopper.id);
    // Everything about one order, so one partition, consumed in this order.
    let key = valid.aggregate_id.clone();

    // Not an envelope at all.
    let garbage = b"\xff\xfe this is not an event envelope".to_vec();
    let garbage_at = produce_raw(&shop, &key, &garbage, &[]).await;
    // A well-formed envelope naming OrderConfirmed whose payload does not decode.
    let mut broken = order_confirmed(shopper.id);
    broken.aggregate_id.clone_from(&key);
    broken.payload.as_mut().unwrap().value = vec![0xff, 0xff, 0xff, 0xff];
    let broken_value = broken.encode_to_vec();
    let broken_at = produce_raw(
        &shop,
        &key,
        &broken_value,
        &[
            (header::EVENT_TYPE, broken.event_type.as_str()),
            (header::EVENT_ID, broken.event_id.as_str()),
        ],
    )
    .await;
    // Then a good one: delivered, so the consumer went past both.
    produce_on(&shop.brokers, ORDER_TOPIC, &valid).await;
    let email = one_email(&shop, &shopper).await;
    assert!(email.body().contains(&key), "{}", email.body());

    let letters = dead_letters(&shop, &key, 2).await;
    assert_eq!(letters.len(), 2, "each poison message once");
    let (first, second) = (&letters[0], &letters[1]);
    // Unchanged, with where it came from and why it is here.
    assert_eq!(first.value.as_deref(), Some(garbage.as_slice()));
    assert_eq!(first.header(header::DLQ_ATTEMPTS), Some("0"));
    assert_eq!(second.value.as_deref(), Some(broken_value.as_slice()));
    assert_eq!(
        second.header(header::DLQ_ATTEMPTS),
        Some("1"),
        "never retried"
    );
    assert_eq!(
        second.header(header::EVENT_ID),
        Some(broken.event_id.as_str())
    );
    assert_eq!(
        second.header(header::EVENT_TYPE),
        Some("shop.events.v1.OrderConfirmed")
    );
    for (letter, (partition, offset)) in [(first, garbage_at), (second, broken_at)] {
        assert_eq!(letter.header(header::DLQ_ORIGINAL_TOPIC), Some(ORDER_TOPIC));
        assert_eq!(
            letter.header(header::DLQ_ORIGINAL_PARTITION),
            Some(partition.to_string().as_str())
        );
        assert_eq!(
            letter.header(header::DLQ_ORIGINAL_OFFSET),
            Some(offset.to_string().as_str())
        );
        let error = letter.header(header::DLQ_ERROR).unwrap_or_default();
        assert!(error.contains("failed to decode"), "{error}");
    }

    // Nothing was recorded for the broken event, and the good one was applied once.
    assert!(notifications_of(&shop, &broken.event_id).await.is_empty());
    assert_eq!(inbox_rows(&shop, &broken.event_id).await, 0);
    assert_eq!(inbox_rows(&shop, &valid.event_id).await, 1);
    let history = shop.history(&shopper).await;
    assert_eq!(history.len(), 2, "email and skipped SMS: {history:?}");
    assert!(history.iter().all(|n| n.source_event_id == valid.event_id));
}

#[tokio::test]
async fn an_event_failing_until_fixed_is_dead_lettered_then_replayed_into_one_email() {
    // A broker of its own: every consumer group on a topic dead-letters a
    // poison message it reads, and a replay republishes what this group
    // left, so on the shared broker the poison of tests running alongside
    // would come and go through this test's dead-letter topic and replays.
    let broker = TestBroker::start().await.expect("a private broker starts");
    let shop = Fixture::start_on(
        &broker.brokers(),
        true,
        &[("KAFKA_CONSUMER_MAX_ATTEMPTS", "3")],
    )
    .await;
    let shopper = shop.shopper().await;
    let event: EventEnvelope = order_confirmed(shopper.id);

    // Something only an operator can fix: the database refuses this
    // event's notifications (a trigger standing in for e.g. a bad migration).
    let function = format!("refuse_{}", Uuid::now_v7().simple());
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.source_event_id = '{id}' THEN \
             RAISE EXCEPTION 'notifications of event {id} are refused (test)'; \
           END IF; RETURN NEW; END $$; \
         CREATE TRIGGER {function} BEFORE INSERT ON notifications \
           FOR EACH ROW EXECUTE FUNCTION {function}();",
        id = event.event_id
    )))
    .execute(shop.notification.db())
    .await
    .unwrap();

    produce_on(&shop.brokers, ORDER_TOPIC, &event).await;
    let letters = dead_letters(&shop, &event.aggregate_id, 1).await;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.header(header::DLQ_ATTEMPTS), Some("3"));
    assert_eq!(letter.envelope().as_ref(), Some(&event), "unchanged");
    let error = letter.header(header::DLQ_ERROR).unwrap_or_default();
    assert!(error.contains("are refused (test)"), "{error}");
    assert_eq!(letter.header(header::DLQ_ORIGINAL_TOPIC), Some(ORDER_TOPIC));
    assert!(notifications_of(&shop, &event.event_id).await.is_empty());
    assert_eq!(inbox_rows(&shop, &event.event_id).await, 0);

    // The consumer went on: the next event is applied (its email is sent).
    let other = shop.shopper().await;
    produce_on(&shop.brokers, ORDER_TOPIC, &order_confirmed(other.id)).await;
    one_email(&shop, &other).await;
    assert!(shop.emails_to(&shopper).is_empty());

    // The fix, then the replay.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP TRIGGER {function} ON notifications; DROP FUNCTION {function}();"
    )))
    .execute(shop.notification.db())
    .await
    .unwrap();
    assert_eq!(replay(&shop).await, 1, "our one dead letter");
    let email = one_email(&shop, &shopper).await;
    assert!(
        email.body().contains(&event.aggregate_id),
        "{}",
        email.body()
    );
    let sent = eventually("the email marked sent", || async {
        shop.history(&shopper).await.into_iter().find(|n| {
            n.channel == pb::NotificationChannel::Email as i32
                && n.status == pb::NotificationStatus::Sent as i32
        })
    })
    .await;
    assert_eq!(sent.source_event_id, event.event_id);
    assert_eq!(
        notifications_of(&shop, &event.event_id).await,
        [
            ("email".to_owned(), "sent".to_owned()),
            ("sms".to_owned(), "skipped".to_owned())
        ]
    );
    assert_eq!(inbox_rows(&shop, &event.event_id).await, 1);

    // Replaying again finds nothing left (the replay's progress is kept), and
    // the event arriving once more (a producer retry, say) changes nothing
    // (the inbox). Another shopper's event on the same key, so consumed after
    // it, shows when it has been.
    assert_eq!(replay(&shop).await, 0);
    produce_on(&shop.brokers, ORDER_TOPIC, &event).await;
    let marker = shop.shopper().await;
    let mut after = order_confirmed(marker.id);
    after.aggregate_id.clone_from(&event.aggregate_id);
    produce_on(&shop.brokers, ORDER_TOPIC, &after).await;
    one_email(&shop, &marker).await;
    assert_eq!(shop.emails_to(&shopper).len(), 1);
    assert_eq!(inbox_rows(&shop, &event.event_id).await, 1);
    assert_eq!(notifications_of(&shop, &event.event_id).await.len(), 2);
}
