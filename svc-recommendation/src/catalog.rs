//! The catalog as the recommender needs it, read from svc-product over gRPC:
//! every live product (paged ListProducts; deleted products are not listed)
//! with its text and attributes, and the category tree (ListCategories).
//! Read in full at training time and every refresh, and one product at a time
//! for a product the recommender has not seen yet.

use std::collections::HashMap;
use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{
    Category, GetProductRequest, ListCategoriesRequest, ListProductsRequest, Product,
};
use tonic::{Code, Status};
use uuid::Uuid;

/// One call to svc-product (a page, the tree, a product).
const CALL_DEADLINE: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const PRODUCT_SERVICE: LazyChannel = LazyChannel::new(CONNECT_TIMEOUT).call_timeout(CALL_DEADLINE);
/// ListProducts' largest page.
const PAGE_SIZE: i32 = 100;
/// Stops a catalog read that never ends (a token loop): far above any real catalog.
const MAX_PAGES: usize = 100_000;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("svc-product: {0}")]
    Unavailable(String),
}

impl From<Status> for CatalogError {
    fn from(status: Status) -> Self {
        Self::Unavailable(format!("{:?}: {}", status.code(), status.message()))
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogProduct {
    pub id: Uuid,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub category_id: Uuid,
    pub attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogCategory {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
}

/// The live catalog at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Catalog {
    pub categories: Vec<CatalogCategory>,
    pub products: Vec<CatalogProduct>,
}

impl Catalog {
    /// Each category's parent (`None` for a root).
    pub fn parents(&self) -> HashMap<Uuid, Option<Uuid>> {
        self.categories
            .iter()
            .map(|c| (c.id, c.parent_id))
            .collect()
    }
}

/// The root of `category` in a parent map (the category itself for a root or
/// an unknown category).
pub fn root_of(parents: &HashMap<Uuid, Option<Uuid>>, category: Uuid) -> Uuid {
    let mut current = category;
    // The tree is shallow; the bound stops a cycle in bad data.
    for _ in 0..32 {
        match parents.get(&current).copied().flatten() {
            Some(parent) => current = parent,
            None => break,
        }
    }
    current
}

/// svc-product's catalog reads.
#[derive(Clone)]
pub struct CatalogClient {
    client: ProductServiceClient<Authenticated>,
}

impl CatalogClient {
    pub fn connect(url: &str, credentials: ServiceCredentials) -> anyhow::Result<Self> {
        Ok(Self {
            client: ProductServiceClient::new(PRODUCT_SERVICE.authenticated(url, credentials)?),
        })
    }

    /// Every live product and the category tree.
    #[tracing::instrument(skip(self))]
    pub async fn fetch(&self) -> Result<Catalog, CatalogError> {
        let mut client = self.client.clone();
        let tree = client
            .list_categories(ListCategoriesRequest {})
            .await?
            .into_inner()
            .categories;
        let mut categories = Vec::new();
        flatten(&tree, None, &mut categories);
        let mut products = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let page = client
                .list_products(ListProductsRequest {
                    page_size: PAGE_SIZE,
                    page_token: token,
                    ..Default::default()
                })
                .await?
                .into_inner();
            products.extend(page.products.into_iter().filter_map(product));
            token = page.next_page_token;
            if token.is_empty() {
                break;
            }
        }
        Ok(Catalog {
            categories,
            products,
        })
    }

    /// One live product; `None` when svc-product does not have it (deleted or
    /// never existed).
    pub async fn product(&self, id: Uuid) -> Result<Option<CatalogProduct>, CatalogError> {
        let mut client = self.client.clone();
        match client
            .get_product(GetProductRequest { id: id.to_string() })
            .await
        {
            Ok(response) => Ok(response.into_inner().product.and_then(product)),
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(status.into()),
        }
    }
}

fn flatten(tree: &[Category], parent: Option<Uuid>, out: &mut Vec<CatalogCategory>) {
    for category in tree {
        let Ok(id) = Uuid::parse_str(&category.id) else {
            continue;
        };
        let parent_id = Uuid::parse_str(&category.parent_id).ok().or(parent);
        out.push(CatalogCategory { id, parent_id });
        flatten(&category.children, Some(id), out);
    }
}

fn product(product: Product) -> Option<CatalogProduct> {
    let mut attributes: Vec<(String, String)> = product.attributes.into_iter().collect();
    // Map order is random; the content model must not depend on it.
    attributes.sort();
    Some(CatalogProduct {
        id: Uuid::parse_str(&product.id).ok()?,
        category_id: Uuid::parse_str(&product.category_id).ok()?,
        sku: product.sku,
        name: product.name,
        description: product.description,
        attributes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tree_is_flattened_with_parents_and_roots_found() {
        let (root, leaf) = (Uuid::now_v7(), Uuid::now_v7());
        let tree = vec![Category {
            id: root.to_string(),
            children: vec![Category {
                id: leaf.to_string(),
                ..Default::default()
            }],
            ..Default::default()
        }];
        let mut flat = Vec::new();
        flatten(&tree, None, &mut flat);
        assert_eq!(
            flat,
            [
                CatalogCategory {
                    id: root,
                    parent_id: None
                },
                CatalogCategory {
                    id: leaf,
                    parent_id: Some(root)
                }
            ]
        );
        let catalog = Catalog {
            categories: flat,
            products: Vec::new(),
        };
        let parents = catalog.parents();
        assert_eq!(root_of(&parents, leaf), root);
        assert_eq!(root_of(&parents, root), root);
        let stranger = Uuid::now_v7();
        assert_eq!(root_of(&parents, stranger), stranger);
    }
}
