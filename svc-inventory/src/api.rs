//! The InventoryService gRPC API: proto ↔ stock, reservations and the watch hub
//! (errors become statuses in `error.rs`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::StreamExt;
use shopmesh_platform::auth::{Caller, ServiceCaller};
use shopmesh_platform::errors::{self, ErrorReason, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::inventory::v1 as pb;
use shopmesh_proto::shop::inventory::v1::inventory_service_server::InventoryService;
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};

use crate::error::InventoryError;
use crate::reservations::{Reservations, Reserved};
use crate::stock::{
    ChangeKind, DEFAULT_PAGE_SIZE, MAX_IDEMPOTENCY_KEY_LEN, MAX_PAGE_SIZE, MAX_SKUS, MAX_UNITS,
    Reservation, ReservationStatus, ReserveCommand, StockLevel, check_order_id, check_reason,
    check_sku,
};
use crate::store::{ChangeRecord, Store};
use crate::watch::{Snapshot, StockWatch};

pub struct InventoryApi {
    store: Store,
    reservations: Reservations,
    watch: StockWatch,
}

impl InventoryApi {
    pub fn new(store: Store, reservations: Reservations, watch: StockWatch) -> Self {
        Self {
            store,
            reservations,
            watch,
        }
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl From<StockLevel> for pb::Stock {
    fn from(level: StockLevel) -> Self {
        Self {
            available: level.available(),
            sku: level.sku,
            on_hand: level.on_hand,
            reserved: level.reserved,
            update_time: Some(timestamp(level.updated_at)),
        }
    }
}

impl From<ReservationStatus> for pb::ReservationStatus {
    fn from(status: ReservationStatus) -> Self {
        match status {
            ReservationStatus::Reserved => Self::Reserved,
            ReservationStatus::Committed => Self::Committed,
            ReservationStatus::Released => Self::Released,
            ReservationStatus::Expired => Self::Expired,
        }
    }
}

impl From<Reservation> for pb::Reservation {
    fn from(reservation: Reservation) -> Self {
        Self {
            order_id: reservation.order_id.to_string(),
            lines: reservation
                .lines
                .into_iter()
                .map(|line| pb::ReservationLine {
                    sku: line.sku,
                    quantity: line.quantity,
                })
                .collect(),
            status: pb::ReservationStatus::from(reservation.status) as i32,
            expire_time: Some(timestamp(reservation.expires_at)),
            create_time: Some(timestamp(reservation.created_at)),
            update_time: Some(timestamp(reservation.updated_at)),
        }
    }
}

impl From<ChangeRecord> for pb::StockChange {
    fn from(record: ChangeRecord) -> Self {
        let kind = match ChangeKind::parse(&record.kind) {
            Some(ChangeKind::Set) => pb::StockChangeKind::Set,
            Some(ChangeKind::Adjust) => pb::StockChangeKind::Adjust,
            Some(ChangeKind::Reserve) => pb::StockChangeKind::Reserve,
            Some(ChangeKind::Release) => pb::StockChangeKind::Release,
            Some(ChangeKind::Commit) => pb::StockChangeKind::Commit,
            Some(ChangeKind::Expire) => pb::StockChangeKind::Expire,
            None => pb::StockChangeKind::Unspecified,
        };
        Self {
            id: record.id.to_string(),
            sku: record.sku,
            kind: kind as i32,
            on_hand_delta: record.on_hand_delta,
            reserved_delta: record.reserved_delta,
            on_hand_after: record.on_hand_after,
            reserved_after: record.reserved_after,
            reason: record.reason,
            actor: record.actor,
            order_id: record.order_id.map(|id| id.to_string()).unwrap_or_default(),
            create_time: Some(timestamp(record.created_at)),
        }
    }
}

fn reservation_outcome(outcome: &'static str) {
    metrics::counter!("inventory_reservations_total", "outcome" => outcome).increment(1);
}

/// A list of 1 to 100 valid SKUs named by `field`, repeats removed (first kept).
fn sku_list(field: &str, skus: &[String]) -> Result<Vec<String>, Status> {
    let mut violations = FieldViolations::new();
    violations.check(!skus.is_empty(), field, "must name at least one SKU");
    violations.check(skus.len() <= MAX_SKUS, field, "must name at most 100 SKUs");
    for (index, sku) in skus.iter().enumerate() {
        check_sku(&mut violations, &format!("{field}[{index}]"), sku);
    }
    violations.into_result()?;
    let mut seen = HashSet::new();
    Ok(skus
        .iter()
        .filter(|sku| seen.insert(sku.as_str()))
        .cloned()
        .collect())
}

fn single_sku(sku: &str) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    check_sku(&mut violations, "sku", sku);
    violations.into_result()
}

#[tonic::async_trait]
impl InventoryService for InventoryApi {
    async fn get_stock(
        &self,
        request: Request<pb::GetStockRequest>,
    ) -> Result<Response<pb::GetStockResponse>, Status> {
        let sku = &request.get_ref().sku;
        single_sku(sku)?;
        let stock = self
            .store
            .stock(sku)
            .await
            .map_err(errors::internal)?
            .ok_or_else(|| errors::not_found(ErrorReason::SkuNotFound, sku))?;
        Ok(Response::new(pb::GetStockResponse {
            stock: Some(stock.into()),
        }))
    }

