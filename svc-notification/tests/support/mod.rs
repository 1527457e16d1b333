//! What svc-notification's tests share: the stand-in identity provider, the
//! real svc-user, a capturing SMTP server, a recording SMS provider, and
//! svc-notification itself in its own consumer group; shoppers with tokens
//! and profiles; and events produced to the real topics.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

pub mod sms;
pub mod smtp;

use shopmesh_events::{Event, EventEnvelope};
use shopmesh_testkit::{
    SignedIn, TestIdentity, TestService, as_service, kafka_brokers, skip_to_end_on,
};
// Each test file uses some of these.
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::events::v1::{OrderConfirmed, OrderLine};
use shopmesh_proto::shop::notification::v1 as pb;
use shopmesh_proto::shop::notification::v1::notification_service_client::NotificationServiceClient;
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use shopmesh_proto::shop::user::v1::{CreateProfileRequest, Profile, UpdateMyProfileRequest};
#[allow(unused_imports)]
pub use shopmesh_testkit::{
    eventually, free_port, produce_event as produce, produce_event_on as produce_on,
};
use tonic::transport::Channel;
use uuid::Uuid;

pub use sms::SmsServer;
pub use smtp::SmtpServer;

pub const ORDER_TOPIC: &str = shopmesh_proto::topics::ORDER_EVENTS;

/// The address `shopper`'s profile in svc-user has (see
/// [`Fixture::create_profile`]): where their emails go.
pub fn email_of(shopper: &SignedIn) -> String {
    format!("shopper-{}@example.test", shopper.id.simple())
}

pub async fn start_user_service(identity: &TestIdentity, port: u16) -> TestService {
    let addr = format!("127.0.0.1:{port}");
    TestService::spawn(
        &svc_user::SPEC,
        &[
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("GRPC_ADDR", addr.as_str()),
        ],
        svc_user::build,
    )
    .await
    .expect("svc-user starts")
}

pub struct Fixture {
    pub identity: TestIdentity,
    pub user_port: u16,
    pub user: Option<TestService>,
    pub notification: TestService,
    pub smtp: SmtpServer,
    pub sms: SmsServer,
    /// svc-notification's consumer group (`NOTIFICATION_CONSUMER_GROUP`), its own.
    pub group: String,
    /// The broker svc-notification consumes from (`KAFKA_BROKERS`).
    pub brokers: String,
}

impl Fixture {
    /// Everything running, svc-user included.
    pub async fn start() -> Self {
        Self::start_with(true, &[]).await
    }

    /// With `user_up: false`, svc-user is not started (see [`Fixture::start_user`]).
    pub async fn start_with(user_up: bool, extra: &[(&str, &str)]) -> Self {
        Self::start_on(&kafka_brokers(), user_up, extra).await
    }

    /// [`Fixture::start_with`], svc-notification consuming from `brokers`
    /// (e.g. a private `TestBroker`) instead of the shared test broker.
    pub async fn start_on(brokers: &str, user_up: bool, extra: &[(&str, &str)]) -> Self {
        let identity = TestIdentity::start()
            .await
            .expect("identity provider starts");
        let user_port = free_port();
        let user = if user_up {
            Some(start_user_service(&identity, user_port).await)
        } else {
            None
        };
        let smtp = SmtpServer::start().await;
        let sms = SmsServer::start().await;
        let user_url = format!("http://127.0.0.1:{user_port}");
        let smtp_url = smtp.url();
        let group = format!("svc-notification-test-{}", Uuid::now_v7().simple());
        skip_history(brokers, &group).await;
        let mut settings = vec![
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("USER_GRPC_URL", user_url.as_str()),
            ("SMTP_URL", smtp_url.as_str()),
            ("SMTP_FROM", "shopmesh <orders@shopmesh.test>"),
            ("SMS_PROVIDER_URL", sms.url.as_str()),
            ("SMS_PROVIDER_API_KEY", sms::API_KEY),
            ("NOTIFICATION_CONSUMER_GROUP", group.as_str()),
            ("KAFKA_BROKERS", brokers),
            ("NOTIFICATION_MAX_BACKOFF_SECONDS", "1"),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
        ];
        settings.extend_from_slice(extra);
        let notification =
            TestService::spawn(&svc_notification::SPEC, &settings, svc_notification::build)
                .await
                .expect("svc-notification starts");
        Self {
            identity,
            user_port,
            user,
            notification,
            smtp,
            sms,
            group,
            brokers: brokers.to_owned(),
        }
    }

