//! Building gRPC statuses the same way in every service: field violations for bad
//! input, a stable reason for domain errors, and internal errors that are logged
//! once with their cause chain and reach the client as "internal error" only.

pub use shopmesh_proto::shop::common::v1::ErrorReason;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::overload::LogThrottle;

/// The error domain in `google.rpc.ErrorInfo`, so clients can tell our reasons apart.
pub const ERROR_DOMAIN: &str = "shopmesh";

/// Collects field violations; turns into one INVALID_ARGUMENT naming every bad field.
#[derive(Debug, Default)]
pub struct FieldViolations {
    violations: Vec<(String, String)>,
}

impl FieldViolations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `field` (the proto field path, e.g. `price.amount_minor`) is wrong.
    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.violations.push((field.into(), description.into()));
    }

    /// Records a violation when `ok` is false.
    pub fn check(&mut self, ok: bool, field: &str, description: &str) {
        if !ok {
            self.add(field, description);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.violations.is_empty()
    }

    /// `Ok(())` when nothing was recorded, else the INVALID_ARGUMENT status.
    pub fn into_result(self) -> Result<(), Status> {
        if self.violations.is_empty() {
            return Ok(());
        }
        let mut details = ErrorDetails::new();
        let mut fields = Vec::with_capacity(self.violations.len());
        for (field, description) in self.violations {
            fields.push(field.clone());
            details.add_bad_request_violation(field, description);
        }
        Err(Status::with_error_details(
            Code::InvalidArgument,
            format!("invalid {}", fields.join(", ")),
            details,
        ))
    }
}

/// Longest idempotency key a service accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 128;