    async fn batch_get_stock(
        &self,
        request: Request<pb::BatchGetStockRequest>,
    ) -> Result<Response<pb::BatchGetStockResponse>, Status> {
        let asked = &request.get_ref().skus;
        let distinct = sku_list("skus", asked)?;
        let found: HashMap<String, StockLevel> = self
            .store
            .stocks(&distinct)
            .await
            .map_err(errors::internal)?
            .into_iter()
            .map(|level| (level.sku.clone(), level))
            .collect();
        let mut response = pb::BatchGetStockResponse::default();
        // A repeated SKU is answered each time it is asked for.
        for sku in asked {
            match found.get(sku) {
                Some(level) => response.stocks.push(level.clone().into()),
                None => response.missing_skus.push(sku.clone()),
            }
        }
        Ok(Response::new(response))
    }

    async fn set_stock(
        &self,
        request: Request<pb::SetStockRequest>,
    ) -> Result<Response<pb::SetStockResponse>, Status> {
        let actor = Caller::of(&request)?.user_id.to_string();
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        check_sku(&mut violations, "sku", &body.sku);
        violations.check(
            (0..=MAX_UNITS).contains(&body.on_hand),
            "on_hand",
            "must be 0 to 1000000000",
        );
        check_reason(&mut violations, "reason", &body.reason, true);
        violations.into_result()?;
        let stock = self
            .store
            .set_stock(&body.sku, body.on_hand, body.reason.trim(), &actor)
            .await?;
        Ok(Response::new(pb::SetStockResponse {
            stock: Some(stock.into()),
        }))
    }

    async fn adjust_stock(
        &self,
        request: Request<pb::AdjustStockRequest>,
    ) -> Result<Response<pb::AdjustStockResponse>, Status> {
        let actor = Caller::of(&request)?.user_id.to_string();
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        check_sku(&mut violations, "sku", &body.sku);
        violations.check(body.delta != 0, "delta", "must not be zero");
        violations.check(
            body.delta.abs() <= MAX_UNITS,
            "delta",
            "must be within ±1000000000",
        );
        check_reason(&mut violations, "reason", &body.reason, true);
        violations.check(
            body.idempotency_key.len() <= MAX_IDEMPOTENCY_KEY_LEN,
            "idempotency_key",
            "must be at most 128 characters",
        );
        violations.into_result()?;
        let key = Some(body.idempotency_key.as_str()).filter(|k| !k.is_empty());
        let stock = self
            .store
            .adjust_stock(&body.sku, body.delta, body.reason.trim(), &actor, key)
            .await?;
        Ok(Response::new(pb::AdjustStockResponse {
            stock: Some(stock.into()),
        }))
    }

