//! What svc-payment's integration tests share: the real service on its own
//! fresh database with the simulated card network (kept here, so tests count
//! its calls), behind the platform's stand-in identity provider; svc-order's
//! service credential; an admin and shoppers with valid access tokens.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use shopmesh_platform::clients::Authenticated;
use shopmesh_platform::settings::Secret;
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::payment::v1::payment_method::Method;
use shopmesh_proto::shop::payment::v1::payment_service_client::PaymentServiceClient;
use shopmesh_proto::shop::payment::v1::{
    AuthorizePaymentRequest, CapturePaymentRequest, Payment, PaymentMethod, RefundPaymentRequest,
    VoidPaymentRequest,
};
use shopmesh_testkit::{SignedIn, TestIdentity, TestService, as_service};
use svc_payment::provider::simulated::SimulatedNetwork;
use tonic::Status;
use tonic::transport::Channel;
use uuid::Uuid;

pub type PaymentClient = PaymentServiceClient<Channel>;
pub type InternalClient = PaymentServiceClient<Authenticated>;

pub const VISA: &str = "4242424242424242";
pub const MASTERCARD: &str = "5555555555554444";
pub const DECLINED: &str = "4000000000000002";
pub const INSUFFICIENT_FUNDS: &str = "4000000000009995";
pub const NO_ANSWER: &str = "4000000000000119";
pub const PROCESSING_ERROR: &str = "4000000000000127";
pub const ALL_TEST_CARDS: &[&str] = &[
    VISA,
    MASTERCARD,
    DECLINED,
    INSUFFICIENT_FUNDS,
    NO_ANSWER,
    PROCESSING_ERROR,
];

/// The provider deadline of test services: short, so the slow card costs
/// little, long enough for a loaded machine to answer an approving card.
pub const PROVIDER_TIMEOUT_MS: u64 = 1000;
const TOKEN_KEY: &str = "integration-test-token-key";

pub struct Harness {
    pub service: TestService,
    pub identity: TestIdentity,
    pub network: Arc<SimulatedNetwork>,
    pub admin: SignedIn,
    channel: Channel,
}

/// Calls the simulated network received so far: (authorize, capture, void, refund).
#[derive(Debug, PartialEq, Eq)]
pub struct Calls {
    pub authorize: u64,
    pub capture: u64,
    pub void: u64,
    pub refund: u64,
}

impl Harness {
    pub async fn start() -> Self {
        let identity = TestIdentity::start()
            .await
            .expect("identity provider starts");
        let network = Arc::new(SimulatedNetwork::new(&Secret::new(TOKEN_KEY.to_owned())));
        let timeout = PROVIDER_TIMEOUT_MS.to_string();
        let settings = [
            ("AUTH_GRPC_URL", identity.auth_url.as_str()),
            ("PAYMENT_PROVIDER_TIMEOUT_MS", timeout.as_str()),
            ("PAYMENT_SIMULATED_TOKEN_KEY", TOKEN_KEY),
            ("DB_MAX_CONNECTIONS", "10"),
            ("DB_ACQUIRE_TIMEOUT_SECONDS", "30"),
        ];
        let provider = network.clone();
        let service = TestService::spawn(&svc_payment::SPEC, &settings, move |ctx| {
            svc_payment::build_with_provider(ctx, provider)
        })
        .await
        .expect("svc-payment starts");
        let channel = service.channel().await.expect("connects");
        let admin = identity.signed_in(&["admin"]).await.unwrap();
        Self {
            service,
            identity,
            network,
            admin,
            channel,
        }
    }

    /// A client with no credentials of its own.
    pub fn client(&self) -> PaymentClient {
        PaymentServiceClient::new(self.channel.clone())
    }

    /// A client calling as svc-order does, with the service credential.
    pub fn as_svc_order(&self) -> InternalClient {
        PaymentServiceClient::new(as_service(self.channel.clone(), "svc-order"))
    }

    /// A signed-in user without the admin role.
    pub async fn shopper(&self) -> SignedIn {
        self.identity.signed_in(&[]).await.unwrap()
    }

    pub fn calls(&self) -> Calls {
        let calls = &self.network.calls;
        Calls {
            authorize: calls.authorize.load(Ordering::SeqCst),
            capture: calls.capture.load(Ordering::SeqCst),
            void: calls.void.load(Ordering::SeqCst),
            refund: calls.refund.load(Ordering::SeqCst),
        }
    }

    pub async fn authorize(&self, request: AuthorizePaymentRequest) -> Result<Payment, Status> {
        self.as_svc_order()
            .authorize_payment(request)
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    /// Authorizes `amount_minor` USD on `card` for a new order of `user`.
    pub async fn authorize_card(
        &self,
        user: &SignedIn,
        card: &str,
        amount_minor: i64,
    ) -> Result<Payment, Status> {
        self.authorize(authorize_request(
            &key(),
            Uuid::now_v7(),
            user.id,
            amount_minor,
            card,
        ))
        .await
    }

    pub async fn capture(&self, payment_id: &str, key: &str) -> Result<Payment, Status> {
        self.as_svc_order()
            .capture_payment(CapturePaymentRequest {
                idempotency_key: key.to_owned(),
                payment_id: payment_id.to_owned(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn void(&self, payment_id: &str, key: &str) -> Result<Payment, Status> {
        self.as_svc_order()
            .void_payment(VoidPaymentRequest {
                idempotency_key: key.to_owned(),
                payment_id: payment_id.to_owned(),
                reason: "stock reservation failed".to_owned(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    pub async fn refund(
        &self,
        payment_id: &str,
        key: &str,
        amount_minor: Option<i64>,
    ) -> Result<Payment, Status> {
        self.as_svc_order()
            .refund_payment(RefundPaymentRequest {
                idempotency_key: key.to_owned(),
                payment_id: payment_id.to_owned(),
                amount: amount_minor.map(usd),
                reason: "order cancelled by customer".to_owned(),
            })
            .await
            .map(|r| r.into_inner().payment.unwrap())
    }

    /// An authorized and captured payment of `amount_minor` USD.
    pub async fn captured_payment(&self, user: &SignedIn, amount_minor: i64) -> Payment {
        let payment = self.authorize_card(user, VISA, amount_minor).await.unwrap();
        self.capture(&payment.id, &key()).await.unwrap()
    }
}

/// A fresh idempotency key. The UUID is written without hyphens: a hyphenated
/// one ends in a 12-character group that is all digits about once in 300
/// keys, which the card-number scan in `reads.rs` rightly flags.
pub fn key() -> String {
    format!("key-{}", Uuid::now_v7().simple())
}

pub fn usd(amount_minor: i64) -> Money {
    Money {
        currency_code: "USD".to_owned(),
        amount_minor,
    }
}

pub fn card(number: &str) -> Option<PaymentMethod> {
    Some(PaymentMethod {
        method: Some(Method::TestCardNumber(number.to_owned())),
    })
}

pub fn authorize_request(
    key: &str,
    order_id: Uuid,
    user_id: Uuid,
    amount_minor: i64,
    number: &str,
) -> AuthorizePaymentRequest {
    AuthorizePaymentRequest {
        idempotency_key: key.to_owned(),
        order_id: order_id.to_string(),
        user_id: user_id.to_string(),
        amount: Some(usd(amount_minor)),
        payment_method: card(number),
    }
}

pub fn minor(money: &Option<Money>) -> i64 {
    money.as_ref().map(|m| m.amount_minor).unwrap_or_default()
}
