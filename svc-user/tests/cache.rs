//! The profile cache: reads are served from Redis, a read after an update never
//! returns the old value (also when a slow read races the update), and reads
//! keep working with Redis gone.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use fred::prelude::HashesInterface;
use prost_types::FieldMask;
use shopmesh_proto::shop::user::v1::{GetMyProfileRequest, Profile, UpdateMyProfileRequest};
use shopmesh_testkit::SignedIn;
use support::{Harness, cache_key};
use svc_user::{ProfileCache, Profiles, Store};

const TTL: Duration = Duration::from_secs(900);

async fn rename(harness: &Harness, user: &SignedIn, name: &str) -> Profile {
    harness
        .client()
        .update_my_profile(user.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                display_name: name.to_owned(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["display_name".into()],
            }),
        }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap()
}

async fn cached_version(harness: &Harness, user: &SignedIn) -> Option<i64> {
    let version: Option<String> = harness.redis.hget(cache_key(user.id), "v").await.unwrap();
    version.map(|v| v.parse().unwrap())
}

async fn stored_version(harness: &Harness, user: &SignedIn) -> i64 {
    sqlx::query_scalar("SELECT version FROM profiles WHERE user_id = $1")
        .bind(user.id)
        .fetch_one(harness.service.db())
        .await
        .unwrap()
}

#[tokio::test]
async fn reads_come_from_the_cache_and_updates_write_through() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    assert_eq!(cached_version(&harness, &ada).await, None);
    harness.my_profile(&ada).await;
    assert_eq!(
        cached_version(&harness, &ada).await,
        Some(1),
        "a read fills"
    );

    // Changed behind the service's back (no version bump): the cached copy is served,
    // which shows reads really come from Redis.
    sqlx::query("UPDATE profiles SET display_name = 'Behind Your Back' WHERE user_id = $1")
        .bind(ada.id)
        .execute(harness.service.db())
        .await
        .unwrap();
    assert_eq!(harness.my_profile(&ada).await.display_name, "Ada");

    // An update is visible at once, to the owner and to admins, and cached as version 2.
    let updated = rename(&harness, &ada, "Ada Lovelace").await;
    assert_eq!(harness.my_profile(&ada).await, updated);
    let admin = harness.admin().await;
    let seen_by_admin = harness
        .profile_as(&admin, &ada.id.to_string())
        .await
        .unwrap();
    assert_eq!(seen_by_admin.display_name, "Ada Lovelace");
    assert_eq!(cached_version(&harness, &ada).await, Some(2));

    let ttl: i64 = fred::prelude::KeysInterface::ttl(&harness.redis, cache_key(ada.id))
        .await
        .unwrap();
    assert!((1..=900).contains(&ttl), "entries expire (TTL {ttl})");
    harness.stop().await;
}

#[tokio::test]
async fn a_slow_read_cannot_put_an_older_version_back() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let store = Store::new(harness.service.db().clone());
    let cache = ProfileCache::new(support::redis().await, TTL);

    // A read loads version 1 from PostgreSQL, then stalls before filling the cache…
    let stale = store.profile(ada.id).await.unwrap().unwrap();
    assert_eq!(stale.version, 1);
    harness.evict(ada.id).await;
    // …meanwhile the profile is updated (version 2 is written through)…
    rename(&harness, &ada, "Ada Lovelace").await;
    // …and the stalled read fills at last: refused.
    assert!(!cache.fill(&stale).await.unwrap());
    assert_eq!(harness.my_profile(&ada).await.display_name, "Ada Lovelace");
    assert_eq!(cached_version(&harness, &ada).await, Some(2));

    // The same rule whatever writes first: a newer version replaces an older one, never
    // the other way round, and an equal one changes nothing.
    harness.evict(ada.id).await;
    let newer = store.profile(ada.id).await.unwrap().unwrap();
    assert!(cache.fill(&stale).await.unwrap());
    assert!(cache.fill(&newer).await.unwrap());
    assert!(!cache.fill(&newer).await.unwrap());
    assert!(!cache.fill(&stale).await.unwrap());
    assert_eq!(cache.get(ada.id).await.unwrap(), Some(newer));
    harness.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_updates_never_see_an_update_undone() {
    let harness = Harness::start().await;
    let ada = harness.shopper("name 0").await;
    let stop = Arc::new(AtomicBool::new(false));

    // Readers hammer the profile. Right before each update the entry is evicted (as
    // expiry would), so reads miss and fill just as the update commits: the moment a
    // slow fill could put the previous version back.
    let mut readers = Vec::new();
    for _ in 0..8 {
        let (mut client, ada, stop) = (harness.client(), ada.clone(), stop.clone());
        readers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client
                    .get_my_profile(ada.request(GetMyProfileRequest {}))
                    .await
                    .unwrap();
            }
        }));
    }

    for i in 1..=30 {
        let name = format!("name {i}");
        harness.evict(ada.id).await;
        rename(&harness, &ada, &name).await;
        // The reads after the update see it, whatever the readers filled meanwhile.
        assert_eq!(harness.my_profile(&ada).await.display_name, name);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(harness.my_profile(&ada).await.display_name, name);
    }
    stop.store(true, Ordering::Relaxed);
    for task in readers {
        task.await.unwrap();
    }

    // After the dust settles: the last value, from the cache too.
    assert_eq!(harness.my_profile(&ada).await.display_name, "name 30");
    assert_eq!(harness.my_profile(&ada).await.display_name, "name 30");
    let version = stored_version(&harness, &ada).await;
    assert_eq!(version, 31);
    assert_eq!(cached_version(&harness, &ada).await, Some(version));
    harness.stop().await;
}

/// A Redis client for a server that is not there: never connected.
fn unreachable_redis() -> fred::prelude::Client {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = fred::prelude::Config::from_url(&format!("redis://{closed}")).unwrap();
    fred::prelude::Builder::from_config(config).build().unwrap()
}

#[tokio::test]
async fn reads_and_updates_work_with_redis_unreachable() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let store = Store::new(harness.service.db().clone());
    let profiles = Profiles::new(store.clone(), ProfileCache::new(unreachable_redis(), TTL));

    let misses = support::profile_cache_lookups("miss");
    let read = tokio::time::timeout(Duration::from_secs(2), profiles.get(ada.id))
        .await
        .expect("falls back at once")
        .unwrap()
        .unwrap();
    assert_eq!(read.display_name, "Ada");
    assert!(
        support::profile_cache_lookups("miss") > misses,
        "counted as a miss"
    );
    assert_eq!(profiles.get(uuid::Uuid::now_v7()).await.unwrap(), None);

    // An update (committed by the service) whose write-through then fails is answered
    // promptly, and the next read still returns the new value.
    let updated = rename(&harness, &ada, "Ada Lovelace").await;
    let record = store.profile(ada.id).await.unwrap().unwrap();
    assert_eq!(record.display_name, updated.display_name);
    tokio::time::timeout(Duration::from_secs(3), profiles.updated(&record))
        .await
        .expect("does not wait for Redis");
    assert_eq!(profiles.get(ada.id).await.unwrap(), Some(record));
    harness.stop().await;
}
