//! Address books through the real service: the default rules (also under
//! concurrency), the 20-address limit, list order and paging, validation, and
//! that nobody reaches another shopper's addresses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost_types::FieldMask;
use shopmesh_proto::shop::user::v1::{
    Address, CreateAddressRequest, DeleteAddressRequest, GetUserAddressRequest,
    ListAddressesRequest, SetDefaultAddressRequest, UpdateAddressRequest,
};
use shopmesh_testkit::SignedIn;
use support::{Harness, address, reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

async fn list(harness: &Harness, user: &SignedIn) -> Vec<Address> {
    harness
        .client()
        .list_addresses(user.request(ListAddressesRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .addresses
}

/// Labels in list order, the default marked with `*`.
async fn book(harness: &Harness, user: &SignedIn) -> Vec<String> {
    list(harness, user)
        .await
        .into_iter()
        .map(|a| {
            if a.is_default {
                format!("*{}", a.label)
            } else {
                a.label
            }
        })
        .collect()
}

async fn defaults_in_db(harness: &Harness, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM addresses WHERE user_id = $1 AND is_default")
        .bind(user)
        .fetch_one(harness.service.db())
        .await
        .unwrap()
}

async fn set_default(harness: &Harness, user: &SignedIn, id: &str) -> Address {
    harness
        .client()
        .set_default_address(user.request(SetDefaultAddressRequest { id: id.to_owned() }))
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap()
}

#[tokio::test]
async fn the_first_address_is_the_default_and_the_book_lists_default_then_newest() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    assert!(list(&harness, &ada).await.is_empty());

    let home = harness.add_address(&ada, "Home").await;
    assert!(home.is_default, "the first address becomes the default");
    assert!(Uuid::parse_str(&home.id).is_ok());
    assert_eq!(home.country_code, "GB");
    let work = harness.add_address(&ada, "Work").await;
    assert!(!work.is_default);
    harness.add_address(&ada, "Parents").await;
    assert_eq!(book(&harness, &ada).await, ["*Home", "Parents", "Work"]);

    // Pages of two walk the same order without overlap.
    let mut client = harness.client();
    let mut labels = Vec::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_addresses(ada.request(ListAddressesRequest {
                page_size: 2,
                page_token: token,
            }))
            .await
            .unwrap()
            .into_inner();
        assert!(page.addresses.len() <= 2);
        labels.extend(page.addresses.into_iter().map(|a| a.label));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(labels, ["Home", "Parents", "Work"]);
    harness.stop().await;
}

#[tokio::test]
async fn set_default_moves_the_default_and_is_idempotent() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    harness.add_address(&ada, "Home").await;
    let work = harness.add_address(&ada, "Work").await;

    let now_default = set_default(&harness, &ada, &work.id).await;
    assert!(now_default.is_default);
    assert_eq!(now_default.label, "Work");
    assert_eq!(book(&harness, &ada).await, ["*Work", "Home"]);

    let again = set_default(&harness, &ada, &work.id).await;
    assert_eq!(
        again, now_default,
        "setting the default again changes nothing"
    );
    assert_eq!(defaults_in_db(&harness, ada.id).await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn deleting_the_default_promotes_the_newest_other_address() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let home = harness.add_address(&ada, "Home").await;
    harness.add_address(&ada, "Work").await;
    let parents = harness.add_address(&ada, "Parents").await;
    let cabin = harness.add_address(&ada, "Cabin").await;
    let mut client = harness.client();

    // Deleting an address that is not the default leaves the default alone.
    client
        .delete_address(ada.request(DeleteAddressRequest { id: cabin.id }))
        .await
        .unwrap();
    assert_eq!(book(&harness, &ada).await, ["*Home", "Parents", "Work"]);

    client
        .delete_address(ada.request(DeleteAddressRequest {
            id: home.id.clone(),
        }))
        .await
        .unwrap();
    assert_eq!(book(&harness, &ada).await, ["*Parents", "Work"]);

    let gone = client
        .delete_address(ada.request(DeleteAddressRequest { id: home.id }))
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(reason(&gone), "ADDRESS_NOT_FOUND");

    client
        .delete_address(ada.request(DeleteAddressRequest { id: parents.id }))
        .await
        .unwrap();
    assert_eq!(book(&harness, &ada).await, ["*Work"]);
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_leave_exactly_one_default() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;

    // Racing first addresses: exactly one becomes the default.
    let creates = (0..6).map(|i| {
        let (mut client, ada) = (harness.client(), ada.clone());
        async move {
            client
                .create_address(ada.request(CreateAddressRequest {
                    address: Some(address(&format!("Address {i}"))),
                }))
                .await
                .map(|r| r.into_inner().address.unwrap())
        }
    });
    let addresses: Vec<Address> = support::concurrently(creates)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(addresses.iter().filter(|a| a.is_default).count(), 1);
    assert_eq!(defaults_in_db(&harness, ada.id).await, 1);

    // Racing SetDefaults over every address: each succeeds, one default remains.
    let switches = (0..30).map(|i| {
        let (mut client, ada) = (harness.client(), ada.clone());
        let id = addresses[i % addresses.len()].id.clone();
        async move {
            client
                .set_default_address(ada.request(SetDefaultAddressRequest { id }))
                .await
                .map(|_| ())
        }
    });
    for result in support::concurrently(switches).await {
        result.unwrap();
    }
    assert_eq!(defaults_in_db(&harness, ada.id).await, 1);
    let listed = list(&harness, &ada).await;
    assert_eq!(listed.iter().filter(|a| a.is_default).count(), 1);
    assert!(listed[0].is_default, "the default is listed first");
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_address_book_holds_at_most_20() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    for i in 0..19 {
        harness.add_address(&ada, &format!("Address {i}")).await;
    }
    // Six racing creates for the last free slot: one wins.
    let creates = (0..6).map(|i| {
        let (mut client, ada) = (harness.client(), ada.clone());
        async move {
            client
                .create_address(ada.request(CreateAddressRequest {
                    address: Some(address(&format!("Late {i}"))),
                }))
                .await
        }
    });
    let results = support::concurrently(creates).await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for refused in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition);
        assert_eq!(reason(refused), "ADDRESS_BOOK_FULL");
    }
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM addresses WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(harness.service.db())
        .await
        .unwrap();
    assert_eq!(count, 20);

    // A page holds the whole book; deleting one frees a slot.
    let all = list(&harness, &ada).await;
    assert_eq!(all.len(), 20);
    harness
        .client()
        .delete_address(ada.request(DeleteAddressRequest {
            id: all[5].id.clone(),
        }))
        .await
        .unwrap();
    harness.add_address(&ada, "Freed slot").await;
    harness.stop().await;
}

