//! The PaymentService gRPC API: proto ↔ the payment lifecycle, and who may
//! see a payment. Payment errors become gRPC statuses in `error.rs`.
//!
//! Requests are never logged whole: a PaymentMethod may carry a card number.

use chrono::{DateTime, Utc};
use shopmesh_platform::auth::{Caller, ServiceCaller};
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::common::v1 as common;
use shopmesh_proto::shop::payment::v1 as pb;
use shopmesh_proto::shop::payment::v1::payment_method::Method;
use shopmesh_proto::shop::payment::v1::payment_service_server::PaymentService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::error::PaymentError;
use crate::lifecycle::Payments;
use crate::payment::{
    AuthorizeCommand, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_REASON_LEN, MethodInput, Money,
    Payment, PaymentStatus, RefundCommand, Transaction, TransactionKind, TransactionStatus,
    is_currency_code, is_idempotency_key,
};
use crate::provider::CardNumber;

pub struct PaymentApi {
    payments: Payments,
}

impl PaymentApi {
    pub fn new(payments: Payments) -> Self {
        Self { payments }
    }
}

fn timestamp(at: DateTime<Utc>) -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    })
}

fn money(money: &Money) -> Option<common::Money> {
    Some(common::Money {
        currency_code: money.currency_code.clone(),
        amount_minor: money.amount_minor,
    })
}

impl From<PaymentStatus> for pb::PaymentStatus {
    fn from(status: PaymentStatus) -> Self {
        match status {
            PaymentStatus::Pending => Self::Pending,
            PaymentStatus::Authorized => Self::Authorized,
            PaymentStatus::Captured => Self::Captured,
            PaymentStatus::Voided => Self::Voided,
            PaymentStatus::PartiallyRefunded => Self::PartiallyRefunded,
            PaymentStatus::Refunded => Self::Refunded,
            PaymentStatus::Failed => Self::Failed,
        }
    }
}

impl From<&Transaction> for pb::PaymentTransaction {
    fn from(t: &Transaction) -> Self {
        let kind = match t.kind {
            TransactionKind::Authorize => pb::TransactionKind::Authorize,
            TransactionKind::Capture => pb::TransactionKind::Capture,
            TransactionKind::Void => pb::TransactionKind::Void,
            TransactionKind::Refund => pb::TransactionKind::Refund,
        };
        let status = match t.status {
            TransactionStatus::Pending => pb::TransactionStatus::Pending,
            TransactionStatus::Succeeded => pb::TransactionStatus::Succeeded,
            TransactionStatus::Failed => pb::TransactionStatus::Failed,
        };
        Self {
            id: t.id.to_string(),
            kind: kind as i32,
            status: status as i32,
            amount: money(&t.amount),
            provider_reference: t.provider_reference.clone().unwrap_or_default(),
            failure_code: t.failure_code.clone().unwrap_or_default(),
            create_time: timestamp(t.created_at),
        }
    }
}

impl From<Payment> for pb::Payment {
    fn from(p: Payment) -> Self {
        Self {
            id: p.id.to_string(),
            order_id: p.order_id.to_string(),
            user_id: p.user_id.to_string(),
            status: pb::PaymentStatus::from(p.status) as i32,
            captured: money(&p.captured()),
            refunded: money(&p.refunded()),
            amount: money(&p.amount),
            provider: p.provider,
            card: Some(pb::CardSummary {
                brand: p.card.brand,
                last4: p.card.last4,
            }),
            failure_code: p.failure_code.unwrap_or_default(),
            failure_message: p.failure_message.unwrap_or_default(),
            transactions: p.transactions.iter().map(Into::into).collect(),
            create_time: timestamp(p.created_at),
            update_time: timestamp(p.updated_at),
        }
    }
}

fn check_key(violations: &mut FieldViolations, key: &str) {
    violations.check(
        is_idempotency_key(key),
        "idempotency_key",
        "must be 1 to 128 printable ASCII characters",
    );
}

fn check_uuid(violations: &mut FieldViolations, field: &str, value: &str) -> Uuid {
    match Uuid::parse_str(value) {
        Ok(id) => id,
        Err(_) => {
            violations.add(field, "must be a UUID");
            Uuid::nil()
        }
    }
}

