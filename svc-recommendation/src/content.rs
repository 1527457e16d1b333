//! "Similar products" from content: TF-IDF vectors over each product's name,
//! description and attributes, compared by cosine, plus a bonus for being in
//! the same leaf category (larger) or the same root category (smaller).
//!
//! Terms are lower-case alphanumeric words of two or more characters minus a
//! few English stop words; each attribute also adds one `key=value` term, so
//! two products of the same brand or colour share a rare, telling term. Name
//! words count twice and attribute terms one and a half times: a product's
//! name says more about what it is than its marketing copy. Weights are
//! `(1 + ln tf) · idf` with `idf = ln((N + 1) / (df + 1)) + 1`, L2-normalised.
//!
//! Neighbours are found through an inverted index (only products sharing a
//! term, or the leaf, are ever compared), so the cost is the sum over terms of
//! the squared number of products holding them, not `N²` comparisons.

use std::collections::HashMap;

/// One product's text, as the content model reads it.
#[derive(Clone, Debug, Default)]
pub struct Document<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub attributes: &'a [(String, String)],
    /// Dense ids of the product's leaf and root categories.
    pub leaf: u32,
    pub root: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContentParams {
    /// Neighbours kept per product.
    pub top_n: usize,
    /// Added to the cosine of two products in the same leaf category.
    pub same_leaf: f32,
    /// Added for the same root category but another leaf.
    pub same_root: f32,
    pub name_weight: f32,
    pub attribute_weight: f32,
}

impl Default for ContentParams {
    fn default() -> Self {
        Self {
            top_n: 50,
            same_leaf: 0.25,
            same_root: 0.08,
            name_weight: 2.0,
            attribute_weight: 1.5,
        }
    }
}

const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "any", "are", "as", "at", "be", "by", "for", "from", "in", "into", "is",
    "it", "its", "of", "on", "or", "that", "the", "this", "to", "up", "with", "your",
];

/// The words of `text` that carry meaning.
fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.chars().count() >= 2)
        .map(str::to_lowercase)
        .filter(|w| !STOP_WORDS.contains(&w.as_str()))
}

/// Weighted term frequencies of one document.
fn term_frequencies(doc: &Document<'_>, params: &ContentParams) -> HashMap<String, f32> {
    let mut tf: HashMap<String, f32> = HashMap::new();
    for word in words(doc.name) {
        *tf.entry(word).or_default() += params.name_weight;
    }
    for word in words(doc.description) {
        *tf.entry(word).or_default() += 1.0;
    }
    for (key, value) in doc.attributes {
        for word in words(value) {
            *tf.entry(word).or_default() += params.attribute_weight;
        }
        let pair = format!(
            "{}={}",
            key.trim().to_lowercase(),
            value.trim().to_lowercase()
        );
        *tf.entry(pair).or_default() += params.attribute_weight;
    }
    tf
}

