//! The persisted form of a [`Model`]: one protobuf message (prost, defined
//! here rather than in `proto/`, because it is this service's private storage
//! format, not a contract) holding every trained part; derived lists (best
//! sellers, the id index) are rebuilt on load. `FORMAT` is stored with each
//! model: a replica refuses a model of another format (and trains a new one)
//! instead of misreading it. Bump it on any change a reader cannot ignore.

use std::time::Duration;

use chrono::DateTime;
use prost::Message;
use uuid::Uuid;

use crate::algo::{AlgoError, Personal};
use crate::model::{Model, ModelInfo, ModelProduct, Neighbours};

/// The snapshot format this build writes and reads.
pub const FORMAT: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("model format {found}, this build reads {FORMAT}")]
    Format { found: i32 },
    #[error("undecodable model: {0}")]
    Decode(#[from] prost::DecodeError),
    #[error("personal model: {0}")]
    Personal(#[from] AlgoError),
    #[error("corrupt model: {0}")]
    Corrupt(&'static str),
}

#[derive(Clone, PartialEq, Message)]
struct SnapshotProto {
    #[prost(int64, tag = "1")]
    seq: i64,
    #[prost(string, tag = "2")]
    version: String,
    #[prost(int64, tag = "3")]
    trained_at_ms: i64,
    #[prost(uint64, tag = "4")]
    duration_ms: u64,
    #[prost(int64, tag = "5")]
    orders: i64,
    #[prost(int64, tag = "6")]
    users: i64,
    #[prost(int64, tag = "7")]
    interactions: i64,
    #[prost(message, repeated, tag = "8")]
    products: Vec<ProductProto>,
    #[prost(message, optional, tag = "9")]
    similar: Option<NeighboursProto>,
    #[prost(message, optional, tag = "10")]
    together: Option<NeighboursProto>,
    #[prost(message, optional, tag = "11")]
    also_bought: Option<NeighboursProto>,
    #[prost(uint32, repeated, tag = "12")]
    popularity: Vec<u32>,
    /// `Personal::to_bytes`; empty when there is no personal model.
    #[prost(bytes = "vec", tag = "13")]
    personal: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct ProductProto {
    #[prost(bytes = "vec", tag = "1")]
    id: Vec<u8>,
    #[prost(string, tag = "2")]
    sku: String,
    #[prost(bytes = "vec", tag = "3")]
    category: Vec<u8>,
    #[prost(bytes = "vec", tag = "4")]
    root: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct NeighboursProto {
    #[prost(uint32, repeated, tag = "1")]
    offsets: Vec<u32>,
    #[prost(uint32, repeated, tag = "2")]
    items: Vec<u32>,
    #[prost(float, repeated, tag = "3")]
    scores: Vec<f32>,
}

fn neighbours(n: &Neighbours) -> NeighboursProto {
    let (offsets, entries) = n.parts();
    let (items, scores) = entries.unzip();
    NeighboursProto {
        offsets: offsets.to_vec(),
        items,
        scores,
    }
}

/// The model's bytes, in format [`FORMAT`].
pub fn encode(model: &Model) -> Vec<u8> {
    let info = &model.info;
    SnapshotProto {
        seq: info.seq,
        version: info.version.clone(),
        trained_at_ms: info.trained_at.timestamp_millis(),
        duration_ms: info.duration.as_millis() as u64,
        orders: info.orders,
        users: info.users,
        interactions: info.interactions,
        products: model
            .products
            .iter()
            .map(|p| ProductProto {
                id: p.id.as_bytes().to_vec(),
                sku: p.sku.clone(),
                category: p.category.as_bytes().to_vec(),
                root: p.root.as_bytes().to_vec(),
            })
            .collect(),
        similar: Some(neighbours(&model.similar)),
        together: Some(neighbours(&model.together)),
        also_bought: Some(neighbours(&model.also_bought)),
        popularity: model.popularity.clone(),
        personal: model
            .personal
            .as_ref()
            .map(Personal::to_bytes)
            .unwrap_or_default(),
    }
    .encode_to_vec()
}

/// Reads a model written in `format`.
pub fn decode(format: i32, bytes: &[u8]) -> Result<Model, SnapshotError> {
    if format != FORMAT {
        return Err(SnapshotError::Format { found: format });
    }
    let proto = SnapshotProto::decode(bytes)?;
    let uuid = |bytes: &[u8]| {
        Uuid::from_slice(bytes).map_err(|_| SnapshotError::Corrupt("a product or category id"))
    };
    let products = proto
        .products
        .iter()
        .map(|p| {
            Ok(ModelProduct {
                id: uuid(&p.id)?,
                sku: p.sku.clone(),
                category: uuid(&p.category)?,
                root: uuid(&p.root)?,
            })
        })
        .collect::<Result<Vec<_>, SnapshotError>>()?;
    let n = products.len();
    let list = |proto: Option<NeighboursProto>, what: &'static str| {
        let proto = proto.ok_or(SnapshotError::Corrupt(what))?;
        Neighbours::from_parts(proto.offsets, proto.items, proto.scores, n)
            .ok_or(SnapshotError::Corrupt(what))
    };
    let similar = list(proto.similar, "similar products")?;
    let together = list(proto.together, "bought together")?;
    let also_bought = list(proto.also_bought, "also bought")?;
    if proto.popularity.len() != n {
        return Err(SnapshotError::Corrupt("popularity"));
    }
    let personal = if proto.personal.is_empty() {
        None
    } else {
        let personal = Personal::from_bytes(&proto.personal)?;
        if personal.n_items() != n {
            return Err(SnapshotError::Corrupt("personal model size"));
        }
        Some(personal)
    };
    let info = ModelInfo {
        seq: proto.seq,
        version: proto.version,
        trained_at: DateTime::from_timestamp_millis(proto.trained_at_ms)
            .ok_or(SnapshotError::Corrupt("train time"))?,
        duration: Duration::from_millis(proto.duration_ms),
        orders: proto.orders,
        users: proto.users,
        products: n as i64,
        interactions: proto.interactions,
    };
    Ok(Model::from_parts(
        info,
        products,
        similar,
        together,
        also_bought,
        proto.popularity,
        personal,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{Catalog, CatalogCategory, CatalogProduct};
    use crate::model::TrainParams;
    use crate::store::TrainingLine;

    fn model() -> Model {
        let leaf = Uuid::now_v7();
        let products: Vec<CatalogProduct> = (0..4)
            .map(|i| CatalogProduct {
                id: Uuid::now_v7(),
                sku: format!("SKU-{i}"),
                name: format!("Thing {i}"),
                description: "A thing.".to_owned(),
                category_id: leaf,
                attributes: Vec::new(),
            })
            .collect();
        let user = Uuid::now_v7();
        let lines: Vec<TrainingLine> = [0, 1, 2, 0, 1]
            .iter()
            .enumerate()
            .map(|(n, &i)| TrainingLine {
                order_id: if n < 3 {
                    products[0].id
                } else {
                    products[1].id
                },
                user_id: user,
                product_id: products[i].id,
            })
            .collect();
        let catalog = Catalog {
            categories: vec![CatalogCategory {
                id: leaf,
                parent_id: None,
            }],
            products,
        };
        let mut model = Model::train(&catalog, &lines, &TrainParams::default());
        model.info.seq = 7;
        model.info.version = "2026-01-01T00:00:00Z#7".to_owned();
        model
    }

    #[test]
    fn a_model_round_trips() {
        let model = model();
        let back = decode(FORMAT, &encode(&model)).unwrap();
        assert_eq!(back.info.seq, 7);
        assert_eq!(back.info.version, model.info.version);
        assert_eq!(back.info.orders, model.info.orders);
        assert_eq!(back.products, model.products);
        assert_eq!(back.similar, model.similar);
        assert_eq!(back.together, model.together);
        assert_eq!(back.also_bought, model.also_bought);
        assert_eq!(back.popularity, model.popularity);
        assert_eq!(back.personal, model.personal);
        assert_eq!(
            back.popular_near(None, None, &|_| true, 4),
            model.popular_near(None, None, &|_| true, 4)
        );
    }

    #[test]
    fn another_format_or_garbage_is_refused() {
        let bytes = encode(&model());
        assert!(matches!(
            decode(FORMAT + 1, &bytes),
            Err(SnapshotError::Format { found: 2 })
        ));
        assert!(decode(FORMAT, &bytes[..bytes.len() / 2]).is_err());
        assert!(decode(FORMAT, b"not a model").is_err());
    }
}