/// Whether `key` is a client's idempotency key as checkout takes it: 1 to 128
/// printable ASCII characters (spaces included).
pub fn is_idempotency_key(key: &str) -> bool {
    (1..=MAX_IDEMPOTENCY_KEY_LEN).contains(&key.len())
        && key.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

/// A single bad field.
pub fn invalid_field(field: &str, description: &str) -> Status {
    let mut violations = FieldViolations::new();
    violations.add(field, description);
    match violations.into_result() {
        Err(status) => status,
        Ok(()) => Status::invalid_argument(description.to_owned()),
    }
}

/// Error details holding only the `google.rpc.ErrorInfo` for `reason` (in our
/// domain), for a status that carries more details beside it.
pub fn error_info(reason: ErrorReason) -> ErrorDetails {
    ErrorDetails::with_error_info(
        reason.as_str_name(),
        ERROR_DOMAIN,
        std::collections::HashMap::new(),
    )
}

/// A domain error with its stable reason (proto `shop.common.v1.ErrorReason`),
/// carried as `google.rpc.ErrorInfo` so the gateway can expose it as `code`.
pub fn domain_error(code: Code, reason: ErrorReason, message: impl Into<String>) -> Status {
    Status::with_error_details(code, message, error_info(reason))
}

/// NOT_FOUND with a `*_NOT_FOUND` reason, e.g. `not_found(ProductNotFound, id)`:
/// "product 42 not found" (the resource named after the reason).
pub fn not_found(reason: ErrorReason, id: &str) -> Status {
    let name = reason.as_str_name();
    let resource = name
        .strip_suffix("_NOT_FOUND")
        .unwrap_or(name)
        .to_ascii_lowercase()
        .replace('_', " ");
    domain_error(Code::NotFound, reason, format!("{resource} {id} not found"))
}

/// The reason of a status one of our services returned: its `ErrorInfo` in
/// our domain, when the reason is one this build knows.
pub fn reason_of(status: &Status) -> Option<ErrorReason> {
    let details = status.get_error_details();
    let info = details.error_info()?;
    (info.domain == ERROR_DOMAIN)
        .then(|| ErrorReason::from_str_name(&info.reason))
        .flatten()
}

/// UNAVAILABLE with reason `OVERLOADED` and a one-second `RetryInfo`, which
/// the gateway turns into `Retry-After`.
pub fn overloaded(message: &str) -> Status {
    let mut details = error_info(ErrorReason::Overloaded);
    details.set_retry_info(Some(std::time::Duration::from_secs(1)));
    Status::with_error_details(Code::Unavailable, message, details)
}

/// Logs `err` once with its cause chain and returns an opaque INTERNAL status.
///
/// A database pool that had no connection free within its acquire timeout is
/// no bug but load: that call is refused as [`overloaded`], counted in
/// `overload_shed_total{reason="db_pool"}` and logged at most once a second.
pub fn internal(err: impl Into<anyhow::Error>) -> Status {
    static POOL_EXHAUSTED: LogThrottle = LogThrottle::new();
    let err = err.into();
    let pool_timed_out = err
        .chain()
        .any(|cause| matches!(cause.downcast_ref(), Some(sqlx::Error::PoolTimedOut)));
    if pool_timed_out {
        metrics::counter!("overload_shed_total", "server" => "grpc", "reason" => "db_pool")
            .increment(1);
        if let Some(refused) = POOL_EXHAUSTED.ready() {
            tracing::warn!(
                refused,
                "no database connection free in time: refusing calls"
            );
        }
        return overloaded("the service is busy; retry shortly");
    }
    tracing::error!(error = format!("{err:#}"), "internal error");
    Status::internal("internal error")
}

/// The fields an INVALID_ARGUMENT status names, in order (empty for any other status).
pub fn violated_fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// Parses a UUID field, naming the field when it is not one.
pub fn parse_uuid(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| invalid_field(field, "must be a UUID"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_are_1_to_128_printable_ascii() {
        assert!(is_idempotency_key("a"));
        assert!(is_idempotency_key("order 42: retry"));
        assert!(is_idempotency_key(&"k".repeat(128)));
        assert!(!is_idempotency_key(""));
        assert!(!is_idempotency_key(&"k".repeat(129)));
        assert!(!is_idempotency_key("tab\there"));
        assert!(!is_idempotency_key("schlüssel"));
    }

    #[test]
    fn violations_name_every_field() {
        let mut v = FieldViolations::new();
        v.add("page_size", "must not be negative");
        v.check(false, "page_token", "is malformed");
        v.check(true, "ignored", "never added");
        let status = v.into_result().unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument);
        let details = status.get_error_details();
        let fields: Vec<_> = details
            .bad_request()
            .unwrap()
            .field_violations
            .iter()
            .map(|f| f.field.clone())
            .collect();
        assert_eq!(fields, ["page_size", "page_token"]);
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status = internal(anyhow::anyhow!("password=hunter2 in a connection string"));
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn an_exhausted_pool_is_load_not_a_bug() {
        let status = internal(sqlx::Error::PoolTimedOut);
        assert_eq!(status.code(), Code::Unavailable);
        let details = status.get_error_details();
        assert_eq!(reason_of(&status), Some(ErrorReason::Overloaded));
        assert_eq!(
            details.retry_info().unwrap().retry_delay,
            Some(std::time::Duration::from_secs(1))
        );
        let wrapped = anyhow::Error::from(sqlx::Error::PoolTimedOut).context("loading products");
        assert_eq!(internal(wrapped).code(), Code::Unavailable);
    }

    #[test]
    fn not_found_carries_a_stable_reason() {
        let status = not_found(ErrorReason::CartLineNotFound, "SKU-1");
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "cart line SKU-1 not found");
        assert_eq!(
            status.get_error_details().error_info().unwrap().reason,
            "CART_LINE_NOT_FOUND"
        );
        assert_eq!(reason_of(&status), Some(ErrorReason::CartLineNotFound));
    }

    #[test]
    fn reasons_of_other_domains_or_unknown_names_are_none() {
        assert_eq!(reason_of(&Status::not_found("plain")), None);
        let foreign = Status::with_error_details(
            Code::NotFound,
            "x",
            ErrorDetails::with_error_info(
                "PRODUCT_NOT_FOUND",
                "googleapis.com",
                std::collections::HashMap::new(),
            ),
        );
        assert_eq!(reason_of(&foreign), None);
        let unknown = Status::with_error_details(
            Code::NotFound,
            "x",
            ErrorDetails::with_error_info(
                "NO_SUCH_REASON",
                ERROR_DOMAIN,
                std::collections::HashMap::new(),
            ),
        );
        assert_eq!(reason_of(&unknown), None);
    }

    #[test]
    fn every_reason_name_is_its_wire_string() {
        // The proto values carry no prefix, so the generated name is what
        // clients compare ErrorInfo.reason with.
        assert_eq!(ErrorReason::Overloaded.as_str_name(), "OVERLOADED");
        assert_eq!(
            ErrorReason::from_str_name("PAYMENT_PARTIALLY_REFUNDED"),
            Some(ErrorReason::PaymentPartiallyRefunded)
        );
    }
}
