//! Profiles through the real service: creation by svc-auth (idempotent), the
//! shopper's own reads and updates, validation, and who may call what.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use prost_types::FieldMask;
use shopmesh_proto::shop::user::v1::{
    CreateProfileRequest, GetMyProfileRequest, GetUserProfileRequest, MarketingPreferences,
    Profile, UpdateMyProfileRequest,
};
use support::{Harness, reason, violated_fields};
use tonic::Code;
use uuid::Uuid;

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|p| (*p).to_owned()).collect(),
    })
}

async fn profile_rows(harness: &Harness, user: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM profiles WHERE user_id = $1")
        .bind(user)
        .fetch_one(harness.service.db())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_profile_is_idempotent_by_user_id_even_when_concurrent() {
    let harness = Harness::start().await;
    let user = harness.signed_in(&[]).await;
    let first = harness.register(&user, "Ada").await;
    assert_eq!(first.user_id, user.id.to_string());
    assert_eq!(first.display_name, "Ada");
    assert_eq!(first.marketing, Some(MarketingPreferences::default()));

    // A retry (even with other values) returns the existing profile unchanged.
    let again = harness
        .as_svc_auth()
        .create_profile(CreateProfileRequest {
            user_id: user.id.to_string(),
            email: "other@example.com".into(),
            display_name: "Somebody Else".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(profile_rows(&harness, user.id).await, 1);

    // Retries racing each other: every one succeeds, one row results.
    let racer = Uuid::now_v7();
    let calls = (0..12).map(|i| {
        let mut client = harness.as_svc_auth();
        async move {
            client
                .create_profile(CreateProfileRequest {
                    user_id: racer.to_string(),
                    email: "racer@example.com".into(),
                    display_name: format!("Racer {i}"),
                })
                .await
                .map(|r| r.into_inner().profile.unwrap())
        }
    });
    let results = support::concurrently(calls).await;
    let profiles: Vec<Profile> = results.into_iter().map(Result::unwrap).collect();
    assert!(profiles.windows(2).all(|w| w[0] == w[1]), "{profiles:?}");
    assert_eq!(profile_rows(&harness, racer).await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn create_profile_is_internal_and_names_bad_fields() {
    let harness = Harness::start().await;
    let user = harness.signed_in(&[]).await;
    let request = CreateProfileRequest {
        user_id: user.id.to_string(),
        email: "ada@example.com".into(),
        display_name: "Ada".into(),
    };
    // Neither anonymous callers nor shoppers may create profiles.
    let anonymous = harness
        .client()
        .create_profile(request.clone())
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let shopper = harness
        .client()
        .create_profile(user.request(request))
        .await
        .unwrap_err();
    assert_eq!(shopper.code(), Code::Unauthenticated);
    assert_eq!(profile_rows(&harness, user.id).await, 0);

    let bad = harness
        .as_svc_auth()
        .create_profile(CreateProfileRequest {
            user_id: "42".into(),
            email: "not-an-email".into(),
            display_name: "x".repeat(101),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&bad), ["user_id", "email", "display_name"]);
    harness.stop().await;
}

#[tokio::test]
async fn shoppers_read_and_update_their_own_profile_through_the_mask() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let grace = harness.shopper("Grace").await;
    let mut client = harness.client();

    let mine = harness.my_profile(&ada).await;
    assert_eq!(mine.display_name, "Ada");
    assert_eq!(mine.email, format!("{}@example.com", ada.id.simple()));
    assert_eq!(harness.my_profile(&grace).await.display_name, "Grace");

    // Only the masked field changes; the others in the message are ignored.
    let updated = client
        .update_my_profile(ada.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                display_name: "Ada Lovelace".into(),
                phone: "+14155550100".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(updated.display_name, "Ada Lovelace");
    assert_eq!(updated.phone, "");
    assert_eq!(updated.email, mine.email, "email is output only");
    assert!(updated.update_time.unwrap().seconds >= mine.update_time.unwrap().seconds);
    assert_eq!(harness.my_profile(&ada).await, updated);

    // A nested path sets one preference.
    let phone_and_sms = client
        .update_my_profile(ada.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                phone: "+14155550100".into(),
                marketing: Some(MarketingPreferences {
                    email_opt_in: true,
                    sms_opt_in: true,
                }),
                ..Default::default()
            }),
            update_mask: mask(&["phone", "marketing.sms_opt_in"]),
        }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(phone_and_sms.phone, "+14155550100");
    assert_eq!(
        phone_and_sms.marketing,
        Some(MarketingPreferences {
            email_opt_in: false,
            sms_opt_in: true
        })
    );

    // An empty mask replaces every writable field.
    let replaced = client
        .update_my_profile(ada.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                display_name: "Countess of Lovelace".into(),
                marketing: Some(MarketingPreferences {
                    email_opt_in: true,
                    sms_opt_in: false,
                }),
                ..Default::default()
            }),
            update_mask: None,
        }))
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(replaced.display_name, "Countess of Lovelace");
    assert_eq!(replaced.phone, "");
    assert_eq!(
        replaced.marketing,
        Some(MarketingPreferences {
            email_opt_in: true,
            sms_opt_in: false
        })
    );
    assert_eq!(harness.my_profile(&ada).await, replaced);

    let version: i64 = sqlx::query_scalar("SELECT version FROM profiles WHERE user_id = $1")
        .bind(ada.id)
        .fetch_one(harness.service.db())
        .await
        .unwrap();
    assert_eq!(version, 4, "created at 1, three updates");
    // Grace is untouched.
    assert_eq!(harness.my_profile(&grace).await.display_name, "Grace");
    harness.stop().await;
}