    pub async fn start_user(&mut self) {
        self.user = Some(start_user_service(&self.identity, self.user_port).await);
    }

    pub async fn client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.notification.channel().await.unwrap())
    }

    async fn user_channel(&self) -> Channel {
        let url = format!("http://127.0.0.1:{}", self.user_port);
        tonic::transport::Endpoint::from_shared(url)
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub async fn user_client(&self) -> UserServiceClient<Channel> {
        UserServiceClient::new(self.user_channel().await)
    }

    /// A signed-in shopper without a profile in svc-user (yet).
    pub async fn signed_in(&self) -> SignedIn {
        self.identity.signed_in(&[]).await.unwrap()
    }

    /// Creates the shopper's profile, as svc-auth does at registration.
    pub async fn create_profile(&self, shopper: &SignedIn) {
        UserServiceClient::new(as_service(self.user_channel().await, "svc-auth"))
            .create_profile(CreateProfileRequest {
                user_id: shopper.id.to_string(),
                email: email_of(shopper),
                display_name: "Ada".to_owned(),
            })
            .await
            .unwrap();
    }

    /// A signed-in shopper with a profile.
    pub async fn shopper(&self) -> SignedIn {
        let shopper = self.signed_in().await;
        self.create_profile(&shopper).await;
        shopper
    }

    pub async fn set_phone(&self, shopper: &SignedIn, phone: &str) {
        self.user_client()
            .await
            .update_my_profile(shopper.request(UpdateMyProfileRequest {
                profile: Some(Profile {
                    phone: phone.to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["phone".to_owned()],
                }),
            }))
            .await
            .unwrap();
    }

    pub async fn set_preference(
        &self,
        shopper: &SignedIn,
        event_type: pb::NotificationEventType,
        email: bool,
        sms: bool,
    ) {
        self.client()
            .await
            .update_my_preferences(shopper.request(pb::UpdateMyPreferencesRequest {
                preferences: Some(pb::NotificationPreferences {
                    event_types: vec![pb::EventTypePreference {
                        event_type: event_type as i32,
                        email,
                        sms,
                    }],
                    ..Default::default()
                }),
            }))
            .await
            .unwrap();
    }

    /// The emails the SMTP server has captured for `shopper`.
    pub fn emails_to(&self, shopper: &SignedIn) -> Vec<smtp::Captured> {
        self.smtp.messages_to(&email_of(shopper))
    }

    /// The shopper's notifications, newest first (one page of 100).
    pub async fn history(&self, shopper: &SignedIn) -> Vec<pb::Notification> {
        self.client()
            .await
            .list_my_notifications(shopper.request(pb::ListMyNotificationsRequest {
                page_size: 100,
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner()
            .notifications
    }
}

pub fn eur(minor: i64) -> Option<Money> {
    Some(Money {
        currency_code: "EUR".to_owned(),
        amount_minor: minor,
    })
}

/// An OrderConfirmed for `user` as svc-order would publish it.
pub fn order_confirmed(user: Uuid) -> EventEnvelope {
    let order_id = Uuid::now_v7().to_string();
    let payload = OrderConfirmed {
        order_id: order_id.clone(),
        user_id: user.to_string(),
        lines: vec![OrderLine {
            product_id: Uuid::now_v7().to_string(),
            sku: "TEA-POT-1".to_owned(),
            name: "Tea pot".to_owned(),
            quantity: 2,
            unit_price: eur(1_999),
            line_total: eur(3_998),
        }],
        subtotal: eur(3_998),
        total: eur(3_998),
        payment_id: Uuid::now_v7().to_string(),
        confirm_time: None,
    };
    Event::new(&payload, "order", order_id).into_envelope()
}

/// Commits the end of every consumed topic for `group` on `brokers`, so a new
/// service starts with what is produced from now on.
async fn skip_history(brokers: &str, group: &str) {
    skip_to_end_on(brokers, group, svc_notification::consumer::TOPICS).await;
}
