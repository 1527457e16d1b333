//! The REST scenarios. Each arrival is one user action, one request, drawn
//! from a table of requests prepared at setup (real ids, URIs and bodies built
//! once, cloned per request): `rest:product`, `browse`, `search`, `cart`. The
//! checkout journey (`shopper`) is the exception, a sequence of requests
//! ([`checkout`]); `mix` draws from the others by weight ([`mix`]).

pub mod checkout;
pub mod mix;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::{Method, Uri};

use crate::catalog::{Catalog, search_words};
use crate::engine::{ArrivalFuture, Choice, Workload};
use crate::rest::{RestClient, path_uri, query};
use crate::rng::{Rng, Weighted};
use crate::shoppers::Shoppers;
use crate::stats::{Done, Kind, KindId, Sample};

/// One prepared request.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub method: Method,
    pub uri: Uri,
    pub body: Option<Bytes>,
}

impl Prepared {
    fn get(path: &str) -> anyhow::Result<Self> {
        Ok(Self {
            method: Method::GET,
            uri: path_uri(path)?,
            body: None,
        })
    }
}

/// Kinds of single requests, each with a weight and its prepared requests.
pub struct RequestTable {
    rest: Arc<RestClient>,
    kinds: Vec<Kind>,
    weights: Weighted,
    requests: Vec<Vec<Prepared>>,
    /// Sent as one of the pool's cart shoppers (a bearer token), or anonymously.
    shoppers: Option<Arc<Shoppers>>,
}

impl RequestTable {
    fn new(
        rest: Arc<RestClient>,
        table: Vec<(&str, u32, Vec<Prepared>)>,
        shoppers: Option<Arc<Shoppers>>,
    ) -> anyhow::Result<Self> {
        // A kind with nothing prepared (a shop without categories) is never drawn.
        let weights: Vec<u32> = table
            .iter()
            .map(|(_, w, r)| if r.is_empty() { 0 } else { *w })
            .collect();
        let weights = Weighted::new(&weights)
            .ok_or_else(|| anyhow::anyhow!("no request could be prepared from the catalog"))?;
        let (kinds, requests) = table
            .into_iter()
            .map(|(name, _, requests)| (Kind::request(name), requests))
            .unzip();
        Ok(Self {
            rest,
            kinds,
            weights,
            requests,
            shoppers,
        })
    }
}

impl Workload for RequestTable {
    fn kinds(&self) -> Vec<Kind> {
        self.kinds.clone()
    }

    fn choose(&self, rng: &mut Rng) -> Choice {
        let kind = self.weights.draw(rng);
        let prepared = self.requests.get(kind).map_or(0, Vec::len);
        Choice {
            kind: kind as KindId,
            action: rng.below(prepared) as u32,
        }
    }

    fn start(
        &self,
        choice: Choice,
        rng: &mut Rng,
        intended: Instant,
        base: KindId,
    ) -> ArrivalFuture {
        let rest = Arc::clone(&self.rest);
        let prepared = self
            .requests
            .get(usize::from(choice.kind))
            .and_then(|r| r.get(choice.action as usize))
            .cloned();
        let auth = self
            .shoppers
            .as_ref()
            .and_then(|s| s.cart_user(rng))
            .map(|s| s.auth());
        let kind = base + choice.kind;
        Box::pin(async move {
            let outcome = match prepared {
                Some(p) => rest
                    .call(p.method, p.uri, auth, p.body, false)
                    .await
                    .map(drop),
                None => Err(crate::stats::Failure::BadResponse),
            };
            Done::One(Sample {
                kind,
                intended,
                finished: Instant::now(),
                outcome,
            })
        })
    }
}

/// `rest:product`: `GET /v1/products/{id}` over the catalog.
pub fn product_page(rest: Arc<RestClient>, catalog: &Catalog) -> anyhow::Result<RequestTable> {
    let pages = product_paths(catalog, "")?;
    RequestTable::new(rest, vec![("product", 1, pages)], None)
}

fn product_paths(catalog: &Catalog, suffix: &str) -> anyhow::Result<Vec<Prepared>> {
    catalog
        .products
        .iter()
        .map(|p| Prepared::get(&format!("/v1/products/{}{suffix}", p.id)))
        .collect()
}

