//! Search rules independent of storage: what a valid search is, how free text
//! becomes something the database can match without ever being read as SQL,
//! tsquery syntax or a pattern, and the fixed facet buckets.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use shopmesh_platform::errors::FieldViolations;
use shopmesh_platform::paging;
use shopmesh_proto::shop::product::v1::{SearchOrder, SearchProductsRequest};
use tonic::Status;
use uuid::Uuid;

use crate::catalog::{
    Cursor, Filters, SortOrder, checked_page_size, optional_category, price_range,
};

/// Longest accepted query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Most `key=value` attribute filters one search may carry.
pub const MAX_ATTRIBUTE_FILTERS: usize = 20;
/// Attribute facets: at most this many keys, each with its most frequent values.
pub const MAX_ATTRIBUTE_FACETS: usize = 20;
pub const FACET_VALUES_PER_KEY: i64 = 10;
/// Price bucket edges in minor units: <1000, 1000–2500, …, ≥25000.
pub const PRICE_BUCKET_EDGES: [i64; 5] = [1_000, 2_500, 5_000, 10_000, 25_000];
/// Words shorter than this take no part in typo-tolerant matching: a trigram
/// of "x2" or "uk" is similar to far too much.
pub const MIN_FUZZY_WORD_CHARS: usize = 3;
/// How similar (pg_trgm `word_similarity`) each query word must be to some part
/// of a product name for a typo-tolerant match. 0.6 (the pg_trgm default)
/// misses one-letter slips in short words ("speker", "machne"); 0.5 finds them
/// without matching unrelated names in the demo catalog.
pub const WORD_SIMILARITY_THRESHOLD: f32 = 0.5;

/// Free text as the database matches it.
///
/// Words are runs of letters and digits, lower-cased; everything else (quotes,
/// `%`, `_`, `\`, `*`, `:`, `&`, `|`, `!`, brackets) only separates words, so no
/// character of the query can act as an operator in SQL, a LIKE pattern, a
/// regex or tsquery syntax. Apostrophes are dropped so "women's" is "womens".
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TextQuery {
    /// The query trimmed and lower-cased: a product whose lower-cased name is
    /// exactly this ranks first.
    pub exact: String,
    pub words: Vec<String>,
}

impl TextQuery {
    /// `None` for a blank query (browse). Control characters (NUL, which
    /// PostgreSQL text cannot hold, among them) count as spaces.
    pub fn parse(raw: &str) -> Option<Self> {
        let exact = raw.replace(char::is_control, " ").trim().to_lowercase();
        if exact.is_empty() {
            return None;
        }
        let words = exact
            .replace(['\'', '\u{2019}'], "")
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect();
        Some(Self { exact, words })
    }

    /// A `to_tsquery` input: every word must match, the last one as a prefix
    /// (search-as-you-type). Each word is quoted and contains only letters and
    /// digits, so the string is well-formed whatever the user typed. `None`
    /// when the query has no words (only symbols).
    pub fn tsquery(&self) -> Option<String> {
        let last = self.words.len().checked_sub(1)?;
        let terms: Vec<String> = self
            .words
            .iter()
            .enumerate()
            .map(|(i, word)| {
                if i == last {
                    format!("'{word}':*")
                } else {
                    format!("'{word}'")
                }
            })
            .collect();
        Some(terms.join(" & "))
    }

    /// Words long enough for trigram matching; a typo-tolerant match needs each.
    pub fn fuzzy_words(&self) -> Vec<&str> {
        self.words
            .iter()
            .filter(|w| w.chars().count() >= MIN_FUZZY_WORD_CHARS)
            .map(String::as_str)
            .collect()
    }

    /// The words as one string, for ranking by similarity to the whole name.
    pub fn similarity_text(&self) -> String {
        self.words.join(" ")
    }
}

/// A validated SearchProducts query.
#[derive(Clone, Debug, Serialize)]
pub struct SearchQuery {
    pub text: Option<TextQuery>,
    pub filters: Filters,
    pub order: SortOrder,
    #[serde(skip)]
    pub page_size: u32,
    #[serde(skip)]
    pub after: Option<Cursor>,
}

