//! The CartService gRPC API: proto ↔ carts, with current prices and stock on
//! every answer, and Checkout (how it goes: `checkout`).
//!
//! Every change but ClearCart (which leaves no line to look up) first reads
//! the cart and looks up its products and stock (plus the product being
//! added), then writes: a dependency that is down fails the call before
//! anything is written, so its UNAVAILABLE never hides a change that happened
//! and a retried add does not count twice. Only lines that a concurrent
//! request added in between are looked up after the write.

use shopmesh_platform::auth::Caller;
use shopmesh_platform::errors::{FieldViolations, invalid_field, is_idempotency_key};
use shopmesh_proto::shop::cart::v1::cart_service_server::CartService;
use shopmesh_proto::shop::cart::v1::{
    AddCartItemRequest, AddCartItemResponse, Cart, CheckoutRequest, CheckoutResponse,
    ClearCartRequest, ClearCartResponse, CreateCartRequest, CreateCartResponse, GetCartRequest,
    GetCartResponse, MergeCartsRequest, MergeCartsResponse, RemoveCartItemRequest,
    RemoveCartItemResponse, UpdateCartItemRequest, UpdateCartItemResponse,
};
use shopmesh_proto::shop::order::v1::{CreateOrderLine, CreateOrderRequest};
use shopmesh_proto::shop::payment::v1::payment_method::Method;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::cart::{AddedLine, CartRecord, CartRef, MAX_QUANTITY, SeenPrice, now_ms};
use crate::catalog::{Catalog, Snapshot};
use crate::checkout::{CheckoutAttempt, Ordering, was_confirmed};
use crate::error::CartError;
use crate::metrics;
use crate::store::Carts;
use crate::view::{blocking_problems, cart_view};

/// The cart id that names the signed-in caller's own cart.
const MINE: &str = "mine";
/// Longest SKU accepted in a path (the catalog's are 3 to 40 characters).
const MAX_SKU_LEN: usize = 64;

pub struct CartApi {
    carts: Carts,
    catalog: Catalog,
    ordering: Ordering,
}

impl CartApi {
    pub fn new(carts: Carts, catalog: Catalog, ordering: Ordering) -> Self {
        Self {
            carts,
            catalog,
            ordering,
        }
    }

    /// A first attempt for a key: the cart must be ready; its lines and the
    /// resolved address are recorded under the key (or the attempt another
    /// request recorded first comes back).
    async fn first_attempt(
        &self,
        user: Uuid,
        key: &str,
        shipping_address_id: &str,
    ) -> Result<CheckoutAttempt, CartError> {
        let cart = CartRef::User(user);
        let record = self.carts.read(&cart).await?;
        if record.lines.is_empty() {
            return Err(CartError::EmptyCart);
        }
        let mut snapshot = Snapshot::default();
        self.catalog.fill_for(&mut snapshot, &record).await?;
        let view = cart_view(&record, &snapshot);
        if !view.ready_for_checkout {
            return Err(CartError::NotReady(blocking_problems(&view)));
        }
        let address = self.ordering.address(user, shipping_address_id).await?;
        let attempt = CheckoutAttempt {
            shipping_address_id: shipping_address_id.to_owned(),
            order: CreateOrderRequest {
                idempotency_key: key.to_owned(),
                user_id: user.to_string(),
                lines: record
                    .lines
                    .iter()
                    .map(|line| CreateOrderLine {
                        product_id: line.added.product_id.clone(),
                        sku: line.sku.clone(),
                        quantity: line.quantity,
                    })
                    .collect(),
                shipping_address: Some(address),
                payment_method: None,
            },
        };
        self.carts.record_checkout(user, key, &attempt).await
    }

    /// What the cart's lines look like now, looked up before a change so that
    /// a dependency that is down stops the change before it is written.
    async fn before_change(&self, cart: &CartRef) -> Result<Snapshot, CartError> {
        let record = self.carts.read(cart).await?;
        let mut snapshot = Snapshot::default();
        self.catalog.fill_for(&mut snapshot, &record).await?;
        Ok(snapshot)
    }

    /// The cart as the shopper sees it now (after a change: as the change left
    /// it), with current prices and stock; looks up what `snapshot` lacks.
    async fn shown_now(
        &self,
        record: &CartRecord,
        mut snapshot: Snapshot,
    ) -> Result<Cart, CartError> {
        self.catalog.fill_for(&mut snapshot, record).await?;
        Ok(cart_view(record, &snapshot))
    }
}

/// The cart a request names: "mine" (which needs a signed-in caller) or an
/// anonymous cart's UUID.
fn cart_ref<T>(request: &Request<T>, cart_id: &str) -> Result<CartRef, Status> {
    if cart_id == MINE {
        return Caller::optional(request)
            .map(|caller| CartRef::User(caller.user_id))
            .ok_or_else(|| {
                Status::unauthenticated("the cart \"mine\" needs a valid access token")
            });
    }
    Uuid::parse_str(cart_id)
        .map(CartRef::Anonymous)
        .map_err(|_| invalid_field("cart_id", "must be a cart id (UUID) or \"mine\""))
}

