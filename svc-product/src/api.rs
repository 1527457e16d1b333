//! The ProductService gRPC API: proto ↔ catalog, with the cache in front of
//! PostgreSQL for reads and invalidation after every admin write.

use std::collections::HashMap;

use prost::Message;
use shopmesh_platform::auth::Caller;
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::product_service_server::ProductService;
use shopmesh_proto::shop::product::v1::{
    AttributeFacet, BatchGetProductsRequest, BatchGetProductsResponse, Category, CategoryFacet,
    CreateProductRequest, CreateProductResponse, DeleteProductRequest, DeleteProductResponse,
    FacetValue, GetProductRequest, GetProductResponse, ListCategoriesRequest,
    ListCategoriesResponse, ListProductsRequest, ListProductsResponse, PriceBucket, Product,
    SearchProductsRequest, SearchProductsResponse, UpdateProductRequest, UpdateProductResponse,
    WatchCatalogRequest, WatchCatalogResponse,
};
use tonic::codegen::BoxStream;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::availability::Availability;
use crate::cache::{Cached, ProductCache};
use crate::catalog::{CategoryNode, ListQuery, MAX_BATCH, SortOrder, build_tree};
use crate::changes::CatalogChanges;
use crate::error::CatalogError;
use crate::product::{ProductRules, update_fields};
use crate::search::{Facets, SearchQuery};
use crate::stock::StockWatch;
use crate::store::{Deletion, PageRow, ProductRecord, Store, cursor_after};

/// How often an update re-reads and retries when another write got in between.
const UPDATE_ATTEMPTS: usize = 3;

pub struct ProductApi {
    store: Store,
    cache: ProductCache,
    rules: ProductRules,
    stock: StockWatch,
    availability: Availability,
    changes: CatalogChanges,
}

impl ProductApi {
    pub fn new(
        store: Store,
        cache: ProductCache,
        rules: ProductRules,
        stock: StockWatch,
        availability: Availability,
        changes: CatalogChanges,
    ) -> Self {
        Self {
            store,
            cache,
            rules,
            stock,
            availability,
            changes,
        }
    }

    /// INVALID_ARGUMENT naming `category_id` when a filter names no category.
    async fn require_category(&self, category: Option<Uuid>) -> Result<(), Status> {
        let Some(category) = category else {
            return Ok(());
        };
        if self
            .store
            .category_exists(category)
            .await
            .map_err(CatalogError::from)?
        {
            Ok(())
        } else {
            Err(errors::invalid_field("category_id", "no such category"))
        }
    }

    /// Live products by id from the cache, then PostgreSQL for the rest (which
    /// are cached for next time). Deleted and unknown ids are absent.
    async fn load_products(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Product>, Status> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missed = Vec::new();
        let (cached, ticket) = self.cache.products(ids).await;
        for (id, cached) in ids.iter().zip(cached) {
            match cached {
                Cached::Product(product) => {
                    found.insert(*id, *product);
                }
                Cached::Deleted => {}
                Cached::Miss => missed.push(*id),
            }
        }
        if missed.is_empty() {
            return Ok(found);
        }
        missed.sort_unstable();
        missed.dedup();
        let records = self
            .store
            .products(&missed)
            .await
            .map_err(CatalogError::from)?;
        let loaded: Vec<(i64, Product)> = records
            .into_iter()
            .map(|record| (record.version, Product::from(record)))
            .collect();
        self.cache.fill(ticket, &loaded).await;
        for (_, product) in loaded {
            if let Ok(id) = Uuid::parse_str(&product.id) {
                found.insert(id, product);
            }
        }
        Ok(found)
    }
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
    }
}

impl From<ProductRecord> for Product {
    fn from(record: ProductRecord) -> Self {
        Self {
            id: record.id.to_string(),
            sku: record.sku,
            name: record.name,
            description: record.description,
            category_id: record.category_id.to_string(),
            price: Some(Money {
                currency_code: record.currency_code,
                amount_minor: record.price_minor,
            }),
            attributes: record.attributes.0.into_iter().collect(),
            image_urls: record.image_urls,
            create_time: Some(timestamp(record.created_at)),
            update_time: Some(timestamp(record.updated_at)),
            // Filled as the product leaves (see `Availability`), never cached.
            available_quantity: 0,
        }
    }
}

impl From<CategoryNode> for Category {
    fn from(node: CategoryNode) -> Self {
        Self {
            id: node.id.to_string(),
            slug: node.slug,
            name: node.name,
            parent_id: node.parent_id.map(|p| p.to_string()).unwrap_or_default(),
            product_count: node.product_count,
            children: node.children.into_iter().map(Into::into).collect(),
        }
    }
}

/// The products of a page and the token of the next one (empty on the last).
fn finish_page(
    mut rows: Vec<PageRow>,
    page_size: u32,
    order: SortOrder,
    fingerprint: &str,
) -> (Vec<Product>, String) {
    let next_page_token = if rows.len() > page_size as usize {
        rows.truncate(page_size as usize);
        rows.last()
            .map(|last| paging::encode(fingerprint, &cursor_after(last, order)))
            .unwrap_or_default()
    } else {
        String::new()
    };
    let products = rows.into_iter().map(|row| row.product.into()).collect();
    (products, next_page_token)
}

