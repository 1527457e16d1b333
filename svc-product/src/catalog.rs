//! Catalog rules independent of storage: what a valid listing query is, how it
//! sorts and pages, and how the category tree is assembled with its counts.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use shopmesh_platform::errors::FieldViolations;
use shopmesh_platform::paging;
use shopmesh_proto::shop::product::v1::{ListProductsRequest, ProductOrder};
use tonic::Status;
use uuid::Uuid;

/// Largest page a List may return; 0 asks for the default.
pub const MAX_PAGE_SIZE: u32 = 100;
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Most ids one BatchGetProducts may name.
pub const MAX_BATCH: usize = 100;

/// Sort orders, each with its own keyset.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SortOrder {
    /// `created_at DESC, id DESC`.
    Newest,
    /// `price_minor ASC, id ASC`.
    PriceAsc,
    /// `price_minor DESC, id DESC`.
    PriceDesc,
    /// `score DESC, id DESC`, where the score is a deterministic function of the
    /// query and the product (see `search::TextQuery`), so a cursor holds.
    Relevance,
}

/// The position after the last product of a page: its sort key (creation time in
/// microseconds, price, or relevance score) and its id as tie-breaker.
pub type Cursor = (i64, Uuid);

/// Which live products a listing or search may return, besides the search text.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Filters {
    /// This category or any category below it.
    pub category_id: Option<Uuid>,
    /// Inclusive bounds on `price_minor`.
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    /// Attribute key → accepted values: values of one key are OR-ed, keys AND-ed.
    pub attributes: BTreeMap<String, BTreeSet<String>>,
    /// Only products whose SKU inventory last reported with available stock.
    pub in_stock_only: bool,
}

/// A validated ListProducts query.
#[derive(Clone, Debug, Serialize)]
pub struct ListQuery {
    pub category_id: Option<Uuid>,
    pub min_price_minor: Option<i64>,
    pub max_price_minor: Option<i64>,
    pub order: SortOrder,
    #[serde(skip)]
    pub page_size: u32,
    #[serde(skip)]
    pub after: Option<Cursor>,
}

impl ListQuery {
    /// Validates every field, reporting all bad ones at once.
    pub fn from_request(request: &ListProductsRequest) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        let page_size = checked_page_size(request.page_size, &mut violations);
        let category_id = optional_category(&request.category_id, &mut violations);
        let (min_price_minor, max_price_minor) = price_range(
            request.min_price_minor,
            request.max_price_minor,
            &mut violations,
        );
        let order = match ProductOrder::try_from(request.order_by) {
            Ok(ProductOrder::Unspecified | ProductOrder::Newest) => SortOrder::Newest,
            Ok(ProductOrder::PriceAsc) => SortOrder::PriceAsc,
            Ok(ProductOrder::PriceDesc) => SortOrder::PriceDesc,
            Err(_) => {
                violations.add("order_by", "is not a known sort order");
                SortOrder::Newest
            }
        };
        violations.into_result()?;

        let mut query = Self {
            category_id,
            min_price_minor,
            max_price_minor,
            order,
            page_size,
            after: None,
        };
        query.after = paging::decode(&query.fingerprint(), &request.page_token)?;
        Ok(query)
    }

    /// Binds page tokens to the filters and order they were issued for.
    pub fn fingerprint(&self) -> String {
        paging::fingerprint(self)
    }

    pub fn filters(&self) -> Filters {
        Filters {
            category_id: self.category_id,
            min_price_minor: self.min_price_minor,
            max_price_minor: self.max_price_minor,
            ..Filters::default()
        }
    }
}

/// `page_size` per AIP-158, recording a violation when negative.
pub fn checked_page_size(requested: i32, violations: &mut FieldViolations) -> u32 {
    paging::page_size(requested, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE).unwrap_or_else(|_| {
        violations.add("page_size", "must not be negative");
        DEFAULT_PAGE_SIZE
    })
}

/// An optional `category_id` filter: empty means none.
pub fn optional_category(raw: &str, violations: &mut FieldViolations) -> Option<Uuid> {
    match raw {
        "" => None,
        raw => match Uuid::parse_str(raw) {
            Ok(id) => Some(id),
            Err(_) => {
                violations.add("category_id", "must be a category id (UUID)");
                None
            }
        },
    }
}

