//! Reservations through the real service on a real PostgreSQL: no overselling
//! under concurrency (one SKU and several), all lines or none, idempotency per
//! order, expiry, release and commit exactly once, and who may call them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::future::join_all;
use shopmesh_proto::shop::inventory::v1::{ReservationStatus, ReserveStockRequest};
use support::{Dice, Harness, held_by_live_reservations, levels, lines, reason, violated_fields};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

/// The SKUs a shortfall error names, from its PreconditionFailure details.
fn short_skus(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .precondition_failure()
        .map(|p| {
            p.violations
                .iter()
                .inspect(|v| assert_eq!(v.r#type, "INSUFFICIENT_STOCK"))
                .map(|v| v.subject.clone())
                .collect()
        })
        .unwrap_or_default()
}

async fn audit_count(harness: &Harness, kind: &str, order_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM stock_changes WHERE kind = $1 AND order_id = $2")
        .bind(kind)
        .bind(order_id)
        .fetch_one(harness.service.db())
        .await
        .unwrap()
}

#[tokio::test]
async fn two_hundred_concurrent_buyers_of_fifty_units_get_exactly_fifty() {
    let harness = Harness::start_with(&[("DB_MAX_CONNECTIONS", "12")]).await;
    harness.set_stock("HOT-1", 50).await;

    let attempts = (0..200).map(|_| {
        let mut client = harness.as_svc_order();
        tokio::spawn(async move {
            support::reserve(&mut client, Uuid::now_v7(), &[("HOT-1", 1)], None).await
        })
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 50, "exactly the units in stock are sold");
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(reason(refused), "INSUFFICIENT_STOCK");
        assert_eq!(short_skus(refused), ["HOT-1"]);
    }
    let stock = harness.stock("HOT-1").await;
    assert_eq!(
        (stock.on_hand, stock.reserved, stock.available),
        (50, 50, 0)
    );

    let db = harness.service.db();
    assert_eq!(levels(db, "HOT-1").await, (50, 50));
    assert_eq!(held_by_live_reservations(db, "HOT-1").await, 50);
    let reservations: i64 = sqlx::query_scalar("SELECT count(*) FROM reservations")
        .fetch_one(db)
        .await
        .unwrap();
    assert_eq!(reservations, 50, "a refused order leaves no reservation");
    let audited: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stock_changes WHERE sku = 'HOT-1' AND kind = 'reserve' \
         AND reserved_delta = 1 AND actor = 'svc-order'",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(audited, 50);

    // Below the application, the table itself refuses negative availability.
    let err = sqlx::query("UPDATE stock SET reserved = reserved + 1 WHERE sku = 'HOT-1'")
        .execute(db)
        .await
        .unwrap_err();
    let err = err.as_database_error().unwrap();
    assert_eq!(err.code().as_deref(), Some("23514"));
    assert_eq!(err.constraint(), Some("stock_available_not_negative"));
    harness.stop().await;
}

#[tokio::test]
async fn concurrent_multi_sku_reservations_are_all_or_nothing() {
    let harness = Harness::start_with(&[("DB_MAX_CONNECTIONS", "12")]).await;
    let stock = [("MIX-A", 23_i64), ("MIX-B", 11), ("MIX-C", 7)];
    for (sku, on_hand) in stock {
        harness.set_stock(sku, on_hand).await;
    }

    // 120 orders of one to three SKUs, 1 to 3 units each, in a random but
    // replayable mix; far more wanted than there is.
    let mut dice = Dice::new(0x5EED);
    let orders: Vec<(Uuid, Vec<(&str, i32)>)> = (0..120)
        .map(|_| {
            let mut wanted: Vec<(&str, i32)> = Vec::new();
            for (sku, _) in stock {
                if dice.below(2) == 0 {
                    wanted.push((sku, 1 + dice.below(3) as i32));
                }
            }
            if wanted.is_empty() {
                wanted.push((stock[dice.below(3) as usize].0, 1));
            }
            // Lines in any order: the lock order must not depend on it.
            if dice.below(2) == 0 {
                wanted.reverse();
            }
            (Uuid::now_v7(), wanted)
        })
        .collect();

    let attempts = orders.iter().cloned().map(|(order_id, wanted)| {
        let mut client = harness.as_svc_order();
        tokio::spawn(async move {
            let result = support::reserve(&mut client, order_id, &wanted, None).await;
            (order_id, result)
        })
    });
    let results: HashMap<Uuid, _> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();

    let mut won = 0;
    let mut refused = 0;
    for (order_id, wanted) in &orders {
        match &results[order_id] {
            Ok(reservation) => {
                won += 1;
                assert_eq!(reservation.status(), ReservationStatus::Reserved);
                assert_eq!(reservation.lines, lines(wanted), "read back as asked");
            }
            Err(status) => {
                // Never a deadlock or any other failure: only a shortfall.
                assert_eq!(status.code(), Code::FailedPrecondition, "{status:?}");
                assert!(!short_skus(status).is_empty());
                refused += 1;
            }
        }
    }
    assert!(
        won > 5 && refused > 5,
        "a mix with winners and losers: {won} won, {refused} refused"
    );

    let db = harness.service.db();
    for (sku, on_hand) in stock {
        let (now_on_hand, reserved) = levels(db, sku).await;
        assert_eq!(now_on_hand, on_hand);
        assert!(reserved <= on_hand, "{sku} over-reserved: {reserved}");
        assert_eq!(
            reserved,
            held_by_live_reservations(db, sku).await,
            "{sku}: reserved is exactly what the live reservations hold, no partial leftovers"
        );
        let expected: i64 = orders
            .iter()
            .filter(|(order_id, _)| results[order_id].is_ok())
            .flat_map(|(_, wanted)| wanted.iter())
            .filter(|(s, _)| *s == sku)
            .map(|(_, q)| i64::from(*q))
            .sum();
        assert_eq!(reserved, expected, "{sku}");
    }
    let (reservations, lines_stored): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM reservations), (SELECT count(*) FROM reservation_lines)",
    )
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(reservations, won);
    let won_lines: usize = orders
        .iter()
        .filter(|(order_id, _)| results[order_id].is_ok())
        .map(|(_, wanted)| wanted.len())
        .sum();
    assert_eq!(lines_stored, won_lines as i64);
    harness.stop().await;
}