/// Each document's most similar other documents, best first (ties to the
/// lower index), at most `params.top_n`.
pub fn similar(docs: &[Document<'_>], params: &ContentParams) -> Vec<Vec<(u32, f32)>> {
    let n = docs.len();
    let frequencies: Vec<HashMap<String, f32>> =
        docs.iter().map(|d| term_frequencies(d, params)).collect();
    let mut vocabulary: HashMap<&str, u32> = HashMap::new();
    let mut df: Vec<u32> = Vec::new();
    for tf in &frequencies {
        for term in tf.keys() {
            let next = vocabulary.len() as u32;
            let id = *vocabulary.entry(term.as_str()).or_insert(next);
            if id as usize == df.len() {
                df.push(0);
            }
            df[id as usize] += 1;
        }
    }
    let idf: Vec<f32> = df
        .iter()
        .map(|&d| ((n as f32 + 1.0) / (d as f32 + 1.0)).ln() + 1.0)
        .collect();
    // Sparse, normalised vectors and the inverted index over them.
    let mut postings: Vec<Vec<(u32, f32)>> = vec![Vec::new(); df.len()];
    let mut vectors: Vec<Vec<(u32, f32)>> = Vec::with_capacity(n);
    for (doc, tf) in (0u32..).zip(&frequencies) {
        let mut vector: Vec<(u32, f32)> = tf
            .iter()
            .filter_map(|(term, &f)| {
                let id = *vocabulary.get(term.as_str())?;
                Some((id, (1.0 + f.ln()) * idf[id as usize]))
            })
            .collect();
        let norm = vector.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
        if norm > 0.0 {
            for (_, w) in &mut vector {
                *w /= norm;
            }
        }
        vector.sort_unstable_by_key(|(id, _)| *id);
        for &(term, w) in &vector {
            postings[term as usize].push((doc, w));
        }
        vectors.push(vector);
    }
    let mut by_leaf: HashMap<u32, Vec<u32>> = HashMap::new();
    for (i, doc) in (0u32..).zip(docs) {
        by_leaf.entry(doc.leaf).or_default().push(i);
    }

    let mut scores = vec![0f32; n];
    let mut seen = vec![false; n];
    let mut touched: Vec<u32> = Vec::new();
    let mut out = Vec::with_capacity(n);
    for (i, doc) in docs.iter().enumerate() {
        let mut touch = |j: u32, touched: &mut Vec<u32>| {
            if !seen[j as usize] {
                seen[j as usize] = true;
                touched.push(j);
            }
        };
        for &(term, w) in &vectors[i] {
            for &(j, wj) in &postings[term as usize] {
                scores[j as usize] += w * wj;
                touch(j, &mut touched);
            }
        }
        for &j in by_leaf.get(&doc.leaf).map_or(&[][..], Vec::as_slice) {
            touch(j, &mut touched);
        }
        let mut row: Vec<(u32, f32)> = Vec::with_capacity(touched.len());
        for &j in &touched {
            let cosine = std::mem::take(&mut scores[j as usize]);
            seen[j as usize] = false;
            if j as usize == i {
                continue;
            }
            let other = &docs[j as usize];
            let bonus = if other.leaf == doc.leaf {
                params.same_leaf
            } else if other.root == doc.root {
                params.same_root
            } else {
                0.0
            };
            let score = cosine + bonus;
            if score > 0.0 {
                row.push((j, score));
            }
        }
        touched.clear();
        let by_score = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if row.len() > params.top_n && params.top_n > 0 {
            row.select_nth_unstable_by(params.top_n - 1, by_score);
        }
        row.truncate(params.top_n);
        row.sort_unstable_by(by_score);
        out.push(row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc<'a>(name: &'a str, attributes: &'a [(String, String)], leaf: u32) -> Document<'a> {
        Document {
            name,
            description: "",
            attributes,
            leaf,
            root: leaf / 10,
        }
    }

    #[test]
    fn shared_words_and_the_same_leaf_make_products_similar() {
        let black = vec![("colour".to_owned(), "Black".to_owned())];
        let none: Vec<(String, String)> = Vec::new();
        let docs = [
            doc("Auralis Wireless Headphones", &black, 10),
            doc("Sonvek Wireless Headphones", &black, 10),
            doc("Auralis Portable Speaker", &none, 11),
            doc("Cast Iron Skillet", &none, 20),
            doc("Wooden Jigsaw Puzzle", &none, 30),
        ];
        let similar = similar(&docs, &ContentParams::default());
        let ids: Vec<u32> = similar[0].iter().map(|p| p.0).collect();
        assert_eq!(ids, [1, 2], "{:?}", similar[0]);
        assert!(similar[0][0].1 > similar[0][1].1);
        // Nothing shared, other categories: no neighbours at all.
        assert!(similar[3].is_empty(), "{:?}", similar[3]);
        assert!(
            similar
                .iter()
                .enumerate()
                .all(|(i, row)| row.iter().all(|p| p.0 as usize != i))
        );
    }

    #[test]
    fn the_same_leaf_counts_without_shared_words_and_top_n_holds() {
        let none: Vec<(String, String)> = Vec::new();
        let docs = [
            doc("Alpha", &none, 1),
            doc("Beta", &none, 1),
            doc("Gamma", &none, 1),
            doc("Delta", &none, 2),
        ];
        let params = ContentParams {
            top_n: 1,
            ..ContentParams::default()
        };
        let similar = similar(&docs, &params);
        assert_eq!(similar[0], [(1, params.same_leaf)]);
        // Candidates share a word or the leaf; the root alone does not make one.
        assert!(similar[3].is_empty());
    }

    #[test]
    fn stop_words_and_single_characters_are_not_terms() {
        let terms: Vec<String> = words("The Best of A 5.3 mm and USB-C").collect();
        assert_eq!(terms, ["best", "mm", "usb"]);
    }
}