/// The key and payment id every capture, void and refund names.
fn check_operation(violations: &mut FieldViolations, key: &str, payment_id: &str) -> Uuid {
    check_key(violations, key);
    check_uuid(violations, "payment_id", payment_id)
}

fn check_reason(violations: &mut FieldViolations, reason: &str) {
    violations.check(
        reason.chars().count() <= MAX_REASON_LEN,
        "reason",
        "must be at most 500 characters",
    );
}

/// The method a request names; the field path is `payment_method...`.
fn method_input(
    violations: &mut FieldViolations,
    method: Option<&pb::PaymentMethod>,
) -> Option<MethodInput> {
    match method.and_then(|m| m.method.as_ref()) {
        None => {
            violations.add("payment_method", "is required");
            None
        }
        Some(Method::CardToken(token)) => {
            let ok = !token.is_empty()
                && token.len() <= 255
                && token.bytes().all(|b| b.is_ascii_graphic());
            violations.check(
                ok,
                "payment_method.card_token",
                "must be 1 to 255 printable ASCII characters",
            );
            ok.then(|| MethodInput::Token(token.clone()))
        }
        Some(Method::TestCardNumber(number)) => match CardNumber::parse(number) {
            Some(number) => Some(MethodInput::TestCard(number)),
            None => {
                violations.add(
                    "payment_method.test_card_number",
                    "must be a card number of 12 to 19 digits",
                );
                None
            }
        },
    }
}

fn authorize_command(body: &pb::AuthorizePaymentRequest) -> Result<AuthorizeCommand, Status> {
    let mut violations = FieldViolations::new();
    check_key(&mut violations, &body.idempotency_key);
    let order_id = check_uuid(&mut violations, "order_id", &body.order_id);
    let user_id = check_uuid(&mut violations, "user_id", &body.user_id);
    let amount = match &body.amount {
        None => {
            violations.add("amount", "is required");
            None
        }
        Some(amount) => {
            violations.check(
                is_currency_code(&amount.currency_code),
                "amount.currency_code",
                "must be a three-letter ISO 4217 code in upper case",
            );
            violations.check(
                amount.amount_minor > 0,
                "amount.amount_minor",
                "must be positive",
            );
            Some(Money::new(&amount.currency_code, amount.amount_minor))
        }
    };
    let method = method_input(&mut violations, body.payment_method.as_ref());
    violations.into_result()?;
    match (amount, method) {
        (Some(amount), Some(method)) => Ok(AuthorizeCommand {
            idempotency_key: body.idempotency_key.clone(),
            order_id,
            user_id,
            amount,
            method,
        }),
        _ => Err(Status::invalid_argument("invalid request")),
    }
}

/// The caller may see `payment`: its owner or an admin.
fn may_see(caller: &Caller, payment: &Payment) -> bool {
    caller.is_admin() || caller.user_id == payment.user_id
}

fn payment_response(payment: Payment) -> Option<pb::Payment> {
    Some(payment.into())
}

#[tonic::async_trait]
impl PaymentService for PaymentApi {
    async fn tokenize_payment_method(
        &self,
        request: Request<pb::TokenizePaymentMethodRequest>,
    ) -> Result<Response<pb::TokenizePaymentMethodResponse>, Status> {
        ServiceCaller::of(&request)?;
        let mut violations = FieldViolations::new();
        let method = method_input(&mut violations, request.get_ref().payment_method.as_ref());
        violations.into_result()?;
        let method = method.ok_or_else(|| Status::invalid_argument("invalid payment_method"))?;
        let tokenized = self.payments.tokenize(&method).await?;
        Ok(Response::new(pb::TokenizePaymentMethodResponse {
            card_token: tokenized.token,
            card: Some(pb::CardSummary {
                brand: tokenized.card.brand,
                last4: tokenized.card.last4,
            }),
            expire_time: tokenized.expires_at.and_then(timestamp),
        }))
    }

