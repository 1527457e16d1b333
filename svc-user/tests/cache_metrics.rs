//! The profile cache's hit and miss counters, as `/metrics` renders them. Alone in its test
//! binary, so no other test moves the process-wide counters while it counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost_types::FieldMask;
use shopmesh_proto::shop::user::v1::{Profile, UpdateMyProfileRequest};
use support::{Harness, profile_cache_lookups};

#[tokio::test]
async fn reads_move_the_hit_and_miss_counters_in_metrics() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let (hits, misses) = (profile_cache_lookups("hit"), profile_cache_lookups("miss"));

    // The first read misses and fills; the next ones hit.
    harness.my_profile(&ada).await;
    assert_eq!(profile_cache_lookups("miss"), misses + 1);
    for _ in 0..5 {
        harness.my_profile(&ada).await;
    }
    assert_eq!(profile_cache_lookups("hit"), hits + 5);

    // An update writes through: the read right after it hits, with the new value.
    harness
        .client()
        .update_my_profile(ada.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                display_name: "Ada Lovelace".into(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        }))
        .await
        .unwrap();
    assert_eq!(harness.my_profile(&ada).await.display_name, "Ada Lovelace");
    assert_eq!(profile_cache_lookups("hit"), hits + 6);
    assert_eq!(profile_cache_lookups("miss"), misses + 1);

    // Evicted: one miss refills it.
    harness.evict(ada.id).await;
    harness.my_profile(&ada).await;
    harness.my_profile(&ada).await;
    assert_eq!(profile_cache_lookups("miss"), misses + 2);
    assert_eq!(profile_cache_lookups("hit"), hits + 7);

    harness.stop().await;
}
