//! Errors as `application/problem+json` (RFC 9457) with a stable `code`, field
//! violations and the request id. The one gRPC→HTTP status table lives here.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use tonic::Code;
use tonic_types::StatusExt;

use crate::transcode::FieldError;

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Violation {
    pub field: String,
    pub description: String,
}

/// A problem document.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub title: String,
    pub status: u16,
    /// Stable, machine-readable: the service's `ErrorInfo.reason`, else the gRPC code name.
    pub code: String,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<Violation>,
    pub request_id: String,
    #[serde(skip)]
    pub retry_after: Option<String>,
    #[serde(skip)]
    pub allow: Option<String>,
}

/// The standard mapping (google.rpc.Code → HTTP).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Problem {
    pub fn new(
        status: StatusCode,
        code: &str,
        detail: impl Into<String>,
        request_id: &str,
    ) -> Self {
        Self {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            code: code.to_owned(),
            detail: detail.into(),
            violations: Vec::new(),
            request_id: request_id.to_owned(),
            retry_after: None,
            allow: None,
        }
    }

    /// A 400 naming bad fields found by the gateway itself.
    pub fn invalid_fields(errors: Vec<FieldError>, request_id: &str) -> Self {
        let fields: Vec<_> = errors
            .iter()
            .map(|e| e.field.as_str())
            .filter(|f| !f.is_empty())
            .collect();
        let detail = if fields.is_empty() {
            "the request is malformed".to_owned()
        } else {
            format!("invalid {}", fields.join(", "))
        };
        let mut problem = Self::new(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            detail,
            request_id,
        );
        problem.violations = errors
            .into_iter()
            .map(|e| Violation {
                field: e.field,
                description: e.description,
            })
            .collect();
        problem
    }

    /// The problem for a service's gRPC status. 5xx never show the service's message.
    pub fn from_status(status: &tonic::Status, request_id: &str) -> Self {
        let http = http_status(status.code());
        let details = status.get_error_details();
        let code = details
            .error_info()
            .map(|info| info.reason.clone())
            .filter(|reason| !reason.is_empty())
            .unwrap_or_else(|| shopmesh_platform::metrics::code_name(status.code()).to_owned());
        let detail = match status.code() {
            Code::Unknown | Code::Internal | Code::DataLoss => "internal error".to_owned(),
            Code::Unavailable => "the service is unavailable, try again shortly".to_owned(),
            Code::DeadlineExceeded => "the service did not answer in time".to_owned(),
            _ => status.message().to_owned(),
        };
        let mut problem = Self::new(http, &code, detail, request_id);
        if let Some(bad_request) = details.bad_request() {
            problem.violations = bad_request
                .field_violations
                .iter()
                .map(|v| Violation {
                    field: v.field.clone(),
                    description: v.description.clone(),
                })
                .collect();
        }
        problem.retry_after = details
            .retry_info()
            .and_then(|info| info.retry_delay)
            .map(|delay| delay.as_secs().max(1).to_string());
        problem
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(retry) = self
            .retry_after
            .and_then(|r| HeaderValue::from_str(&r).ok())
        {
            headers.insert(header::RETRY_AFTER, retry);
        }
        if let Some(allow) = self.allow.and_then(|a| HeaderValue::from_str(&a).ok()) {
            headers.insert(header::ALLOW, allow);
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_table() {
        for (code, http) in [
            (Code::InvalidArgument, 400),
            (Code::Unauthenticated, 401),
            (Code::PermissionDenied, 403),
            (Code::NotFound, 404),
            (Code::AlreadyExists, 409),
            (Code::Aborted, 409),
            (Code::ResourceExhausted, 429),
            (Code::Unimplemented, 501),
            (Code::Unavailable, 503),
            (Code::DeadlineExceeded, 504),
            (Code::Internal, 500),
        ] {
            assert_eq!(http_status(code).as_u16(), http, "{code:?}");
        }
    }

    #[test]
    fn internal_errors_never_leak() {
        let status = tonic::Status::internal("connection to 10.0.0.7:5432 refused");
        let problem = Problem::from_status(&status, "req-1");
        assert_eq!(problem.status, 500);
        assert_eq!(problem.detail, "internal error");
        assert_eq!(problem.code, "INTERNAL");
    }

    #[test]
    fn field_violations_and_reasons_are_carried() {
        let status = shopmesh_platform::errors::invalid_field("page_size", "must not be negative");
        let problem = Problem::from_status(&status, "req-2");
        assert_eq!(problem.status, 400);
        assert_eq!(problem.violations[0].field, "page_size");
        assert_eq!(problem.request_id, "req-2");

        let status = shopmesh_platform::errors::not_found(
            shopmesh_platform::errors::ErrorReason::ProductNotFound,
            "x",
        );
        assert_eq!(Problem::from_status(&status, "r").code, "PRODUCT_NOT_FOUND");
    }

    #[test]
    fn a_service_shedding_load_becomes_503_with_retry_after() {
        let status = shopmesh_platform::errors::overloaded("busy");
        let problem = Problem::from_status(&status, "req-3");
        assert_eq!(problem.status, 503);
        assert_eq!(problem.code, "OVERLOADED");
        assert_eq!(problem.retry_after.as_deref(), Some("1"));
        let response = problem.into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }
}
