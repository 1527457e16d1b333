//! The OrderService gRPC API: proto ↔ orders, the saga runner and the watch
//! hub. Order errors become gRPC statuses in `error.rs`.

use std::time::Duration;

use futures::StreamExt;
use shopmesh_platform::auth::{Caller, ServiceCaller};
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::order::v1 as pb;
use shopmesh_proto::shop::order::v1::order_service_server::OrderService;
use tokio::time::Instant;
use tonic::codegen::BoxStream;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::clients::Clients;
use crate::error::OrderError;
use crate::order::{
    DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, MAX_REASON_LEN, Order, OrderRequest, OrderStatus,
    price_lines, timestamp,
};
use crate::runner::RunnerHandle;
use crate::store::{CancelRequest, Inserted, NewOrder, Store};
use crate::watch::OrderWatch;

pub struct OrderApi {
    store: Store,
    clients: Clients,
    runner: RunnerHandle,
    watch: OrderWatch,
    saga_timeout: Duration,
    response_wait: Duration,
}

impl OrderApi {
    pub fn new(
        store: Store,
        clients: Clients,
        runner: RunnerHandle,
        watch: OrderWatch,
        saga_timeout: Duration,
        response_wait: Duration,
    ) -> Self {
        Self {
            store,
            clients,
            runner,
            watch,
            saga_timeout,
            response_wait,
        }
    }

    /// When a waiting RPC must answer: after the configured wait, or a little
    /// before the caller's deadline (`grpc-timeout`) when that is sooner.
    fn answer_by(&self, metadata: &MetadataMap) -> Instant {
        let wait = match grpc_timeout(metadata) {
            Some(timeout) => {
                let margin = (timeout / 10).max(Duration::from_millis(200));
                self.response_wait.min(timeout.saturating_sub(margin))
            }
            None => self.response_wait,
        };
        Instant::now() + wait
    }

    /// The order, if `caller` may see it; NOT_FOUND for anyone else.
    async fn visible_order(&self, caller: &Caller, id: &str) -> Result<Order, Status> {
        let id = errors::parse_uuid("id", id)?;
        match self.store.order(id).await? {
            Some(order) if order.user_id == caller.user_id || caller.is_admin() => Ok(order),
            _ => Err(OrderError::NotFound(id).into()),
        }
    }

    /// A repeat of a key: the same order if the content is the same.
    fn same_request(
        order: Order,
        request: &OrderRequest,
        fingerprint: &str,
    ) -> Result<Order, Status> {
        if order.fingerprint == fingerprint {
            Ok(order)
        } else {
            Err(OrderError::KeyReused(request.idempotency_key.clone()).into())
        }
    }
}