#[tokio::test]
async fn invalid_updates_name_their_fields_and_change_nothing() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let before = harness.my_profile(&ada).await;
    let mut client = harness.client();
    let profile = |name: &str, phone: &str, sms: bool| {
        Some(Profile {
            display_name: name.into(),
            phone: phone.into(),
            marketing: Some(MarketingPreferences {
                email_opt_in: false,
                sms_opt_in: sms,
            }),
            ..Default::default()
        })
    };
    let cases = [
        (profile("", "", false), None, vec!["profile.display_name"]),
        (
            profile(&"x".repeat(101), "4155550100", false),
            None,
            vec!["profile.display_name", "profile.phone"],
        ),
        (
            profile("Ada", "", false),
            mask(&["display_name", "email"]),
            vec!["update_mask"],
        ),
        (
            profile("Ada", "", false),
            mask(&["nickname"]),
            vec!["update_mask"],
        ),
        // SMS consent needs a phone, checked against the stored profile.
        (
            profile("Ada", "", true),
            mask(&["marketing.sms_opt_in"]),
            vec!["profile.marketing.sms_opt_in"],
        ),
        (None, None, vec!["profile"]),
    ];
    for (profile, update_mask, fields) in cases {
        let status = client
            .update_my_profile(ada.request(UpdateMyProfileRequest {
                profile,
                update_mask: update_mask.clone(),
            }))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{update_mask:?}");
        assert_eq!(violated_fields(&status), fields, "{}", status.message());
    }
    assert_eq!(harness.my_profile(&ada).await, before);
    harness.stop().await;
}

#[tokio::test]
async fn admins_read_any_profile_and_only_admins_may() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let admin = harness.admin().await;
    let read = harness
        .profile_as(&admin, &ada.id.to_string())
        .await
        .unwrap();
    assert_eq!(read, harness.my_profile(&ada).await);

    let denied = harness
        .profile_as(&ada, &admin.id.to_string())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    let missing = Uuid::now_v7().to_string();
    let not_found = harness.profile_as(&admin, &missing).await.unwrap_err();
    assert_eq!(not_found.code(), Code::NotFound);
    assert_eq!(reason(&not_found), "USER_NOT_FOUND");
    assert!(not_found.message().contains(&missing));

    let malformed = harness.profile_as(&admin, "ada").await.unwrap_err();
    assert_eq!(malformed.code(), Code::InvalidArgument);
    assert_eq!(violated_fields(&malformed), ["user_id"]);
    harness.stop().await;
}