    async fn list_stock_changes(
        &self,
        request: Request<pb::ListStockChangesRequest>,
    ) -> Result<Response<pb::ListStockChangesResponse>, Status> {
        Caller::of(&request)?;
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        check_sku(&mut violations, "sku", &body.sku);
        let page_size = paging::page_size(body.page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE);
        violations.check(page_size.is_ok(), "page_size", "must not be negative");
        violations.into_result()?;
        let page_size = page_size.unwrap_or(DEFAULT_PAGE_SIZE);
        // A token pages the log of the SKU it was issued for, nothing else.
        let fingerprint = paging::fingerprint(&body.sku);
        let before: Option<i64> = paging::decode(&fingerprint, &body.page_token)?;
        if self
            .store
            .stock(&body.sku)
            .await
            .map_err(errors::internal)?
            .is_none()
        {
            return Err(errors::not_found(ErrorReason::SkuNotFound, &body.sku));
        }
        let mut page = self
            .store
            .changes(&body.sku, before, i64::from(page_size) + 1)
            .await
            .map_err(errors::internal)?;
        let next_page_token = if page.len() > page_size as usize {
            page.truncate(page_size as usize);
            page.last()
                .map(|last| paging::encode(&fingerprint, &last.seq))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListStockChangesResponse {
            changes: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn reserve_stock(
        &self,
        request: Request<pb::ReserveStockRequest>,
    ) -> Result<Response<pb::ReserveStockResponse>, Status> {
        let service = ServiceCaller::of(&request)?.name.clone();
        let command = ReserveCommand::from_request(request.get_ref())?;
        let reservation = match self.reservations.reserve(&command, &service).await {
            Ok(Reserved::New(reservation)) => {
                reservation_outcome("reserved");
                reservation
            }
            Ok(Reserved::Replayed(reservation)) => {
                reservation_outcome("duplicate");
                reservation
            }
            Err(err) => {
                reservation_outcome(match &err {
                    InventoryError::InsufficientStock(_) => "insufficient",
                    _ => "rejected",
                });
                return Err(err.into());
            }
        };
        Ok(Response::new(pb::ReserveStockResponse {
            reservation: Some(reservation.into()),
        }))
    }

    async fn release_reservation(
        &self,
        request: Request<pb::ReleaseReservationRequest>,
    ) -> Result<Response<pb::ReleaseReservationResponse>, Status> {
        let service = ServiceCaller::of(&request)?.name.clone();
        let body = request.get_ref();
        let mut violations = FieldViolations::new();
        let order_id = check_order_id(&mut violations, "order_id", &body.order_id);
        check_reason(&mut violations, "reason", &body.reason, false);
        violations.into_result()?;
        let order_id = order_id.unwrap_or_default();
        let reservation = self
            .reservations
            .release(order_id, body.reason.trim(), &service)
            .await?;
        Ok(Response::new(pb::ReleaseReservationResponse {
            reservation: Some(reservation.into()),
        }))
    }

    async fn commit_reservation(
        &self,
        request: Request<pb::CommitReservationRequest>,
    ) -> Result<Response<pb::CommitReservationResponse>, Status> {
        let service = ServiceCaller::of(&request)?.name.clone();
        let mut violations = FieldViolations::new();
        let order_id = check_order_id(&mut violations, "order_id", &request.get_ref().order_id);
        violations.into_result()?;
        let reservation = self
            .reservations
            .commit(order_id.unwrap_or_default(), &service)
            .await?;
        Ok(Response::new(pb::CommitReservationResponse {
            reservation: Some(reservation.into()),
        }))
    }

    async fn watch_stock(
        &self,
        request: Request<pb::WatchStockRequest>,
    ) -> Result<Response<BoxStream<pb::WatchStockResponse>>, Status> {
        let skus = sku_list("skus", &request.get_ref().skus)?;
        let store = self.store.clone();
        let snapshot: Snapshot = Arc::new(move |skus: Vec<String>| {
            let store = store.clone();
            Box::pin(async move { store.stocks(&skus).await })
        });
        let stream = self.watch.watch(skus, snapshot).map(|item| {
            item.map(|level| pb::WatchStockResponse {
                stock: Some(level.into()),
            })
            .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(stream)))
    }
}
