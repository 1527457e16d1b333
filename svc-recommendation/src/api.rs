//! The RecommendationService gRPC API, served from memory: the current model,
//! the live catalog and the followed stock. The only I/O on a request path is
//! the shopper's purchase history (one indexed query: it must include what
//! they bought since the model was trained) and, for a product id neither the
//! model nor the live catalog knows, one GetProduct to tell a new product
//! (best sellers of its category) from one that does not exist (NOT_FOUND).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use shopmesh_inventory_client::StockView;
use shopmesh_platform::auth::Caller;
use shopmesh_platform::errors::{self, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::recommendation::v1 as pb;
use shopmesh_proto::shop::recommendation::v1::recommendation_service_server::RecommendationService;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::catalog::CatalogClient;
use crate::error::RecommendationError;
use crate::live::{Live, LiveCatalog};
use crate::model::{MAX_LIST, Model, Pick, Reason};
use crate::store::Store;
use crate::trainer::{ModelCell, Trainer, Trigger};

const DEFAULT_PAGE_SIZE: u32 = 10;
const MAX_PAGE_SIZE: u32 = 50;

/// Everything a request reads.
pub struct RecommendationApi {
    pub cell: Arc<ModelCell>,
    pub live: Arc<Live>,
    pub store: Store,
    pub catalog: CatalogClient,
    pub trainer: Trainer,
}

/// Which list a product's page belongs to.
#[derive(Clone, Copy)]
enum List {
    Similar,
    BoughtTogether,
}

impl List {
    fn method(self) -> &'static str {
        match self {
            Self::Similar => "ListSimilarProducts",
            Self::BoughtTogether => "ListFrequentlyBoughtTogether",
        }
    }
}

/// A product a list is asked for, as far as the recommender can tell.
enum Subject {
    /// The model knows it (and it is live).
    Known(u32),
    /// Live, but newer than the model: its category's best sellers.
    New { category: Uuid, root: Uuid },
    /// svc-product cannot be asked: the best sellers overall.
    Unsure,
}

/// One page of a product's list, as both list methods answer it.
struct Page {
    recommendations: Vec<pb::Recommendation>,
    next_page_token: String,
    model_version: String,
}

impl RecommendationApi {
    fn model(&self) -> Option<Arc<Model>> {
        self.cell.current()
    }

    /// Where `id` stands; NOT_FOUND for a product svc-product does not have.
    async fn subject(&self, model: Option<&Model>, id: Uuid) -> Result<Subject, Status> {
        let catalog = self.live.catalog();
        if let Some(live) = catalog.product(id) {
            return Ok(match model.and_then(|m| m.index_of(id)) {
                Some(item) => Subject::Known(item),
                None => Subject::New {
                    category: live.category,
                    root: catalog.root_of(live.category),
                },
            });
        }
        // Deleted, or newer than the last catalog read: only svc-product knows.
        match self.catalog.product(id).await {
            Ok(Some(product)) => Ok(Subject::New {
                category: product.category_id,
                root: catalog.root_of(product.category_id),
            }),
            Ok(None) => Err(RecommendationError::ProductNotFound(id).into()),
            Err(err) => {
                tracing::warn!(error = %err, product_id = %id, "cannot look a product up; serving best sellers");
                Ok(Subject::Unsure)
            }
        }
    }

    /// A product's whole list (before paging) and whether it is the fallback.
    fn product_list(
        &self,
        model: &Model,
        list: List,
        id: Uuid,
        subject: Subject,
    ) -> (Vec<Pick>, bool) {
        let catalog = self.live.catalog();
        let stock = self.live.stock().read();
        let nothing = HashSet::new();
        let allowed = allowed(model, &catalog, &stock, &nothing);
        let (category, root) = match subject {
            Subject::Known(item) => {
                let picks = match list {
                    List::Similar => model.similar_to(item, &allowed),
                    List::BoughtTogether => model.bought_with(item, &allowed),
                };
                if !picks.is_empty() {
                    return (picks, false);
                }
                let product = model.product(item);
                (product.map(|p| p.category), product.map(|p| p.root))
            }
            Subject::New { category, root } => (Some(category), Some(root)),
            Subject::Unsure => (None, None),
        };
        let own = model.index_of(id);
        let not_itself = |i: u32| Some(i) != own && allowed(i);
        (
            model.popular_near(category, root, &not_itself, MAX_LIST),
            true,
        )
    }