#[tokio::test]
async fn user_methods_need_a_valid_token_of_a_live_session() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let mut client = harness.client();

    let anonymous = client
        .get_my_profile(GetMyProfileRequest {})
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);

    let mut forged = tonic::Request::new(GetMyProfileRequest {});
    forged
        .metadata_mut()
        .insert("authorization", "Bearer not.a.jwt".parse().unwrap());
    assert_eq!(
        client.get_my_profile(forged).await.unwrap_err().code(),
        Code::Unauthenticated
    );

    // Logging out (revoking the session) takes effect at the next call.
    assert!(
        client
            .get_my_profile(ada.request(GetMyProfileRequest {}))
            .await
            .is_ok()
    );
    harness
        .identity
        .sessions
        .revoke(ada.session, ada.id)
        .await
        .unwrap();
    assert_eq!(
        client
            .get_my_profile(ada.request(GetMyProfileRequest {}))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    harness.stop().await;
}

#[tokio::test]
async fn a_user_without_a_profile_yet_gets_user_not_found() {
    let harness = Harness::start().await;
    let newcomer = harness.signed_in(&[]).await;
    let status = harness
        .client()
        .get_my_profile(newcomer.request(GetMyProfileRequest {}))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(reason(&status), "USER_NOT_FOUND");
    let update = harness
        .client()
        .update_my_profile(newcomer.request(UpdateMyProfileRequest {
            profile: Some(Profile {
                display_name: "New".into(),
                ..Default::default()
            }),
            update_mask: mask(&["display_name"]),
        }))
        .await
        .unwrap_err();
    assert_eq!(update.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn a_cache_ttl_outside_5_to_60_minutes_stops_the_start_naming_the_variable() {
    let identity = shopmesh_testkit::TestIdentity::start().await.unwrap();
    for bad in ["60", "7200", "soon"] {
        let result = shopmesh_testkit::TestService::spawn(
            &svc_user::SPEC,
            &[
                ("AUTH_GRPC_URL", identity.auth_url.as_str()),
                ("PROFILE_CACHE_TTL_SECONDS", bad),
            ],
            svc_user::build,
        )
        .await;
        let err = result.err().expect("a bad TTL is refused");
        assert!(
            format!("{err:#}").contains("PROFILE_CACHE_TTL_SECONDS"),
            "{bad}: {err:#}"
        );
    }
}

#[tokio::test]
async fn services_read_any_profile_through_the_internal_get_user_profile() {
    let harness = Harness::start().await;
    let ada = harness.shopper("Ada").await;
    let mut service = harness.as_svc_auth();
    let profile = service
        .get_user_profile(GetUserProfileRequest {
            user_id: ada.id.to_string(),
        })
        .await
        .unwrap()
        .into_inner()
        .profile
        .unwrap();
    assert_eq!(profile.user_id, ada.id.to_string());
    assert_eq!(profile.display_name, "Ada");
    assert!(!profile.email.is_empty());

    let unknown = service
        .get_user_profile(GetUserProfileRequest {
            user_id: Uuid::now_v7().to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    let bad = service
        .get_user_profile(GetUserProfileRequest {
            user_id: "nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(violated_fields(&bad), ["user_id"]);
    // A shopper's token is not a service credential.
    let shopper = harness
        .client()
        .get_user_profile(ada.request(GetUserProfileRequest {
            user_id: ada.id.to_string(),
        }))
        .await
        .unwrap_err();
    assert_eq!(shopper.code(), Code::Unauthenticated);
    harness.stop().await;
}