#[tokio::test]
async fn a_repeated_reservation_changes_nothing_and_other_lines_conflict() {
    let harness = Harness::start().await;
    harness.set_stock("REP-A", 10).await;
    harness.set_stock("REP-B", 5).await;
    let order = Uuid::now_v7();

    let first = harness
        .reserve(order, &[("REP-A", 2), ("REP-B", 1)], None)
        .await
        .unwrap();
    assert_eq!(first.status(), ReservationStatus::Reserved);
    assert_eq!(first.order_id, order.to_string());
    let ttl = first.expire_time.unwrap().seconds - first.create_time.unwrap().seconds;
    assert!((899..=901).contains(&ttl), "15 minutes by default: {ttl}");

    // The same lines in another order: the same reservation, nothing held twice.
    let again = harness
        .reserve(order, &[("REP-B", 1), ("REP-A", 2)], None)
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(levels(harness.service.db(), "REP-A").await, (10, 2));
    assert_eq!(audit_count(&harness, "reserve", order).await, 2);

    let other = harness
        .reserve(order, &[("REP-A", 3)], None)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::AlreadyExists);
    assert_eq!(reason(&other), "RESERVATION_CONFLICT");
    assert_eq!(levels(harness.service.db(), "REP-A").await, (10, 2));

    // Ten concurrent first attempts for one new order hold its stock once.
    let racer = Uuid::now_v7();
    let attempts = (0..10).map(|_| {
        let mut client = harness.as_svc_order();
        tokio::spawn(
            async move { support::reserve(&mut client, racer, &[("REP-A", 3)], None).await },
        )
    });
    let results: Vec<_> = join_all(attempts)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    assert!(results.windows(2).all(|w| w[0] == w[1]), "one reservation");
    assert_eq!(levels(harness.service.db(), "REP-A").await, (10, 5));
    assert_eq!(audit_count(&harness, "reserve", racer).await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn expired_reservations_give_their_stock_back() {
    let harness = Harness::start().await;
    harness.set_stock("EXP-1", 5).await;
    let short_lived = Uuid::now_v7();
    let long_lived = Uuid::now_v7();
    harness
        .reserve(short_lived, &[("EXP-1", 3)], Some(Duration::from_secs(1)))
        .await
        .unwrap();
    harness
        .reserve(long_lived, &[("EXP-1", 1)], None)
        .await
        .unwrap();
    assert_eq!(harness.stock("EXP-1").await.available, 1);

    tokio::time::sleep(Duration::from_millis(1200)).await;
    let expired = svc_inventory::expire_overdue_reservations(harness.service.db())
        .await
        .unwrap();
    assert_eq!(expired, 1);
    let stock = harness.stock("EXP-1").await;
    assert_eq!((stock.reserved, stock.available), (1, 4));
    assert_eq!(
        svc_inventory::expire_overdue_reservations(harness.service.db())
            .await
            .unwrap(),
        0,
        "a sweep finds nothing twice"
    );
    let (kind, actor, delta): (String, String, i64) = sqlx::query_as(
        "SELECT kind, actor, reserved_delta FROM stock_changes WHERE order_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(short_lived)
    .fetch_one(harness.service.db())
    .await
    .unwrap();
    assert_eq!(
        (kind.as_str(), actor.as_str(), delta),
        ("expire", "svc-inventory", -3)
    );

    // An expired reservation cannot be sold; releasing it or asking again
    // returns it as it is.
    let commit = harness.commit(short_lived).await.unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);
    assert_eq!(reason(&commit), "RESERVATION_EXPIRED");
    let released = harness.release(short_lived).await.unwrap();
    assert_eq!(released.status(), ReservationStatus::Expired);
    let replay = harness
        .reserve(short_lived, &[("EXP-1", 3)], Some(Duration::from_secs(1)))
        .await
        .unwrap();
    assert_eq!(replay.status(), ReservationStatus::Expired);
    let other = harness
        .reserve(short_lived, &[("EXP-1", 1)], None)
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::FailedPrecondition);
    assert_eq!(reason(&other), "RESERVATION_EXPIRED");
    assert_eq!(harness.stock("EXP-1").await.available, 4);

    // Past its time but not yet swept: a commit expires it instead of selling.
    let late = Uuid::now_v7();
    harness
        .reserve(late, &[("EXP-1", 2)], Some(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let commit = harness.commit(late).await.unwrap_err();
    assert_eq!(reason(&commit), "RESERVATION_EXPIRED");
    let stock = harness.stock("EXP-1").await;
    assert_eq!((stock.on_hand, stock.reserved), (5, 1));
    assert_eq!(audit_count(&harness, "expire", late).await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn the_background_sweeper_expires_reservations_on_its_own() {
    let harness = Harness::start_with(&[("RESERVATION_SWEEP_SECONDS", "1")]).await;
    harness.set_stock("SWEPT-1", 4).await;
    let order = Uuid::now_v7();
    harness
        .reserve(order, &[("SWEPT-1", 4)], Some(Duration::from_secs(1)))
        .await
        .unwrap();
    let mut available = 0;
    for _ in 0..100 {
        available = harness.stock("SWEPT-1").await.available;
        if available == 4 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(available, 4, "the sweeper gave the stock back");
    let status: String = sqlx::query_scalar("SELECT status FROM reservations WHERE order_id = $1")
        .bind(order)
        .fetch_one(harness.service.db())
        .await
        .unwrap();
    assert_eq!(status, "expired");
    harness.stop().await;
}

#[tokio::test]
async fn release_and_commit_happen_exactly_once_even_when_repeated_concurrently() {
    let harness = Harness::start().await;
    harness.set_stock("ONCE-1", 10).await;
    let db = harness.service.db();

    let sold = Uuid::now_v7();
    harness.reserve(sold, &[("ONCE-1", 4)], None).await.unwrap();
    let (a, b) = tokio::join!(harness.commit(sold), harness.commit(sold));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.status(), ReservationStatus::Committed);
    assert_eq!(
        a, b,
        "the second commit returns the committed reservation as it is"
    );
    assert_eq!(harness.commit(sold).await.unwrap(), a);
    assert_eq!(levels(db, "ONCE-1").await, (6, 0));
    assert_eq!(audit_count(&harness, "commit", sold).await, 1);
    let release = harness.release(sold).await.unwrap_err();
    assert_eq!(release.code(), Code::FailedPrecondition);
    assert_eq!(reason(&release), "RESERVATION_COMMITTED");
    assert_eq!(levels(db, "ONCE-1").await, (6, 0));

    let cancelled = Uuid::now_v7();
    harness
        .reserve(cancelled, &[("ONCE-1", 2)], None)
        .await
        .unwrap();
    let (a, b) = tokio::join!(harness.release(cancelled), harness.release(cancelled));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.status(), ReservationStatus::Released);
    assert_eq!(a, b);
    assert_eq!(levels(db, "ONCE-1").await, (6, 0));
    assert_eq!(audit_count(&harness, "release", cancelled).await, 1);
    let reason_given: String = sqlx::query_scalar(
        "SELECT reason FROM stock_changes WHERE order_id = $1 AND kind = 'release'",
    )
    .bind(cancelled)
    .fetch_one(db)
    .await
    .unwrap();
    assert_eq!(reason_given, "payment declined");
    let commit = harness.commit(cancelled).await.unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);
    assert_eq!(reason(&commit), "RESERVATION_RELEASED");

    // A commit racing a release: exactly one of them wins, the books agree.
    for _ in 0..10 {
        let contested = Uuid::now_v7();
        harness
            .reserve(contested, &[("ONCE-1", 1)], None)
            .await
            .unwrap();
        let (commit, release) = tokio::join!(harness.commit(contested), harness.release(contested));
        assert!(
            commit.is_ok() != release.is_ok(),
            "one wins: {commit:?} / {release:?}"
        );
        let (on_hand, reserved) = levels(db, "ONCE-1").await;
        assert_eq!(reserved, 0);
        if commit.is_ok() {
            harness.set_stock("ONCE-1", on_hand + 1).await;
        }
        assert_eq!(levels(db, "ONCE-1").await, (6, 0));
    }
    harness.stop().await;
}

#[tokio::test]
async fn releasing_an_unknown_order_makes_a_late_reservation_fail() {
    let harness = Harness::start().await;
    harness.set_stock("LATE-1", 3).await;
    let order = Uuid::now_v7();

    let marker = harness.release(order).await.unwrap();
    assert_eq!(marker.status(), ReservationStatus::Released);
    assert!(marker.lines.is_empty());
    assert_eq!(harness.release(order).await.unwrap(), marker);

    let late = harness
        .reserve(order, &[("LATE-1", 1)], None)
        .await
        .unwrap_err();
    assert_eq!(late.code(), Code::FailedPrecondition);
    assert_eq!(reason(&late), "RESERVATION_RELEASED");
    assert_eq!(harness.stock("LATE-1").await.available, 3);
    let commit = harness.commit(order).await.unwrap_err();
    assert_eq!(commit.code(), Code::FailedPrecondition);

    let never = harness.commit(Uuid::now_v7()).await.unwrap_err();
    assert_eq!(never.code(), Code::NotFound);
    assert_eq!(reason(&never), "RESERVATION_NOT_FOUND");
    harness.stop().await;
}

#[tokio::test]
async fn shortfalls_name_every_short_sku_and_hold_nothing() {
    let harness = Harness::start().await;
    harness.set_stock("SHORT-A", 2).await;
    harness.set_stock("SHORT-B", 0).await;
    harness.set_stock("SHORT-C", 9).await;
    let order = Uuid::now_v7();

    let status = harness
        .reserve(
            order,
            &[("SHORT-C", 5), ("SHORT-A", 3), ("SHORT-B", 1)],
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "INSUFFICIENT_STOCK");
    assert_eq!(short_skus(&status), ["SHORT-A", "SHORT-B"]);
    assert_eq!(levels(harness.service.db(), "SHORT-C").await, (9, 0));

    // Nothing was kept for the order, so it may try again with what is there.
    let retry = harness
        .reserve(order, &[("SHORT-C", 5), ("SHORT-A", 2)], None)
        .await
        .unwrap();
    assert_eq!(retry.status(), ReservationStatus::Reserved);

    let unknown = harness
        .reserve(Uuid::now_v7(), &[("SHORT-C", 1), ("NO-SUCH-SKU", 1)], None)
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    assert_eq!(reason(&unknown), "SKU_NOT_FOUND");
    assert!(unknown.message().contains("NO-SUCH-SKU"));
    assert_eq!(levels(harness.service.db(), "SHORT-C").await, (9, 5));
    harness.stop().await;
}

#[tokio::test]
async fn bad_reservation_requests_name_their_fields() {
    let harness = Harness::start().await;
    let mut client = harness.as_svc_order();
    let order_id = Uuid::now_v7().to_string();
    let cases: Vec<(ReserveStockRequest, Vec<&str>)> = vec![
        (
            ReserveStockRequest {
                order_id: "not-a-uuid".into(),
                lines: lines(&[("A", 1)]),
                ttl: None,
            },
            vec!["order_id"],
        ),
        (
            ReserveStockRequest {
                order_id: order_id.clone(),
                lines: lines(&[("A", 0), ("B", 100)]),
                ttl: None,
            },
            vec!["lines[0].quantity", "lines[1].quantity"],
        ),
        (
            ReserveStockRequest {
                order_id: order_id.clone(),
                lines: (0..101)
                    .map(|i| shopmesh_proto::shop::inventory::v1::ReservationLine {
                        sku: format!("SKU-{i}"),
                        quantity: 1,
                    })
                    .collect(),
                ttl: None,
            },
            vec!["lines"],
        ),
        (
            ReserveStockRequest {
                order_id: order_id.clone(),
                lines: lines(&[("A", 1)]),
                ttl: Some(prost_types::Duration {
                    seconds: 7200,
                    nanos: 0,
                }),
            },
            vec!["ttl"],
        ),
    ];
    for (request, fields) in cases {
        let status = client.reserve_stock(request).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), fields);
    }
    harness.stop().await;
}