fn check_checkout(request: &CheckoutRequest) -> Result<(), Status> {
    let mut violations = FieldViolations::new();
    let key = &request.idempotency_key;
    violations.check(
        is_idempotency_key(key),
        "idempotency_key",
        "must be 1 to 128 printable ASCII characters",
    );
    violations.check(
        Uuid::parse_str(&request.shipping_address_id).is_ok(),
        "shipping_address_id",
        "must be an address id (UUID)",
    );
    let method = request
        .payment_method
        .as_ref()
        .and_then(|m| m.method.as_ref());
    let method_ok = match method {
        Some(Method::CardToken(token)) => !token.is_empty(),
        Some(Method::TestCardNumber(number)) => !number.is_empty(),
        None => false,
    };
    violations.check(
        method_ok,
        "payment_method",
        "must be a card_token or a test_card_number",
    );
    violations.into_result()
}

fn check_sku(violations: &mut FieldViolations, sku: &str) {
    violations.check(
        !sku.is_empty() && sku.len() <= MAX_SKU_LEN && !sku.chars().any(char::is_whitespace),
        "sku",
        "must be a SKU: 1 to 64 characters without spaces",
    );
}

#[tonic::async_trait]
impl CartService for CartApi {
    #[tracing::instrument(skip_all)]
    async fn create_cart(
        &self,
        _request: Request<CreateCartRequest>,
    ) -> Result<Response<CreateCartResponse>, Status> {
        let record = self.carts.create().await?;
        metrics::operation("create", true);
        tracing::debug!(cart_id = %record.id, "cart created");
        Ok(Response::new(CreateCartResponse {
            cart: Some(cart_view(&record, &Snapshot::default())),
        }))
    }

    #[tracing::instrument(skip_all, fields(cart_id = %request.get_ref().cart_id))]
    async fn get_cart(
        &self,
        request: Request<GetCartRequest>,
    ) -> Result<Response<GetCartResponse>, Status> {
        let cart = cart_ref(&request, &request.get_ref().cart_id)?;
        let record = self.carts.read(&cart).await?;
        let cart = self.shown_now(&record, Snapshot::default()).await?;
        Ok(Response::new(GetCartResponse { cart: Some(cart) }))
    }

    #[tracing::instrument(skip_all, fields(cart_id = %request.get_ref().cart_id, product_id = %request.get_ref().product_id))]
    async fn add_cart_item(
        &self,
        request: Request<AddCartItemRequest>,
    ) -> Result<Response<AddCartItemResponse>, Status> {
        let cart = cart_ref(&request, &request.get_ref().cart_id)?;
        let AddCartItemRequest {
            product_id,
            quantity,
            ..
        } = request.into_inner();
        let mut violations = FieldViolations::new();
        let product_uuid = Uuid::parse_str(&product_id);
        violations.check(
            product_uuid.is_ok(),
            "product_id",
            "must be a product id (UUID)",
        );
        violations.check(
            (1..=MAX_QUANTITY).contains(&quantity),
            "quantity",
            "must be 1 to 99",
        );
        violations.into_result()?;
        // The canonical form, as the catalog answers with it.
        let product_id = product_uuid.map(|id| id.to_string()).unwrap_or(product_id);

        let record = self.carts.read(&cart).await?;
        let mut snapshot = Snapshot::default();
        let product_ids = record.product_ids().chain([product_id.as_str()]);
        self.catalog
            .fill(&mut snapshot, product_ids, record.skus())
            .await?;
        let product = snapshot
            .product(&product_id)
            .cloned()
            .ok_or_else(|| CartError::ProductNotFound(product_id.clone()))?;
        // The line's stock is looked up before the write too.
        self.catalog
            .fill(&mut snapshot, [], [product.sku.as_str()])
            .await?;
        let price = product.price.clone().unwrap_or_default();
        let added = AddedLine {
            product_id: product_id.clone(),
            name: product.name.clone(),
            image_url: product.image_urls.first().cloned().unwrap_or_default(),
            add_time_ms: now_ms(),
            price: SeenPrice {
                currency_code: price.currency_code,
                amount_minor: price.amount_minor,
            },
        };
        let changed = self
            .carts
            .add(&cart, &product.sku, quantity, &added)
            .await?;
        metrics::operation("add", changed.changed);
        let cart = self.shown_now(&changed.cart, snapshot).await?;
        Ok(Response::new(AddCartItemResponse { cart: Some(cart) }))
    }

    #[tracing::instrument(skip_all, fields(cart_id = %request.get_ref().cart_id, sku = %request.get_ref().sku))]
    async fn update_cart_item(
        &self,
        request: Request<UpdateCartItemRequest>,
    ) -> Result<Response<UpdateCartItemResponse>, Status> {
        let cart = cart_ref(&request, &request.get_ref().cart_id)?;
        let UpdateCartItemRequest { sku, quantity, .. } = request.into_inner();
        let mut violations = FieldViolations::new();
        check_sku(&mut violations, &sku);
        violations.check(
            (0..=MAX_QUANTITY).contains(&quantity),
            "quantity",
            "must be 0 to 99 (0 removes the line)",
        );
        violations.into_result()?;

        let snapshot = self.before_change(&cart).await?;
        let changed = self.carts.update(&cart, &sku, quantity).await?;
        metrics::operation("update", changed.changed);
        let cart = self.shown_now(&changed.cart, snapshot).await?;
        Ok(Response::new(UpdateCartItemResponse { cart: Some(cart) }))
    }

