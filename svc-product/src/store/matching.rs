//! The SQL deciding which products a listing or search matches, how they rank
//! and where a page starts. User input only ever reaches PostgreSQL as bind
//! parameters; the statement text is built from constants.

use sqlx::types::Json;
use sqlx::{Postgres, QueryBuilder};

use super::PRODUCT_COLUMNS;
use crate::catalog::{Cursor, Filters, SortOrder};
use crate::search::TextQuery;

/// Relevance is one integer so that a page cursor can hold it exactly (floats
/// would not survive the JSON of a page token bit for bit). Its digits are
/// tiers, compared in order: an exact name match (1e16), then full-text rank
/// (`ts_rank_cd` normalised to [0, 1) in millionths, times 1e5), then the
/// trigram similarity of the whole query to the name (in ten-thousandths).
/// Every part is a pure function of the query and the product's row.
const EXACT_MATCH_SCORE: i64 = 10_000_000_000_000_000;
const RANK_SCALE: i64 = 1_000_000;
const RANK_WEIGHT: i64 = 100_000;
const SIMILARITY_SCALE: i64 = 10_000;

/// `SELECT` of one page (`page_size + 1` rows, the extra one telling that a
/// next page exists) in `order`, after `after`.
pub fn page_sql(
    text: Option<&TextQuery>,
    filters: &Filters,
    order: SortOrder,
    after: Option<Cursor>,
    page_size: u32,
) -> QueryBuilder<Postgres> {
    let mut sql = QueryBuilder::new(format!("SELECT * FROM (SELECT {PRODUCT_COLUMNS}, "));
    match (order, text) {
        (SortOrder::Relevance, Some(text)) => push_score(&mut sql, text),
        _ => {
            sql.push("0::int8");
        }
    }
    sql.push(" AS score");
    push_matching(&mut sql, text, filters);
    sql.push(") p");
    if let Some((key, id)) = after {
        let (columns, comparison) = match order {
            SortOrder::Newest => ("created_at", "<"),
            SortOrder::PriceAsc => ("price_minor", ">"),
            SortOrder::PriceDesc => ("price_minor", "<"),
            SortOrder::Relevance => ("score", "<"),
        };
        sql.push(format_args!(" WHERE (p.{columns}, p.id) {comparison} ("));
        match order {
            SortOrder::Newest => sql.push_bind(
                chrono::DateTime::<chrono::Utc>::from_timestamp_micros(key).unwrap_or_default(),
            ),
            _ => sql.push_bind(key),
        };
        sql.push(", ").push_bind(id).push(")");
    }
    sql.push(match order {
        SortOrder::Newest => " ORDER BY p.created_at DESC, p.id DESC",
        SortOrder::PriceAsc => " ORDER BY p.price_minor ASC, p.id ASC",
        SortOrder::PriceDesc => " ORDER BY p.price_minor DESC, p.id DESC",
        SortOrder::Relevance => " ORDER BY p.score DESC, p.id DESC",
    });
    sql.push(" LIMIT ").push_bind(i64::from(page_size) + 1);
    sql
}

fn push_score(sql: &mut QueryBuilder<Postgres>, text: &TextQuery) {
    sql.push("(CASE WHEN lower(p.name) = ")
        .push_bind(text.exact.clone())
        .push(format_args!(" THEN {EXACT_MATCH_SCORE} ELSE 0 END)::int8"));
    if let Some(tsquery) = text.tsquery() {
        sql.push(" + coalesce(round(ts_rank_cd(p.search_document, to_tsquery('english', ")
            .push_bind(tsquery)
            .push(format_args!(
                "), 32)::float8 * {RANK_SCALE})::int8, 0) * {RANK_WEIGHT}"
            ));
    }
    sql.push(" + round(word_similarity(")
        .push_bind(text.similarity_text())
        .push(format_args!(
            ", p.name)::float8 * {SIMILARITY_SCALE})::int8"
        ));
}

/// `FROM products p WHERE …`: live products matching `text` and `filters`.
///
/// A product matches text when its name is the query (case-insensitively), or
/// its full-text document matches every word (the last as a prefix), or —
/// typo tolerance — every word of three or more characters is similar to part
/// of its name (pg_trgm `%>`, threshold set by the caller's transaction).
///
/// The three ways are a UNION of index scans rather than an OR: the planner
/// prices a trigram comparison like an integer one, so for an OR over a small
/// table it picks a sequential scan that runs the (costly) comparison on every
/// row, about ten times slower than the index scans on the demo catalog.
pub fn push_matching(
    sql: &mut QueryBuilder<Postgres>,
    text: Option<&TextQuery>,
    filters: &Filters,
) {
    sql.push(" FROM products p WHERE p.deleted_at IS NULL");
    if let Some(text) = text {
        sql.push(
            " AND p.id IN (SELECT id FROM products WHERE deleted_at IS NULL AND lower(name) = ",
        )
        .push_bind(text.exact.clone());
        if let Some(tsquery) = text.tsquery() {
            sql.push(
                " UNION ALL SELECT id FROM products WHERE deleted_at IS NULL \
                 AND search_document @@ to_tsquery('english', ",
            )
            .push_bind(tsquery)
            .push(")");
        }
        let fuzzy = text.fuzzy_words();
        if !fuzzy.is_empty() {
            sql.push(" UNION ALL SELECT id FROM products WHERE deleted_at IS NULL");
            for word in fuzzy {
                sql.push(" AND name %> ").push_bind(word.to_owned());
            }
        }
        sql.push(")");
    }
    if let Some(category) = filters.category_id {
        // The category and every category below it.
        sql.push(
            " AND p.category_id IN (WITH RECURSIVE tree AS (SELECT id FROM categories WHERE id = ",
        )
        .push_bind(category)
        .push(
            " UNION ALL SELECT c.id FROM categories c JOIN tree t ON c.parent_id = t.id) \
             SELECT id FROM tree)",
        );
    }
    if let Some(min) = filters.min_price_minor {
        sql.push(" AND p.price_minor >= ").push_bind(min);
    }
    if let Some(max) = filters.max_price_minor {
        sql.push(" AND p.price_minor <= ").push_bind(max);
    }
    for (key, values) in &filters.attributes {
        // Containment, so the GIN index on attributes serves it.
        sql.push(" AND (");
        for (i, value) in values.iter().enumerate() {
            if i > 0 {
                sql.push(" OR ");
            }
            sql.push("p.attributes @> ")
                .push_bind(Json(serde_json::json!({ key: value })));
        }
        sql.push(")");
    }
    if filters.in_stock_only {
        sql.push(
            " AND EXISTS (SELECT 1 FROM stock_levels s WHERE s.sku = p.sku AND s.available > 0)",
        );
    }
}