/// Inclusive price bounds where 0 means "no bound".
pub fn price_range(
    min: i64,
    max: i64,
    violations: &mut FieldViolations,
) -> (Option<i64>, Option<i64>) {
    violations.check(min >= 0, "min_price_minor", "must not be negative");
    violations.check(max >= 0, "max_price_minor", "must not be negative");
    violations.check(
        max == 0 || min <= max,
        "max_price_minor",
        "must not be below min_price_minor",
    );
    ((min > 0).then_some(min), (max > 0).then_some(max))
}

/// A category row with the number of live products filed directly under it.
#[derive(Clone, Debug)]
pub struct CategoryCount {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
    pub direct_products: i64,
}

/// A node of the assembled tree; `product_count` includes every descendant.
#[derive(Clone, Debug, PartialEq)]
pub struct CategoryNode {
    pub id: Uuid,
    pub parent_id: Option<Uuid>,
    pub slug: String,
    pub name: String,
    pub product_count: i64,
    pub children: Vec<CategoryNode>,
}

/// Assembles flat rows into a tree of roots, children sorted by name, counts
/// summed bottom-up. Rows whose parent is missing become roots rather than vanish.
pub fn build_tree(rows: Vec<CategoryCount>) -> Vec<CategoryNode> {
    let known: std::collections::HashSet<Uuid> = rows.iter().map(|r| r.id).collect();
    let mut children: HashMap<Option<Uuid>, Vec<CategoryCount>> = HashMap::new();
    for row in rows {
        let parent = row.parent_id.filter(|p| known.contains(p));
        children.entry(parent).or_default().push(row);
    }
    fn assemble(
        parent: Option<Uuid>,
        children: &mut HashMap<Option<Uuid>, Vec<CategoryCount>>,
    ) -> Vec<CategoryNode> {
        let mut rows = children.remove(&parent).unwrap_or_default();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows.into_iter()
            .map(|row| {
                let kids = assemble(Some(row.id), children);
                let below: i64 = kids.iter().map(|k| k.product_count).sum();
                CategoryNode {
                    id: row.id,
                    parent_id: row.parent_id,
                    slug: row.slug,
                    name: row.name,
                    product_count: row.direct_products + below,
                    children: kids,
                }
            })
            .collect()
    }
    assemble(None, &mut children)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u128, parent: Option<u128>, name: &str, n: i64) -> CategoryCount {
        CategoryCount {
            id: Uuid::from_u128(id),
            parent_id: parent.map(Uuid::from_u128),
            slug: name.to_lowercase(),
            name: name.to_owned(),
            direct_products: n,
        }
    }

    #[test]
    fn counts_include_descendants() {
        let tree = build_tree(vec![
            row(1, None, "Electronics", 1),
            row(2, Some(1), "Phones", 5),
            row(3, Some(1), "Audio", 2),
            row(4, Some(3), "Headphones", 7),
            row(5, None, "Books", 0),
        ]);
        assert_eq!(
            tree.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["Books", "Electronics"]
        );
        let electronics = &tree[1];
        assert_eq!(electronics.product_count, 15);
        assert_eq!(electronics.children[0].name, "Audio");
        assert_eq!(electronics.children[0].product_count, 9);
    }

    #[test]
    fn every_bad_field_is_reported_together() {
        let request = ListProductsRequest {
            page_size: -1,
            category_id: "shoes".into(),
            min_price_minor: 500,
            max_price_minor: 100,
            order_by: 42,
            ..Default::default()
        };
        let status = ListQuery::from_request(&request).unwrap_err();
        for field in ["page_size", "category_id", "max_price_minor", "order_by"] {
            assert!(
                status.message().contains(field),
                "{field} missing from {}",
                status.message()
            );
        }
    }

    #[test]
    fn a_token_only_pages_the_query_it_came_from() {
        let request = ListProductsRequest::default();
        let query = ListQuery::from_request(&request).unwrap();
        let token = paging::encode(&query.fingerprint(), &(10_i64, Uuid::nil()));
        let same = ListQuery::from_request(&ListProductsRequest {
            page_token: token.clone(),
            page_size: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(same.after, Some((10, Uuid::nil())));
        let other = ListProductsRequest {
            page_token: token,
            order_by: ProductOrder::PriceAsc as i32,
            ..Default::default()
        };
        assert!(ListQuery::from_request(&other).is_err());
    }
}
