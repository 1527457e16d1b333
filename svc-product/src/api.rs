//! The ProductService gRPC API: proto ↔ catalog.

use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::product_service_server::ProductService;
use shopmesh_proto::shop::product::v1::{
    BatchGetProductsRequest, BatchGetProductsResponse, Category, GetProductRequest,
    GetProductResponse, ListCategoriesRequest, ListCategoriesResponse, ListProductsRequest,
    ListProductsResponse, Product,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::catalog::{CategoryNode, ListQuery, MAX_BATCH, build_tree};
use crate::store::{ProductRecord, Store, cursor_after};

pub struct ProductApi {
    store: Store,
}

impl ProductApi {
    pub fn new(store: Store) -> Self {
        Self { store }
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

#[tonic::async_trait]
impl ProductService for ProductApi {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        let product = self
            .store
            .product(id)
            .await
            .map_err(errors::internal)?
            .ok_or_else(|| errors::not_found("product", &request.get_ref().id))?;
        Ok(Response::new(GetProductResponse {
            product: Some(product.into()),
        }))
    }

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

        let found: std::collections::HashMap<Uuid, ProductRecord> = self
            .store
            .products(&ids)
            .await
            .map_err(errors::internal)?
            .into_iter()
            .map(|p| (p.id, p))
            .collect();
        let mut response = BatchGetProductsResponse::default();
        for (id, raw) in ids.iter().zip(raw_ids) {
            // A repeated id is answered each time it is asked for.
            match found.get(id) {
                Some(product) => response.products.push(product.clone().into()),
                None => response.missing_ids.push(raw.clone()),
            }
        }
        Ok(Response::new(response))
    }

    async fn list_products(
        &self,
        request: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        let query = ListQuery::from_request(request.get_ref())?;
        if let Some(category) = query.category_id
            && !self
                .store
                .category_exists(category)
                .await
                .map_err(errors::internal)?
        {
            return Err(errors::invalid_field("category_id", "no such category"));
        }
        let mut page = self.store.list(&query).await.map_err(errors::internal)?;
        let next_page_token = if page.len() > query.page_size as usize {
            page.truncate(query.page_size as usize);
            page.last()
                .map(|last| {
                    shopmesh_platform::paging::encode(
                        &query.fingerprint(),
                        &cursor_after(last, query.order),
                    )
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListProductsResponse {
            products: page.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn list_categories(
        &self,
        _request: Request<ListCategoriesRequest>,
    ) -> Result<Response<ListCategoriesResponse>, Status> {
        let rows = self
            .store
            .category_counts()
            .await
            .map_err(errors::internal)?;
        Ok(Response::new(ListCategoriesResponse {
            categories: build_tree(rows).into_iter().map(Into::into).collect(),
        }))
    }
}
