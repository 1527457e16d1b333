//! What svc-user's integration tests share: the real service on its own fresh
//! database, behind a stand-in identity provider (the platform's `TestIdentity`:
//! it serves `GetJwks` for a test key and opens sessions in the real Redis),
//! shoppers and admins with valid access tokens, and svc-auth's service credential.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use fred::prelude::{Client, KeysInterface};
use shopmesh_platform::clients::Authenticated;
use shopmesh_platform::settings::{Env, RedisSettings};
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use shopmesh_proto::shop::user::v1::{
    Address, CreateAddressRequest, CreateProfileRequest, GetMyProfileRequest, GetProfileRequest,
    Profile,
};
use shopmesh_testkit::{SignedIn, TestIdentity, TestService, as_service, redis_url};
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

pub type UserClient = UserServiceClient<Channel>;
pub type InternalClient = UserServiceClient<Authenticated>;

pub struct Harness {
    pub service: TestService,
    pub identity: TestIdentity,
    /// Redis as the service sees it, to look at (or evict) cache entries.
    pub redis: Client,
    channel: Channel,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts svc-user with `extra` settings on top of the test defaults.
    pub async fn start_with(extra: &[(&str, &str)]) -> Self {
        let identity = TestIdentity::start()
            .await
            .expect("identity provider starts");
        let mut settings = vec![("AUTH_GRPC_URL", identity.auth_url.as_str())];
        settings.extend_from_slice(extra);
        let service = TestService::spawn(&svc_user::SPEC, &settings, svc_user::build)
            .await
            .expect("svc-user starts");
        let channel = service.channel().await.expect("connects");
        Self {
            service,
            identity,
            redis: redis().await,
            channel,
        }
    }

    /// A client with no credentials of its own (add a shopper's with `SignedIn::request`).
    pub fn client(&self) -> UserClient {
        UserServiceClient::new(self.channel.clone())
    }

    /// A client calling as svc-auth does, with the service credential.
    pub fn as_svc_auth(&self) -> InternalClient {
        UserServiceClient::new(as_service(self.channel.clone(), "svc-auth"))
    }

    /// A signed-in user whose profile does not exist (yet).
    pub async fn signed_in(&self, roles: &[&str]) -> SignedIn {
        self.identity.signed_in(roles).await.unwrap()
    }

    /// A registered shopper: signed in, profile created as svc-auth does it.
    pub async fn shopper(&self, display_name: &str) -> SignedIn {
        let shopper = self.signed_in(&[]).await;
        self.register(&shopper, display_name).await;
        shopper
    }

    /// A registered user with the admin role.
    pub async fn admin(&self) -> SignedIn {
        let admin = self.signed_in(&["admin"]).await;
        self.register(&admin, "Support Agent").await;
        admin
    }

    pub async fn register(&self, user: &SignedIn, display_name: &str) -> Profile {
        self.as_svc_auth()
            .create_profile(CreateProfileRequest {
                user_id: user.id.to_string(),
                email: format!("{}@example.com", user.id.simple()),
                display_name: display_name.to_owned(),
            })
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap()
    }

    pub async fn my_profile(&self, user: &SignedIn) -> Profile {
        self.client()
            .get_my_profile(user.request(GetMyProfileRequest {}))
            .await
            .unwrap()
            .into_inner()
            .profile
            .unwrap()
    }

    /// GetProfile (the admin read) of `user_id`, called by `caller`.
    pub async fn profile_as(&self, caller: &SignedIn, user_id: &str) -> Result<Profile, Status> {
        self.client()
            .get_profile(caller.request(GetProfileRequest {
                user_id: user_id.to_owned(),
            }))
            .await
            .map(|response| response.into_inner().profile.unwrap())
    }

    pub async fn add_address(&self, user: &SignedIn, label: &str) -> Address {
        self.client()
            .create_address(user.request(CreateAddressRequest {
                address: Some(address(label)),
            }))
            .await
            .unwrap()
            .into_inner()
            .address
            .unwrap()
    }

    /// Removes a user's cache entry, as expiry or eviction would.
    pub async fn evict(&self, user: Uuid) {
        let _: i64 = self.redis.del(cache_key(user)).await.unwrap();
    }

    pub async fn stop(self) {
        self.service.stop().await.unwrap();
    }
}

/// A connected Redis client on the test Redis.
pub async fn redis() -> Client {
    let settings = RedisSettings::from_env(&Env::from_pairs([("REDIS_URL", redis_url())])).unwrap();
    shopmesh_platform::redis::connect(&settings).await.unwrap()
}

pub fn cache_key(user: Uuid) -> String {
    format!("user:profile:{user}")
}

/// A valid address labelled `label`.
pub fn address(label: &str) -> Address {
    Address {
        label: label.to_owned(),
        recipient: "Ada Lovelace".into(),
        line1: "12 St James's Square".into(),
        city: "London".into(),
        postal_code: "SW1Y 4JH".into(),
        country_code: "GB".into(),
        phone: "+442079460000".into(),
        ..Default::default()
    }
}

/// The fields an INVALID_ARGUMENT names.
#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_platform::errors::violated_fields;

#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_testkit::error_reason as reason;

/// `cache_requests_total{cache="profile",result=…}` as this process's `/metrics` shows it.
pub fn profile_cache_lookups(result: &str) -> u64 {
    let label = format!("result=\"{result}\"");
    shopmesh_platform::metrics::handle()
        .render()
        .lines()
        .filter(|line| {
            line.starts_with("cache_requests_total{")
                && line.contains("cache=\"profile\"")
                && line.contains(&label)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Runs every future as its own task, all at once, and returns their outputs in order.
pub async fn concurrently<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let tasks: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await.unwrap());
    }
    outputs
}