    async fn authorize_payment(
        &self,
        request: Request<pb::AuthorizePaymentRequest>,
    ) -> Result<Response<pb::AuthorizePaymentResponse>, Status> {
        ServiceCaller::of(&request)?;
        let command = authorize_command(request.get_ref())?;
        let payment = self.payments.authorize(&command).await?;
        Ok(Response::new(pb::AuthorizePaymentResponse {
            payment: payment_response(payment),
        }))
    }

    async fn capture_payment(
        &self,
        request: Request<pb::CapturePaymentRequest>,
    ) -> Result<Response<pb::CapturePaymentResponse>, Status> {
        ServiceCaller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let payment_id = check_operation(&mut violations, &body.idempotency_key, &body.payment_id);
        violations.into_result()?;
        let payment = self
            .payments
            .capture(payment_id, &body.idempotency_key)
            .await?;
        Ok(Response::new(pb::CapturePaymentResponse {
            payment: payment_response(payment),
        }))
    }

    async fn void_payment(
        &self,
        request: Request<pb::VoidPaymentRequest>,
    ) -> Result<Response<pb::VoidPaymentResponse>, Status> {
        ServiceCaller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let payment_id = check_operation(&mut violations, &body.idempotency_key, &body.payment_id);
        check_reason(&mut violations, &body.reason);
        violations.into_result()?;
        let payment = self
            .payments
            .void(payment_id, &body.idempotency_key, body.reason.trim())
            .await?;
        Ok(Response::new(pb::VoidPaymentResponse {
            payment: payment_response(payment),
        }))
    }

    async fn refund_payment(
        &self,
        request: Request<pb::RefundPaymentRequest>,
    ) -> Result<Response<pb::RefundPaymentResponse>, Status> {
        ServiceCaller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let payment_id = check_operation(&mut violations, &body.idempotency_key, &body.payment_id);
        check_reason(&mut violations, &body.reason);
        if let Some(amount) = &body.amount {
            violations.check(
                amount.amount_minor > 0,
                "amount.amount_minor",
                "must be positive",
            );
        }
        violations.into_result()?;
        let command = RefundCommand {
            idempotency_key: body.idempotency_key.clone(),
            payment_id,
            amount: body
                .amount
                .as_ref()
                .map(|a| Money::new(&a.currency_code, a.amount_minor)),
            reason: body.reason.trim().to_owned(),
        };
        let payment = self.payments.refund(&command).await?;
        Ok(Response::new(pb::RefundPaymentResponse {
            payment: payment_response(payment),
        }))
    }

    async fn get_payment(
        &self,
        request: Request<pb::GetPaymentRequest>,
    ) -> Result<Response<pb::GetPaymentResponse>, Status> {
        let caller = Caller::of(&request)?;
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        let payment = match self.payments.load(id).await {
            Ok(payment) if may_see(caller, &payment) => payment,
            // Someone else's payment is as unknown as a missing one.
            Ok(_) | Err(PaymentError::NotFound(_)) => {
                return Err(PaymentError::NotFound(id).into());
            }
            Err(err) => return Err(err.into()),
        };
        Ok(Response::new(pb::GetPaymentResponse {
            payment: payment_response(payment),
        }))
    }

    async fn list_order_payments(
        &self,
        request: Request<pb::ListOrderPaymentsRequest>,
    ) -> Result<Response<pb::ListOrderPaymentsResponse>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let order_id = check_uuid(&mut violations, "order_id", &body.order_id);
        let page_size = paging::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        violations.check(page_size.is_ok(), "page_size", "must not be negative");
        violations.into_result()?;
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE) as usize;
        let owner = (!caller.is_admin()).then_some(caller.user_id);
        // A token pages the list it was issued for: this order, as this caller sees it.
        let fingerprint = paging::fingerprint(&(order_id, owner));
        let after: Option<(DateTime<Utc>, Uuid)> = paging::decode(&fingerprint, &body.page_token)?;
        let mut page = self
            .payments
            .order_payments(order_id, owner, after, page_size as i64 + 1)
            .await?;
        let next_page_token = if page.len() > page_size {
            page.truncate(page_size);
            page.last()
                .map(|last| paging::encode(&fingerprint, &(last.created_at, last.id)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListOrderPaymentsResponse {
            payments: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }
}