impl SearchQuery {
    /// Validates every field, reporting all bad ones at once.
    pub fn from_request(request: &SearchProductsRequest) -> Result<Self, Status> {
        let mut violations = FieldViolations::new();
        violations.check(
            request.query.chars().count() <= MAX_QUERY_CHARS,
            "query",
            "must be at most 256 characters",
        );
        let page_size = checked_page_size(request.page_size, &mut violations);
        let category_id = optional_category(&request.category_id, &mut violations);
        let (min_price_minor, max_price_minor) = price_range(
            request.min_price_minor,
            request.max_price_minor,
            &mut violations,
        );
        let attributes = attribute_filters(&request.attributes, &mut violations);
        let text = TextQuery::parse(&request.query);
        let order = match SearchOrder::try_from(request.order_by) {
            // Without text there is nothing to rank by: browse newest first.
            Ok(SearchOrder::Unspecified | SearchOrder::Relevance) if text.is_none() => {
                SortOrder::Newest
            }
            Ok(SearchOrder::Unspecified | SearchOrder::Relevance) => SortOrder::Relevance,
            Ok(SearchOrder::Newest) => SortOrder::Newest,
            Ok(SearchOrder::PriceAsc) => SortOrder::PriceAsc,
            Ok(SearchOrder::PriceDesc) => SortOrder::PriceDesc,
            Err(_) => {
                violations.add("order_by", "is not a known sort order");
                SortOrder::Newest
            }
        };
        violations.into_result()?;

        let mut query = Self {
            text,
            filters: Filters {
                category_id,
                min_price_minor,
                max_price_minor,
                attributes,
                in_stock_only: request.in_stock_only,
            },
            order,
            page_size,
            after: None,
        };
        query.after = paging::decode(&query.fingerprint(), &request.page_token)?;
        Ok(query)
    }

    /// Binds page tokens to the text, filters and order they were issued for.
    pub fn fingerprint(&self) -> String {
        paging::fingerprint(self)
    }
}

/// Parses `key=value` filters; several values of one key are OR-ed.
fn attribute_filters(
    raw: &[String],
    violations: &mut FieldViolations,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut filters: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    if raw.len() > MAX_ATTRIBUTE_FILTERS {
        violations.add("attributes", "must name at most 20 key=value filters");
        return filters;
    }
    for (i, filter) in raw.iter().enumerate() {
        match filter.split_once('=') {
            Some((key, value)) if is_attribute_key(key) && is_attribute_value(value) => {
                filters
                    .entry(key.to_owned())
                    .or_default()
                    .insert(value.to_owned());
            }
            _ => violations.add(
                format!("attributes[{i}]"),
                "must be key=value with a key of 1-32 of a-z and _ and a value of 1-100 characters",
            ),
        }
    }
    filters
}