    async fn product_page(
        &self,
        list: List,
        product_id: &str,
        page_size: i32,
        page_token: &str,
    ) -> Result<Page, Status> {
        let mut violations = FieldViolations::new();
        let id = if product_id.is_empty() {
            violations.add("product_id", "is required");
            None
        } else {
            let parsed = Uuid::parse_str(product_id).ok();
            violations.check(parsed.is_some(), "product_id", "must be a UUID");
            parsed
        };
        let page_size = paging::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
            .unwrap_or_else(|_| {
                violations.add("page_size", "must not be negative");
                0
            });
        let query = paging::fingerprint(&(list.method(), product_id));
        let offset = match paging::decode::<usize>(&query, page_token) {
            Ok(offset) => offset.unwrap_or(0),
            Err(_) => {
                violations.add("page_token", "is not a page token issued for this query");
                0
            }
        };
        violations.into_result()?;
        let Some(id) = id else {
            return Err(errors::invalid_field("product_id", "must be a UUID"));
        };
        let model = self.model();
        let subject = self.subject(model.as_deref(), id).await?;
        let Some(model) = model else {
            served(list.method(), None, true);
            return Ok(Page {
                recommendations: Vec::new(),
                next_page_token: String::new(),
                model_version: String::new(),
            });
        };
        let (mut all, fallback) = self.product_list(&model, list, id, subject);
        all.truncate(MAX_LIST);
        let end = offset.saturating_add(page_size as usize).min(all.len());
        let picks = all
            .get(offset..end)
            .map(<[Pick]>::to_vec)
            .unwrap_or_default();
        let next_page_token = if end < all.len() {
            paging::encode(&query, &end)
        } else {
            String::new()
        };
        served(list.method(), Some(&model), fallback);
        Ok(Page {
            recommendations: recommendations(&model, &picks),
            next_page_token,
            model_version: version_of(Some(&model), fallback),
        })
    }
}

/// What may be recommended: live, in stock, and not in `bought`.
fn allowed<'a>(
    model: &'a Model,
    catalog: &'a LiveCatalog,
    stock: &'a StockView<'a>,
    bought: &'a HashSet<Uuid>,
) -> impl Fn(u32) -> bool + 'a {
    move |item| {
        model.product(item).is_some_and(|p| {
            !bought.contains(&p.id)
                && catalog
                    .product(p.id)
                    .is_some_and(|live| stock.available(&live.sku) > 0)
        })
    }
}

fn recommendations(model: &Model, picks: &[Pick]) -> Vec<pb::Recommendation> {
    picks
        .iter()
        .filter_map(|pick| {
            let product = model.product(pick.item)?;
            let based_on = pick
                .based_on
                .and_then(|b| model.product(b))
                .map(|p| p.id.to_string())
                .unwrap_or_default();
            Some(pb::Recommendation {
                product_id: product.id.to_string(),
                score: f64::from(pick.score),
                reason: reason(pick.reason) as i32,
                based_on_product_id: based_on,
            })
        })
        .collect()
}

fn reason(reason: Reason) -> pb::RecommendationReason {
    match reason {
        Reason::AlsoBought => pb::RecommendationReason::AlsoBought,
        Reason::BoughtTogether => pb::RecommendationReason::BoughtTogether,
        Reason::Similar => pb::RecommendationReason::Similar,
        Reason::Popular => pb::RecommendationReason::Popular,
    }
}

/// The model's version, empty when the answer is the popularity fallback.
fn version_of(model: Option<&Model>, fallback: bool) -> String {
    match model {
        Some(model) if !fallback => model.info.version.clone(),
        _ => String::new(),
    }
}