    #[tracing::instrument(skip_all, fields(cart_id = %request.get_ref().cart_id, sku = %request.get_ref().sku))]
    async fn remove_cart_item(
        &self,
        request: Request<RemoveCartItemRequest>,
    ) -> Result<Response<RemoveCartItemResponse>, Status> {
        let cart = cart_ref(&request, &request.get_ref().cart_id)?;
        let sku = request.into_inner().sku;
        let mut violations = FieldViolations::new();
        check_sku(&mut violations, &sku);
        violations.into_result()?;

        let snapshot = self.before_change(&cart).await?;
        let changed = self.carts.remove(&cart, &sku).await?;
        metrics::operation("remove", changed.changed);
        let cart = self.shown_now(&changed.cart, snapshot).await?;
        Ok(Response::new(RemoveCartItemResponse { cart: Some(cart) }))
    }

    #[tracing::instrument(skip_all, fields(cart_id = %request.get_ref().cart_id))]
    async fn clear_cart(
        &self,
        request: Request<ClearCartRequest>,
    ) -> Result<Response<ClearCartResponse>, Status> {
        let cart = cart_ref(&request, &request.get_ref().cart_id)?;
        // An emptied cart needs no lookups (unless a line was added meanwhile).
        let changed = self.carts.clear(&cart).await?;
        metrics::operation("clear", changed.changed);
        let cart = self.shown_now(&changed.cart, Snapshot::default()).await?;
        Ok(Response::new(ClearCartResponse { cart: Some(cart) }))
    }

    #[tracing::instrument(skip_all, fields(anonymous_cart_id = %request.get_ref().anonymous_cart_id))]
    async fn merge_carts(
        &self,
        request: Request<MergeCartsRequest>,
    ) -> Result<Response<MergeCartsResponse>, Status> {
        let user = Caller::of(&request)?.user_id;
        let anonymous = Uuid::parse_str(&request.get_ref().anonymous_cart_id).map_err(|_| {
            invalid_field("anonymous_cart_id", "must be an anonymous cart id (UUID)")
        })?;

        let mine = CartRef::User(user);
        let mut snapshot = self.before_change(&mine).await?;
        match self.carts.read(&CartRef::Anonymous(anonymous)).await {
            Ok(incoming) => self.catalog.fill_for(&mut snapshot, &incoming).await?,
            // Already merged or expired: the merge leaves the user's cart as it is.
            Err(CartError::CartNotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
        let changed = self.carts.merge(user, anonymous).await?;
        metrics::operation("merge", changed.changed);
        tracing::info!(
            user_id = %user,
            merged = changed.changed,
            "anonymous cart merged into the user's cart"
        );
        let cart = self.shown_now(&changed.cart, snapshot).await?;
        Ok(Response::new(MergeCartsResponse { cart: Some(cart) }))
    }

    // The payment method may hold a test card number: never in a span or log.
    #[tracing::instrument(skip_all, fields(idempotency_key = %request.get_ref().idempotency_key))]
    async fn checkout(
        &self,
        request: Request<CheckoutRequest>,
    ) -> Result<Response<CheckoutResponse>, Status> {
        let user = Caller::of(&request)?.user_id;
        let request = request.into_inner();
        check_checkout(&request)?;
        let CheckoutRequest {
            idempotency_key: key,
            shipping_address_id,
            payment_method,
        } = request;
        // Canonical, as the address book stores it.
        let shipping_address_id = Uuid::parse_str(&shipping_address_id)
            .map(|id| id.to_string())
            .unwrap_or(shipping_address_id);

        let attempt = match self.carts.checkout_attempt(user, &key).await? {
            Some(attempt) => attempt,
            None => self.first_attempt(user, &key, &shipping_address_id).await?,
        };
        if attempt.shipping_address_id != shipping_address_id {
            return Err(CartError::KeyReused(key).into());
        }
        let order = self
            .ordering
            .create_order(&attempt, payment_method.unwrap_or_default())
            .await?;
        let mut emptied = false;
        if was_confirmed(&order) {
            match self
                .carts
                .checked_out(user, &key, &order.id, &attempt.order.lines)
                .await
            {
                Ok(changed) => emptied = changed.changed,
                // The order stands either way; a retry with the key empties the cart.
                Err(err) => tracing::warn!(
                    order_id = %order.id,
                    error = %err,
                    "confirmed order not yet taken out of the cart"
                ),
            }
        }
        metrics::operation("checkout", emptied);
        tracing::info!(
            user_id = %user,
            order_id = %order.id,
            status = ?order.status(),
            cart_emptied = emptied,
            "checkout answered"
        );
        Ok(Response::new(CheckoutResponse { order: Some(order) }))
    }
}