/// An attribute key: 1 to 32 of `a-z` and `_`.
pub fn is_attribute_key(key: &str) -> bool {
    (1..=32).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// An attribute value: 1 to 100 characters, not only whitespace, no control characters.
pub fn is_attribute_value(value: &str) -> bool {
    (1..=100).contains(&value.chars().count())
        && !value.trim().is_empty()
        && !value.chars().any(char::is_control)
}

/// Facets over every product that matches a search (not just the page).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facets {
    pub total: i64,
    /// Every category holding a match, directly or in a subcategory, with the
    /// number of matches in it and below it; largest first.
    pub categories: Vec<(Uuid, String, i64)>,
    /// Per attribute key (most common keys first), its most frequent values.
    pub attributes: Vec<(String, Vec<(String, i64)>)>,
    /// One count per bucket of `PRICE_BUCKET_EDGES`, all six always present.
    pub price_buckets: Vec<PriceBucket>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PriceBucket {
    pub min_minor: i64,
    /// 0 for the open-ended last bucket.
    pub max_minor: i64,
    pub count: i64,
}

/// The six buckets, given counts by `width_bucket` index (0 = below the first edge).
pub fn price_buckets(counts: &BTreeMap<usize, i64>) -> Vec<PriceBucket> {
    let mut lower = 0;
    let mut buckets = Vec::with_capacity(PRICE_BUCKET_EDGES.len() + 1);
    for index in 0..=PRICE_BUCKET_EDGES.len() {
        let upper = PRICE_BUCKET_EDGES.get(index).copied().unwrap_or(0);
        buckets.push(PriceBucket {
            min_minor: lower,
            max_minor: upper,
            count: counts.get(&index).copied().unwrap_or(0),
        });
        lower = upper;
    }
    buckets
}

/// Groups `(key, value, count)` rows, already ordered by key popularity then
/// value count, into at most `MAX_ATTRIBUTE_FACETS` keys.
pub fn attribute_facets(rows: Vec<(String, String, i64)>) -> Vec<(String, Vec<(String, i64)>)> {
    let mut facets: Vec<(String, Vec<(String, i64)>)> = Vec::new();
    for (key, value, count) in rows {
        if let Some((last, values)) = facets.last_mut()
            && *last == key
        {
            values.push((value, count));
        } else if facets.len() == MAX_ATTRIBUTE_FACETS {
            break;
        } else {
            facets.push((key, vec![(value, count)]));
        }
    }
    facets
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(raw: &str) -> TextQuery {
        TextQuery::parse(raw).unwrap()
    }

    #[test]
    fn metacharacters_only_separate_words() {
        let hostile = text("'; DROP TABLE products; --");
        assert_eq!(hostile.words, ["drop", "table", "products"]);
        assert_eq!(
            hostile.tsquery().unwrap(),
            "'drop' & 'table' & 'products':*"
        );
        for raw in ["%", "_", ".*[", "\\", "&|!:*()<->", "'"] {
            let query = text(raw);
            assert!(query.words.is_empty(), "{raw}");
            assert_eq!(query.tsquery(), None, "{raw}");
            assert_eq!(query.exact, raw);
        }
        assert_eq!(text("headph%").words, ["headph"]);
        assert_eq!(text("100%_cotton").words, ["100", "cotton"]);
        assert_eq!(text("a\u{0}b\tc").exact, "a b c");
    }

    #[test]
    fn the_last_word_is_a_prefix() {
        assert_eq!(text("headph").tsquery().unwrap(), "'headph':*");
        assert_eq!(
            text("  Wireless  HEADPH ").tsquery().unwrap(),
            "'wireless' & 'headph':*"
        );
        assert_eq!(text("Women's shoes").words, ["womens", "shoes"]);
        assert_eq!(text("Café Crème").words, ["café", "crème"]);
        assert_eq!(TextQuery::parse("   "), None);
    }

    #[test]
    fn short_words_are_not_fuzzy_matched() {
        assert_eq!(text("uk 9 bots").fuzzy_words(), ["bots"]);
        assert_eq!(
            text("wireles headphnes").similarity_text(),
            "wireles headphnes"
        );
    }

    #[test]
    fn search_requests_are_validated_together() {
        let request = SearchProductsRequest {
            query: "x".repeat(257),
            page_size: -1,
            category_id: "audio".into(),
            min_price_minor: -5,
            attributes: vec!["colour=Black".into(), "Colour=Black".into(), "size".into()],
            order_by: 99,
            ..Default::default()
        };
        let status = SearchQuery::from_request(&request).unwrap_err();
        for field in [
            "query",
            "page_size",
            "category_id",
            "min_price_minor",
            "attributes[1]",
            "attributes[2]",
            "order_by",
        ] {
            assert!(status.message().contains(field), "{field}: {status:?}");
        }
        assert!(!status.message().contains("attributes[0]"));
    }

    #[test]
    fn attribute_filters_group_values_by_key() {
        let query = SearchQuery::from_request(&SearchProductsRequest {
            attributes: vec![
                "colour=Black".into(),
                "colour=White".into(),
                "size=UK 9".into(),
                "note=a=b".into(),
            ],
            ..Default::default()
        })
        .unwrap();
        let attributes = &query.filters.attributes;
        assert_eq!(attributes["colour"].len(), 2);
        assert!(attributes["size"].contains("UK 9"));
        assert!(attributes["note"].contains("a=b"));
    }

    #[test]
    fn relevance_needs_text() {
        let browse = SearchQuery::from_request(&SearchProductsRequest::default()).unwrap();
        assert_eq!(browse.order, SortOrder::Newest);
        let search = SearchQuery::from_request(&SearchProductsRequest {
            query: "tent".into(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(search.order, SortOrder::Relevance);
    }

    #[test]
    fn tokens_are_bound_to_the_text() {
        let first = SearchQuery::from_request(&SearchProductsRequest {
            query: "tent".into(),
            ..Default::default()
        })
        .unwrap();
        let token = paging::encode(&first.fingerprint(), &(5_i64, Uuid::nil()));
        let same = SearchQuery::from_request(&SearchProductsRequest {
            query: "Tent ".into(),
            page_token: token.clone(),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(same.after, Some((5, Uuid::nil())));
        let other = SearchProductsRequest {
            query: "tents".into(),
            page_token: token,
            ..Default::default()
        };
        assert!(SearchQuery::from_request(&other).is_err());
    }

    #[test]
    fn six_price_buckets_always() {
        let buckets = price_buckets(&BTreeMap::from([(0, 3), (5, 1)]));
        assert_eq!(buckets.len(), 6);
        assert_eq!(
            buckets[0],
            PriceBucket {
                min_minor: 0,
                max_minor: 1_000,
                count: 3
            }
        );
        assert_eq!(
            buckets[5],
            PriceBucket {
                min_minor: 25_000,
                max_minor: 0,
                count: 1
            }
        );
        assert_eq!(buckets[2].count, 0);
    }

    #[test]
    fn attribute_facets_keep_key_order_and_cap_keys() {
        let rows = (0..30)
            .flat_map(|k| {
                [
                    (format!("k{k:02}"), "a".to_owned(), 2),
                    (format!("k{k:02}"), "b".to_owned(), 1),
                ]
            })
            .collect();
        let facets = attribute_facets(rows);
        assert_eq!(facets.len(), MAX_ATTRIBUTE_FACETS);
        assert_eq!(facets[0].0, "k00");
        assert_eq!(facets[0].1, [("a".to_owned(), 2), ("b".to_owned(), 1)]);
    }
}