#[tokio::test]
async fn only_services_with_the_credential_may_reserve_release_or_commit() {
    let harness = Harness::start().await;
    harness.set_stock("GUARD-1", 5).await;
    let order = Uuid::now_v7().to_string();
    let request = || ReserveStockRequest {
        order_id: order.clone(),
        lines: lines(&[("GUARD-1", 1)]),
        ttl: None,
    };

    let anonymous = harness.client().reserve_stock(request()).await.unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let admin = harness
        .client()
        .reserve_stock(harness.admin.request(request()))
        .await
        .unwrap_err();
    assert_eq!(
        admin.code(),
        Code::Unauthenticated,
        "a user token is not a service credential"
    );
    let mut forged = tonic::Request::new(request());
    forged
        .metadata_mut()
        .insert("x-service-token", "not-the-token-at-all".parse().unwrap());
    let forged = harness.client().reserve_stock(forged).await.unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
    let release = harness
        .client()
        .release_reservation(
            shopmesh_proto::shop::inventory::v1::ReleaseReservationRequest {
                order_id: order.clone(),
                reason: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(release.code(), Code::Unauthenticated);
    let commit = harness
        .client()
        .commit_reservation(
            shopmesh_proto::shop::inventory::v1::CommitReservationRequest {
                order_id: order.clone(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(commit.code(), Code::Unauthenticated);
    assert_eq!(levels(harness.service.db(), "GUARD-1").await, (5, 0));

    // With the credential, the calling service is recorded as the actor.
    harness
        .as_svc_order()
        .reserve_stock(request())
        .await
        .unwrap();
    let actors: BTreeMap<String, String> = sqlx::query_as(
        "SELECT 'reservation', actor FROM reservations UNION ALL \
         SELECT 'change', actor FROM stock_changes WHERE kind = 'reserve'",
    )
    .fetch_all(harness.service.db())
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert_eq!(actors["reservation"], "svc-order");
    assert_eq!(actors["change"], "svc-order");
    harness.stop().await;
}