#[tokio::test]
async fn another_shoppers_address_is_not_found() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let mallory = harness.shopper("Mallory").await;
    let home = harness.add_address(&ada, "Home").await;
    harness.add_address(&ada, "Work").await;
    let mut client = harness.client();

    assert!(list(&harness, &mallory).await.is_empty());
    let update = client
        .update_address(mallory.request(UpdateAddressRequest {
            address: Some(Address {
                id: home.id.clone(),
                ..address("Mine now")
            }),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    let delete = client
        .delete_address(mallory.request(DeleteAddressRequest {
            id: home.id.clone(),
        }))
        .await
        .unwrap_err();
    let set_default = client
        .set_default_address(mallory.request(SetDefaultAddressRequest {
            id: home.id.clone(),
        }))
        .await
        .unwrap_err();
    for status in [update, delete, set_default] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(reason(&status), "ADDRESS_NOT_FOUND");
    }
    assert_eq!(list(&harness, &ada).await[0], home, "untouched");

    // Checkout (internal) reads an address only together with its owner.
    let mut checkout = harness.as_svc_auth();
    let owned = checkout
        .get_user_address(GetUserAddressRequest {
            user_id: ada.id.to_string(),
            address_id: home.id.clone(),
        })
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap();
    assert_eq!(owned, home);
    let wrong_owner = checkout
        .get_user_address(GetUserAddressRequest {
            user_id: mallory.id.to_string(),
            address_id: home.id.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_owner.code(), Code::NotFound);
    // And shoppers cannot call the internal method at all.
    let shopper = client
        .get_user_address(ada.request(GetUserAddressRequest {
            user_id: ada.id.to_string(),
            address_id: home.id,
        }))
        .await
        .unwrap_err();
    assert_eq!(shopper.code(), Code::Unauthenticated);
    harness.stop().await;
}

#[tokio::test]
async fn updates_change_only_the_masked_fields() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let home = harness.add_address(&ada, "Home").await;
    let mut client = harness.client();

    let relabelled = client
        .update_address(ada.request(UpdateAddressRequest {
            address: Some(Address {
                id: home.id.clone(),
                label: "  Flat ".into(),
                city: "ignored, not in the mask".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["label".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap();
    assert_eq!(relabelled.label, "Flat");
    assert_eq!(relabelled.city, home.city);
    assert!(relabelled.is_default, "an update keeps the default");
    assert_eq!(relabelled.create_time, home.create_time);

    let moved = client
        .update_address(ada.request(UpdateAddressRequest {
            address: Some(Address {
                id: home.id.clone(),
                ..Address {
                    label: "Berlin".into(),
                    recipient: "Ada L.".into(),
                    line1: "Unter den Linden 1".into(),
                    city: "Berlin".into(),
                    postal_code: "10117".into(),
                    country_code: "DE".into(),
                    ..Default::default()
                }
            }),
            update_mask: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .address
        .unwrap();
    assert_eq!(
        (moved.city.as_str(), moved.country_code.as_str()),
        ("Berlin", "DE")
    );
    assert_eq!(moved.phone, "", "an empty mask replaces every field");
    assert_eq!(list(&harness, &ada).await, [moved]);
    harness.stop().await;
}

#[tokio::test]
async fn invalid_addresses_name_their_fields() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let home = harness.add_address(&ada, "Home").await;
    let mut client = harness.client();

    let cases = [
        (
            Address {
                recipient: String::new(),
                ..address("x")
            },
            vec!["address.recipient"],
        ),
        (
            Address {
                line1: " ".into(),
                city: String::new(),
                ..address("x")
            },
            vec!["address.line1", "address.city"],
        ),
        (
            Address {
                country_code: "gb".into(),
                ..address("x")
            },
            vec!["address.country_code"],
        ),
        (
            Address {
                country_code: "XX".into(),
                phone: "020 7946 0000".into(),
                ..address("x")
            },
            vec!["address.country_code", "address.phone"],
        ),
    ];
    for (bad, fields) in cases {
        let status = client
            .create_address(ada.request(CreateAddressRequest { address: Some(bad) }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(violated_fields(&status), fields, "{}", status.message());
    }
    let missing = client
        .create_address(ada.request(CreateAddressRequest { address: None }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&missing), ["address"]);

    let read_only_path = client
        .update_address(ada.request(UpdateAddressRequest {
            address: Some(Address {
                id: home.id.clone(),
                is_default: false,
                ..address("x")
            }),
            update_mask: Some(FieldMask {
                paths: vec!["is_default".into()],
            }),
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&read_only_path), ["update_mask"]);
    let bad_id = client
        .update_address(ada.request(UpdateAddressRequest {
            address: Some(address("x")),
            update_mask: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_id), ["address.id"]);
    let bad_delete = client
        .delete_address(ada.request(DeleteAddressRequest { id: "home".into() }))
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad_delete), ["id"]);
    assert_eq!(list(&harness, &ada).await, [home], "nothing changed");
    harness.stop().await;
}