/// Parses the `grpc-timeout` header (e.g. `2999m`, `10S`).
fn grpc_timeout(metadata: &MetadataMap) -> Option<Duration> {
    let raw = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = raw.split_at(raw.len().checked_sub(1)?);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Cuts a page read one row long to `page_size`; the token of the next page
/// when there was that extra row, else empty.
fn next_page<T, K: serde::Serialize>(
    page: &mut Vec<T>,
    page_size: u32,
    fingerprint: &str,
    cursor: impl Fn(&T) -> K,
) -> String {
    if page.len() <= page_size as usize {
        return String::new();
    }
    page.truncate(page_size as usize);
    page.last()
        .map(|last| paging::encode(fingerprint, &cursor(last)))
        .unwrap_or_default()
}

fn order_response(order: &Order) -> Option<pb::Order> {
    Some(order.to_proto())
}

#[tonic::async_trait]
impl OrderService for OrderApi {
    #[tracing::instrument(skip_all, fields(service))]
    async fn create_order(
        &self,
        request: Request<pb::CreateOrderRequest>,
    ) -> Result<Response<pb::CreateOrderResponse>, Status> {
        let service = ServiceCaller::of(&request)?.name.clone();
        tracing::Span::current().record("service", service.as_str());
        let answer_by = self.answer_by(request.metadata());
        // The payment method may hold a card number: never log the request.
        let body = request.into_inner();
        let wanted = OrderRequest::from_proto(&body)?;
        let fingerprint = wanted.fingerprint();

        let existing = self
            .store
            .by_key(wanted.user_id, &wanted.idempotency_key)
            .await?;
        let order = match existing {
            Some(order) => Self::same_request(order, &wanted, &fingerprint)?,
            None => {
                let ids: Vec<Uuid> = wanted.lines.iter().map(|l| l.product_id).collect();
                let catalog = self.clients.catalog(&ids).await?;
                let (lines, currency) =
                    price_lines(&wanted.lines, &catalog).map_err(OrderError::from)?;
                let method = body.payment_method.clone().unwrap_or_default();
                let card = self.clients.tokenize(method).await?;
                let new = NewOrder {
                    id: Uuid::now_v7(),
                    user_id: wanted.user_id,
                    idempotency_key: &wanted.idempotency_key,
                    fingerprint: &fingerprint,
                    currency_code: &currency,
                    lines: &lines,
                    address: &wanted.address,
                    card_token: &card.token,
                    card_brand: &card.brand,
                    card_last4: &card.last4,
                    saga_timeout: self.saga_timeout,
                };
                match self.store.insert(&new).await? {
                    Inserted::New(order) => {
                        tracing::info!(order_id = %order.id, "order placed");
                        self.runner.wake();
                        order
                    }
                    Inserted::Existing(order) => Self::same_request(order, &wanted, &fingerprint)?,
                }
            }
        };
        let order = self
            .watch
            .wait_settled(&self.store, order.id, answer_by, OrderStatus::is_settled)
            .await?;
        Ok(Response::new(pb::CreateOrderResponse {
            order: order_response(&order),
        }))
    }

    async fn get_order(
        &self,
        request: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::GetOrderResponse>, Status> {
        let caller = Caller::of(&request)?;
        let order = self.visible_order(caller, &request.get_ref().id).await?;
        Ok(Response::new(pb::GetOrderResponse {
            order: order_response(&order),
        }))
    }

    async fn list_my_orders(
        &self,
        request: Request<pb::ListMyOrdersRequest>,
    ) -> Result<Response<pb::ListMyOrdersResponse>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let page_size = paging::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        violations.check(page_size.is_ok(), "page_size", "must not be negative");
        let mut statuses = Vec::new();
        for (index, raw) in body.statuses.iter().enumerate() {
            match pb::OrderStatus::try_from(*raw)
                .ok()
                .and_then(OrderStatus::from_proto)
            {
                Some(status) => statuses.push(status),
                None => violations.add(format!("statuses[{index}]"), "is not an order status"),
            }
        }
        violations.into_result()?;
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        statuses.sort_by_key(|s| s.as_str());
        statuses.dedup();
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let fingerprint = paging::fingerprint(&(caller.user_id, &names));
        let before: Option<Uuid> = paging::decode(&fingerprint, &body.page_token)?;
        let mut page = self
            .store
            .orders_of(caller.user_id, &statuses, before, i64::from(page_size) + 1)
            .await?;
        let next_page_token = next_page(&mut page, page_size, &fingerprint, |o| o.id);
        Ok(Response::new(pb::ListMyOrdersResponse {
            orders: page.iter().map(Order::to_proto).collect(),
            next_page_token,
        }))
    }

    async fn cancel_order(
        &self,
        request: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::CancelOrderResponse>, Status> {
        let caller = Caller::of(&request)?;
        let answer_by = self.answer_by(request.metadata());
        let body = request.get_ref();
        let reason = body.reason.trim();
        let mut violations = FieldViolations::new();
        violations.check(
            reason.chars().count() <= MAX_REASON_LEN,
            "reason",
            "must be at most 500 characters",
        );
        violations.into_result()?;
        let order = self.visible_order(caller, &body.id).await?;
        let by = if order.user_id == caller.user_id {
            "customer"
        } else {
            "admin"
        };
        let full_reason = if reason.is_empty() {
            format!("cancelled by {by}")
        } else {
            format!("cancelled by {by}: {reason}")
        };
        let outcome = self
            .store
            .request_cancel(order.id, &full_reason, &caller.user_id.to_string())
            .await?;
        let order = match outcome {
            CancelRequest::AlreadyDone => order,
            CancelRequest::Accepted => {
                tracing::info!(order_id = %order.id, by, "order cancellation requested");
                self.runner.wake();
                let order = self
                    .watch
                    .wait_settled(&self.store, order.id, answer_by, OrderStatus::is_terminal)
                    .await?;
                // A saga already failing when the cancellation came ends FAILED.
                if order.status == OrderStatus::Failed {
                    return Err(OrderError::CancelFailed.into());
                }
                order
            }
        };
        Ok(Response::new(pb::CancelOrderResponse {
            order: order_response(&order),
        }))
    }

    async fn list_order_status_history(
        &self,
        request: Request<pb::ListOrderStatusHistoryRequest>,
    ) -> Result<Response<pb::ListOrderStatusHistoryResponse>, Status> {
        let caller = Caller::of(&request)?;
        let body = request.get_ref();
        let page_size = paging::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)?;
        let order = self.visible_order(caller, &body.id).await?;
        let fingerprint = paging::fingerprint(&order.id);
        let after: Option<i64> = paging::decode(&fingerprint, &body.page_token)?;
        let mut page = self
            .store
            .history(order.id, after, i64::from(page_size) + 1)
            .await?;
        let next_page_token = next_page(&mut page, page_size, &fingerprint, |c| c.seq);
        Ok(Response::new(pb::ListOrderStatusHistoryResponse {
            changes: page
                .into_iter()
                .map(|change| pb::StatusChange {
                    status: OrderStatus::parse(&change.status)
                        .map_or(pb::OrderStatus::Unspecified, OrderStatus::to_proto)
                        as i32,
                    reason: change.reason,
                    change_time: Some(timestamp(change.changed_at)),
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn watch_order(
        &self,
        request: Request<pb::WatchOrderRequest>,
    ) -> Result<Response<BoxStream<pb::WatchOrderResponse>>, Status> {
        let caller = Caller::of(&request)?;
        let order = self.visible_order(caller, &request.get_ref().id).await?;
        let stream = self.watch.watch(self.store.clone(), order.id).map(|item| {
            item.map(|order| pb::WatchOrderResponse {
                order: Some(order.to_proto()),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeouts_parse_in_every_unit() {
        let mut metadata = MetadataMap::new();
        for (raw, expected) in [
            ("2999m", Duration::from_millis(2999)),
            ("10S", Duration::from_secs(10)),
            ("1M", Duration::from_secs(60)),
            ("5000000u", Duration::from_secs(5)),
        ] {
            metadata.insert("grpc-timeout", raw.parse().unwrap());
            assert_eq!(grpc_timeout(&metadata), Some(expected), "{raw}");
        }
        metadata.insert("grpc-timeout", "soon".parse().unwrap());
        assert_eq!(grpc_timeout(&metadata), None);
    }
}