/// `browse`: what a visitor clicks through. Product pages dominate, as in any
/// shop; category pages next; the first list pages; the two recommendation
/// rails under a product.
pub fn browse(rest: Arc<RestClient>, catalog: &Catalog) -> anyhow::Result<RequestTable> {
    let mut list = vec![Prepared::get("/v1/products?page_size=20")?];
    for token in catalog.page_tokens.iter().take(5) {
        list.push(Prepared::get(&format!(
            "/v1/products?{}",
            query(&[("page_size", "20"), ("page_token", token)])
        ))?);
    }
    for order in ["PRODUCT_ORDER_PRICE_ASC", "PRODUCT_ORDER_PRICE_DESC"] {
        list.push(Prepared::get(&format!(
            "/v1/products?page_size=20&order_by={order}"
        ))?);
    }
    let mut category = Vec::new();
    for (i, id) in catalog.categories.iter().enumerate() {
        category.push(Prepared::get(&format!(
            "/v1/products?{}",
            query(&[("category_id", id), ("page_size", "20")])
        ))?);
        let filtered = match i % 3 {
            0 => query(&[
                ("category_id", id),
                ("page_size", "20"),
                ("order_by", "PRODUCT_ORDER_PRICE_ASC"),
            ]),
            1 => query(&[
                ("category_id", id),
                ("page_size", "20"),
                ("max_price_minor", "5000"),
            ]),
            _ => query(&[
                ("category_id", id),
                ("page_size", "20"),
                ("min_price_minor", "2000"),
                ("order_by", "PRODUCT_ORDER_PRICE_DESC"),
            ]),
        };
        category.push(Prepared::get(&format!("/v1/products?{filtered}"))?);
    }
    RequestTable::new(
        rest,
        vec![
            ("list", 10, list),
            ("category", 25, category),
            ("product", 45, product_paths(catalog, "")?),
            (
                "similar",
                10,
                product_paths(catalog, "/similar?page_size=8")?,
            ),
            (
                "bought_together",
                10,
                product_paths(catalog, "/bought-together?page_size=8")?,
            ),
        ],
        None,
    )
}

/// `search`: free text from product names, seven in ten with a typo; and
/// narrowed searches with facets (attribute values, category, price bucket,
/// in stock only, price order), some with an empty query (a facet browse,
/// the most expensive kind: it counts facets over the whole catalog).
pub fn search(rest: Arc<RestClient>, catalog: &Catalog, seed: u64) -> anyhow::Result<RequestTable> {
    let mut rng = Rng::new(seed);
    let words = search_words(catalog, &mut rng, 300);
    let text = words
        .iter()
        .map(|w| {
            Prepared::get(&format!(
                "/v1/products:search?{}",
                query(&[("query", w), ("page_size", "20")])
            ))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut facet = Vec::new();
    for (i, word) in words.iter().take(150).enumerate() {
        let mut params: Vec<(&str, String)> = vec![("page_size", "20".to_owned())];
        if i % 4 != 0 {
            params.push(("query", word.clone()));
        }
        if let Some((key, values)) = rng.pick(&catalog.facets) {
            let value = rng.pick(values).cloned().unwrap_or_default();
            params.push(("attributes", format!("{key}={value}")));
        }
        if i % 3 == 0
            && let Some(id) = rng.pick(&catalog.categories)
        {
            params.push(("category_id", id.clone()));
        }
        if i % 5 == 1
            && let Some((min, max)) = rng.pick(&catalog.price_buckets)
        {
            params.push(("min_price_minor", min.to_string()));
            if *max > 0 {
                params.push(("max_price_minor", max.to_string()));
            }
        }
        if i % 2 == 0 {
            params.push(("in_stock_only", "true".to_owned()));
        }
        if i % 6 == 5 {
            params.push(("order_by", "SEARCH_ORDER_PRICE_ASC".to_owned()));
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        facet.push(Prepared::get(&format!(
            "/v1/products:search?{}",
            query(&pairs)
        ))?);
    }
    RequestTable::new(
        rest,
        vec![("search_text", 60, text), ("search_facet", 40, facet)],
        None,
    )
}

/// `cart`: a signed-in shopper looks at the cart, adds a product, removes
/// one. Adds and removes draw from the same few stocked products with equal
/// weight, so carts stay small however long the run.
pub fn cart(
    rest: Arc<RestClient>,
    catalog: &Catalog,
    shoppers: Arc<Shoppers>,
) -> anyhow::Result<RequestTable> {
    let stocked: Vec<_> = catalog.stocked(20).into_iter().take(20).collect();
    anyhow::ensure!(!stocked.is_empty(), "no product with stock to put in carts");
    let add = stocked
        .iter()
        .map(|p| {
            Ok(Prepared {
                method: Method::POST,
                uri: path_uri("/v1/carts/mine/items")?,
                body: Some(Bytes::from(
                    serde_json::json!({"productId": p.id, "quantity": 1}).to_string(),
                )),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let remove = stocked
        .iter()
        .map(|p| {
            Ok(Prepared {
                method: Method::DELETE,
                uri: path_uri(&format!("/v1/carts/mine/items/{}", p.sku))?,
                body: None,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    RequestTable::new(
        rest,
        vec![
            ("cart_view", 50, vec![Prepared::get("/v1/carts/mine")?]),
            ("cart_add", 25, add),
            ("cart_remove", 25, remove),
        ],
        Some(shoppers),
    )
}