fn served(method: &'static str, model: Option<&Model>, fallback: bool) {
    let source = match (model, fallback) {
        (None, _) => "none",
        (Some(_), true) => "fallback",
        (Some(_), false) => "model",
    };
    metrics::counter!("recommendations_served_total", "method" => method, "source" => source)
        .increment(1);
}

pub fn model_info(model: &Model) -> pb::ModelInfo {
    let info = &model.info;
    pb::ModelInfo {
        version: info.version.clone(),
        train_time: Some(prost_types::Timestamp::from(SystemTime::from(
            info.trained_at,
        ))),
        training_duration: prost_types::Duration::try_from(info.duration).ok(),
        order_count: info.orders,
        user_count: info.users,
        product_count: info.products,
        interaction_count: info.interactions,
    }
}

#[tonic::async_trait]
impl RecommendationService for RecommendationApi {
    #[tracing::instrument(skip_all)]
    async fn recommend_for_me(
        &self,
        request: Request<pb::RecommendForMeRequest>,
    ) -> Result<Response<pb::RecommendForMeResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let limit = paging::page_size(
            request.get_ref().page_size,
            DEFAULT_PAGE_SIZE,
            MAX_PAGE_SIZE,
        )?;
        let Some(model) = self.model() else {
            served("RecommendForMe", None, true);
            return Ok(Response::new(pb::RecommendForMeResponse::default()));
        };
        let history = self.store.history(user_id).await?;
        let bought: HashSet<Uuid> = history.iter().map(|b| b.product_id).collect();
        // What counts for the shopper's taste: known, not refunded, oldest first.
        let taste: Vec<u32> = history
            .iter()
            .filter(|b| !b.refunded)
            .filter_map(|b| model.index_of(b.product_id))
            .collect();
        let catalog = self.live.catalog();
        let picks = {
            let stock = self.live.stock().read();
            let allowed = allowed(&model, &catalog, &stock, &bought);
            model.for_shopper(&taste, &allowed, limit as usize)
        };
        let fallback = taste.is_empty();
        served("RecommendForMe", Some(&model), fallback);
        Ok(Response::new(pb::RecommendForMeResponse {
            recommendations: recommendations(&model, &picks),
            model_version: version_of(Some(&model), fallback),
        }))
    }

    #[tracing::instrument(skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn list_similar_products(
        &self,
        request: Request<pb::ListSimilarProductsRequest>,
    ) -> Result<Response<pb::ListSimilarProductsResponse>, Status> {
        let r = request.get_ref();
        let page = self
            .product_page(List::Similar, &r.product_id, r.page_size, &r.page_token)
            .await?;
        Ok(Response::new(pb::ListSimilarProductsResponse {
            recommendations: page.recommendations,
            next_page_token: page.next_page_token,
            model_version: page.model_version,
        }))
    }

    #[tracing::instrument(skip_all, fields(product_id = %request.get_ref().product_id))]
    async fn list_frequently_bought_together(
        &self,
        request: Request<pb::ListFrequentlyBoughtTogetherRequest>,
    ) -> Result<Response<pb::ListFrequentlyBoughtTogetherResponse>, Status> {
        let r = request.get_ref();
        let page = self
            .product_page(
                List::BoughtTogether,
                &r.product_id,
                r.page_size,
                &r.page_token,
            )
            .await?;
        Ok(Response::new(pb::ListFrequentlyBoughtTogetherResponse {
            recommendations: page.recommendations,
            next_page_token: page.next_page_token,
            model_version: page.model_version,
        }))
    }

    async fn get_model_info(
        &self,
        _request: Request<pb::GetModelInfoRequest>,
    ) -> Result<Response<pb::GetModelInfoResponse>, Status> {
        let model = self.model().ok_or(RecommendationError::NoModel)?;
        Ok(Response::new(pb::GetModelInfoResponse {
            model: Some(model_info(&model)),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn train_model(
        &self,
        _request: Request<pb::TrainModelRequest>,
    ) -> Result<Response<pb::TrainModelResponse>, Status> {
        let model = self.trainer.train(Trigger::Command).await?;
        Ok(Response::new(pb::TrainModelResponse {
            model: Some(model_info(&model)),
        }))
    }
}
