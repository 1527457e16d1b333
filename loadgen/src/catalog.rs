//! The shop as loadgen finds it at start: real product ids, categories, page
//! tokens and facet values read through the API, and search queries (some
//! with typos) made from product names, so every request asks for something
//! that exists.

use std::collections::BTreeMap;

use anyhow::Context as _;
use serde_json::Value;

use crate::rest::{RestClient, query};
use crate::rng::Rng;

#[derive(Clone, Debug, Default)]
pub struct ProductInfo {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub category_id: String,
    /// Units available when discovered.
    pub available: i64,
    pub attributes: Vec<(String, String)>,
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub products: Vec<ProductInfo>,
    /// `nextPageToken`s of the product list, in page order.
    pub page_tokens: Vec<String>,
    /// Every category of the tree, roots and leaves.
    pub categories: Vec<String>,
    /// Attribute facets: key and its most frequent values.
    pub facets: Vec<(String, Vec<String>)>,
    /// Price buckets `[min, max)` in minor units (max 0: unbounded).
    pub price_buckets: Vec<(i64, i64)>,
}

impl Catalog {
    /// Products with at least `units` available, the ones a shopper can buy.
    pub fn stocked(&self, units: i64) -> Vec<&ProductInfo> {
        self.products
            .iter()
            .filter(|p| p.available >= units)
            .collect()
    }
}

fn text(value: &Value, field: &str) -> String {
    value[field].as_str().unwrap_or_default().to_owned()
}

/// 64-bit integers are strings in proto3 JSON.
fn int64(value: &Value) -> i64 {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| value.as_i64())
        .unwrap_or(0)
}

/// Reads the catalog through the REST edge. Only the product list is required
/// (the bare reference serves nothing else); categories and facets are read
/// when the server has them.
pub async fn discover_rest(client: &RestClient, max_products: usize) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::default();
    let mut token = String::new();
    while catalog.products.len() < max_products {
        let mut params = vec![("page_size", "100")];
        if !token.is_empty() {
            params.push(("page_token", token.as_str()));
        }
        let page = client
            .get_json(&format!("/v1/products?{}", query(&params)), None)
            .await
            .context("listing products")?;
        for product in page["products"].as_array().into_iter().flatten() {
            catalog.products.push(ProductInfo {
                id: text(product, "id"),
                sku: text(product, "sku"),
                name: text(product, "name"),
                category_id: text(product, "categoryId"),
                available: int64(&product["availableQuantity"]),
                attributes: product["attributes"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect(),
            });
        }
        token = text(&page, "nextPageToken");
        if token.is_empty() {
            break;
        }
        catalog.page_tokens.push(token.clone());
    }
    anyhow::ensure!(
        !catalog.products.is_empty(),
        "the product list is empty: is the demo catalog seeded?"
    );
    if let Ok(tree) = client.get_json("/v1/categories", None).await {
        let mut stack: Vec<&Value> = tree["categories"]
            .as_array()
            .into_iter()
            .flatten()
            .collect();
        while let Some(node) = stack.pop() {
            catalog.categories.push(text(node, "id"));
            stack.extend(node["children"].as_array().into_iter().flatten());
        }
    }
    if let Ok(facets) = client
        .get_json("/v1/products:search?page_size=1", None)
        .await
    {
        for facet in facets["attributeFacets"].as_array().into_iter().flatten() {
            let values: Vec<String> = facet["values"]
                .as_array()
                .into_iter()
                .flatten()
                .take(8)
                .map(|v| text(v, "value"))
                .filter(|v| !v.is_empty())
                .collect();
            if !values.is_empty() {
                catalog.facets.push((text(facet, "key"), values));
            }
        }
        for bucket in facets["priceBuckets"].as_array().into_iter().flatten() {
            catalog
                .price_buckets
                .push((int64(&bucket["minMinor"]), int64(&bucket["maxMinor"])));
        }
    }
    if catalog.facets.is_empty() {
        // No facet endpoint: take attribute values from the products themselves.
        let mut seen: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (key, value) in catalog.products.iter().flat_map(|p| &p.attributes) {
            let values = seen.entry(key).or_default();
            if values.len() < 8 && !values.contains(value) {
                values.push(value.clone());
            }
        }
        catalog.facets = seen.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
    }
    Ok(catalog)
}

/// `count` search queries from product names: one or two words, seven in ten
/// with a typo (a dropped, doubled, swapped or replaced letter) such as
/// shoppers type.
pub fn search_words(catalog: &Catalog, rng: &mut Rng, count: usize) -> Vec<String> {
    let mut queries = Vec::with_capacity(count);
    for _ in 0..count * 4 {
        if queries.len() == count {
            break;
        }
        let Some(product) = rng.pick(&catalog.products) else {
            break;
        };
        let words: Vec<String> = product
            .name
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() >= 4 && w.chars().all(char::is_alphabetic))
            .map(str::to_lowercase)
            .collect();
        let Some(first) = rng.pick(&words).cloned() else {
            continue;
        };
        let mut query = if words.len() > 1 && rng.below(2) == 0 {
            let second = rng.pick(&words).cloned().unwrap_or_default();
            if second == first {
                first
            } else {
                format!("{first} {second}")
            }
        } else {
            first
        };
        if rng.below(10) < 7 {
            query = typo(&query, rng);
        }
        queries.push(query);
    }
    queries
}

/// One slip of the keyboard inside the longest word (never its first letter,
/// which shoppers rarely get wrong).
pub fn typo(query: &str, rng: &mut Rng) -> String {
    let mut words: Vec<Vec<char>> = query.split(' ').map(|w| w.chars().collect()).collect();
    let Some(word) = words.iter_mut().max_by_key(|w| w.len()) else {
        return query.to_owned();
    };
    if word.len() < 4 {
        return query.to_owned();
    }
    let at = 1 + rng.below(word.len() - 2);
    match rng.below(4) {
        0 => {
            word.remove(at);
        }
        1 => {
            let c = word[at];
            word.insert(at, c);
        }
        2 => word.swap(at, at + 1),
        _ => {
            let replacement = b"aeiourstnl"[rng.below(10)] as char;
            word[at] = match (word[at] == replacement, replacement) {
                (false, _) => replacement,
                (true, 'e') => 'a',
                (true, _) => 'e',
            };
        }
    }
    words
        .iter()
        .map(|w| w.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_typo_changes_one_word_a_little() {
        let mut rng = Rng::new(5);
        for _ in 0..200 {
            let typoed = typo("wireless headphones", &mut rng);
            assert_ne!(typoed, "wireless headphones");
            let (first, second) = typoed.split_once(' ').unwrap();
            assert_eq!(first, "wireless");
            assert!(second.starts_with('h'));
            assert!((9..=11).contains(&second.len()), "{typoed}");
        }
    }

    #[test]
    fn queries_come_from_names() {
        let catalog = Catalog {
            products: vec![ProductInfo {
                name: "Auralis Wireless Headphones".to_owned(),
                ..ProductInfo::default()
            }],
            ..Catalog::default()
        };
        let queries = search_words(&catalog, &mut Rng::new(1), 50);
        assert_eq!(queries.len(), 50);
        assert!(queries.iter().any(|q| q == "wireless" || q == "headphones"));
        assert!(queries.iter().all(|q| q.starts_with(['a', 'w', 'h'])));
    }
}