fn facets_into(response: &mut SearchProductsResponse, facets: Facets) {
    response.total_size = facets.total;
    response.category_facets = facets
        .categories
        .into_iter()
        .map(|(id, name, count)| CategoryFacet {
            category_id: id.to_string(),
            name,
            count,
        })
        .collect();
    response.attribute_facets = facets
        .attributes
        .into_iter()
        .map(|(key, values)| AttributeFacet {
            key,
            values: values
                .into_iter()
                .map(|(value, count)| FacetValue { value, count })
                .collect(),
        })
        .collect();
    response.price_buckets = facets
        .price_buckets
        .into_iter()
        .map(|b| PriceBucket {
            min_minor: b.min_minor,
            max_minor: b.max_minor,
            count: b.count,
        })
        .collect();
}

#[tonic::async_trait]
impl ProductService for ProductApi {
    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        let mut product = self
            .load_products(&[id])
            .await?
            .remove(&id)
            .ok_or(CatalogError::ProductNotFound(id))?;
        self.availability.fill([&mut product]);
        Ok(Response::new(GetProductResponse {
            product: Some(product),
        }))
    }

    #[tracing::instrument(skip_all, fields(count = request.get_ref().ids.len()))]
    async fn batch_get_products(
        &self,
        request: Request<BatchGetProductsRequest>,
    ) -> Result<Response<BatchGetProductsResponse>, Status> {
        let raw_ids = &request.get_ref().ids;
        let mut violations = FieldViolations::new();
        violations.check(!raw_ids.is_empty(), "ids", "must name at least one product");
        violations.check(
            raw_ids.len() <= MAX_BATCH,
            "ids",
            "must name at most 100 products",
        );
        let mut ids = Vec::with_capacity(raw_ids.len());
        for (index, raw) in raw_ids.iter().enumerate() {
            match Uuid::parse_str(raw) {
                Ok(id) => ids.push(id),
                Err(_) => violations.add(format!("ids[{index}]"), "must be a product id (UUID)"),
            }
        }
        violations.into_result()?;

        let found = self.load_products(&ids).await?;
        let mut response = BatchGetProductsResponse::default();
        for (id, raw) in ids.iter().zip(raw_ids) {
            // A repeated id is answered each time it is asked for.
            match found.get(id) {
                Some(product) => response.products.push(product.clone()),
                None => response.missing_ids.push(raw.clone()),
            }
        }
        self.availability.fill(&mut response.products);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let query = ListQuery::from_request(request.get_ref())?;
        let fingerprint = query.fingerprint();
        // Only first pages are hot enough to cache.
        let slot = match query.after {
            None => {
                let key = paging::fingerprint(&(&fingerprint, query.page_size));
                self.cache.listing("list", &key, false).await
            }
            Some(_) => None,
        };
        if let Some((_, Some(page))) = &slot
            && let Ok(mut response) = ListProductsResponse::decode(page.as_ref())
        {
            self.availability.fill(&mut response.products);
            return Ok(Response::new(response));
        }
        self.require_category(query.category_id).await?;
        let rows = self.store.list(&query).await.map_err(CatalogError::from)?;
        let (products, next_page_token) =
            finish_page(rows, query.page_size, query.order, &fingerprint);
        let mut response = ListProductsResponse {
            products,
            next_page_token,
        };
        if let Some((slot, None)) = slot {
            self.cache
                .store_listing(&slot, response.encode_to_vec())
                .await;
        }
        self.availability.fill(&mut response.products);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(query = %request.get_ref().query))]
    async fn search_products(
        &self,
        request: Request<SearchProductsRequest>,
    ) -> Result<Response<SearchProductsResponse>, Status> {
        let query = SearchQuery::from_request(request.get_ref())?;
        let fingerprint = query.fingerprint();
        let stock_sensitive = query.filters.in_stock_only;
        // First pages are cached whole. Later pages share the facets of their
        // query (the fingerprint leaves out the page), so paging deep through a
        // large result set does not count the whole set again for every page.
        let (slot, facets_slot) = match query.after {
            None => {
                let key = paging::fingerprint(&(&fingerprint, query.page_size));
                let slot = self.cache.listing("search", &key, stock_sensitive).await;
                (slot, None)
            }
            Some(_) => {
                let slot = self
                    .cache
                    .listing("facets", &fingerprint, stock_sensitive)
                    .await;
                (None, slot)
            }
        };
        if let Some((_, Some(page))) = &slot
            && let Ok(mut response) = SearchProductsResponse::decode(page.as_ref())
        {
            self.availability.fill(&mut response.products);
            return Ok(Response::new(response));
        }
        let cached_facets = match &facets_slot {
            Some((_, Some(facets))) => SearchProductsResponse::decode(facets.as_ref()).ok(),
            _ => None,
        };
        if cached_facets.is_none() {
            // (A cached result proves the category existed; none is ever removed.)
            self.require_category(query.filters.category_id).await?;
        }
        let (rows, facets) = self
            .store
            .search(&query, cached_facets.is_none())
            .await
            .map_err(CatalogError::from)?;
        let (products, next_page_token) =
            finish_page(rows, query.page_size, query.order, &fingerprint);
        let mut response = cached_facets.unwrap_or_default();
        if let Some(facets) = facets {
            facets_into(&mut response, facets);
            if let Some((slot, None)) = &facets_slot {
                self.cache
                    .store_listing(slot, response.encode_to_vec())
                    .await;
            }
        }
        response.products = products;
        response.next_page_token = next_page_token;
        if let Some((slot, None)) = slot {
            self.cache
                .store_listing(&slot, response.encode_to_vec())
                .await;
        }
        self.availability.fill(&mut response.products);
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn list_categories(
        &self,
        _request: Request<ListCategoriesRequest>,
    ) -> Result<Response<ListCategoriesResponse>, Status> {
        // The counts change only with admin writes, which drop cached listings.
        let slot = self.cache.listing("categories", "tree", false).await;
        if let Some((_, Some(tree))) = &slot
            && let Ok(response) = ListCategoriesResponse::decode(tree.as_ref())
        {
            return Ok(Response::new(response));
        }
        let rows = self
            .store
            .category_counts()
            .await
            .map_err(CatalogError::from)?;
        let response = ListCategoriesResponse {
            categories: build_tree(rows).into_iter().map(Into::into).collect(),
        };
        if let Some((slot, None)) = slot {
            self.cache
                .store_listing(&slot, response.encode_to_vec())
                .await;
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn create_product(
        &self,
        request: Request<CreateProductRequest>,
    ) -> Result<Response<CreateProductResponse>, Status> {
        let admin = Caller::of(&request)?.user_id;
        let draft = self.rules.new_product(request.get_ref().product.as_ref())?;
        let record = self.store.create(Uuid::now_v7(), &draft).await?;
        let (id, version) = (record.id, record.version);
        let mut product = Product::from(record);
        self.cache
            .after_write(id, version, Some(product.clone()))
            .await;
        self.stock.resync();
        self.availability.fill([&mut product]);
        tracing::info!(%admin, product = %id, sku = %product.sku, "product created");
        Ok(Response::new(CreateProductResponse {
            product: Some(product),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_product(
        &self,
        request: Request<UpdateProductRequest>,
    ) -> Result<Response<UpdateProductResponse>, Status> {
        let admin = Caller::of(&request)?.user_id;
        let UpdateProductRequest {
            product,
            update_mask,
        } = request.get_ref();
        let Some(incoming) = product else {
            return Err(errors::invalid_field("product", "is required"));
        };
        let id = errors::parse_uuid("product.id", &incoming.id)?;
        let fields = update_fields(update_mask.as_ref())?;
        for _ in 0..UPDATE_ATTEMPTS {
            let current = self
                .store
                .product(id)
                .await
                .map_err(CatalogError::from)?
                .ok_or(CatalogError::ProductNotFound(id))?;
            let draft = self.rules.merge(current.draft(), incoming, &fields)?;
            if draft == current.draft() {
                // Nothing changes: no new version, nothing to invalidate.
                let mut product = Product::from(current);
                self.availability.fill([&mut product]);
                return Ok(Response::new(UpdateProductResponse {
                    product: Some(product),
                }));
            }
            let Some(updated) = self.store.update(id, current.version, &draft).await? else {
                // Written (or deleted) by someone else since the read: read again.
                continue;
            };
            let version = updated.version;
            let sku_changed = updated.sku != current.sku;
            let mut product = Product::from(updated);
            self.cache
                .after_write(id, version, Some(product.clone()))
                .await;
            if sku_changed {
                self.stock.resync();
            }
            self.availability.fill([&mut product]);
            let fields: Vec<&str> = fields.iter().map(|f| f.path()).collect();
            tracing::info!(%admin, product = %id, version, ?fields, "product updated");
            return Ok(Response::new(UpdateProductResponse {
                product: Some(product),
            }));
        }
        Err(CatalogError::Contended(id).into())
    }

    #[tracing::instrument(skip_all, fields(id = %request.get_ref().id))]
    async fn delete_product(
        &self,
        request: Request<DeleteProductRequest>,
    ) -> Result<Response<DeleteProductResponse>, Status> {
        let admin = Caller::of(&request)?.user_id;
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        match self.store.delete(id).await? {
            Deletion::Deleted { version } => {
                self.cache.after_write(id, version, None).await;
                self.stock.resync();
                tracing::info!(%admin, product = %id, "product deleted");
            }
            Deletion::AlreadyDeleted => {}
        }
        Ok(Response::new(DeleteProductResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn watch_catalog(
        &self,
        _request: Request<WatchCatalogRequest>,
    ) -> Result<Response<BoxStream<WatchCatalogResponse>>, Status> {
        Ok(Response::new(self.changes.watch()))
    }
}
