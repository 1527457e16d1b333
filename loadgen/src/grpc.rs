//! Raw gRPC targets: single ProductService methods through tonic, spread
//! round-robin over `--connections` HTTP/2 connections.
//!
//! Requests are encoded once at setup and responses are not decoded (a raw
//! codec: only the gRPC status matters), so loadgen's cost per call does not
//! grow with the answer (a page of 20 products). What remains is the
//! transport: profiled at 4,000 calls/s, h2's connection task with its
//! `writev` and the kernel's loopback TCP path were half of loadgen's CPU,
//! one flush per call. Arrivals that fall due together therefore go to the
//! same connection (`CHUNK` in a row), so h2 sends them in one write.
//!
//! Calls beyond `--streams` per connection (default 200) wait for a slot in a
//! fair semaphore (the wait counts in their latency) instead of queueing
//! inside tonic and h2, where each of thousands of waiting calls was woken
//! and polled again and again. Overloading the bare server at 16,000 calls/s
//! (two runs each): unbounded, that re-polling was half of loadgen's CPU
//! (7.6 s per 96,000 arrivals) and starved the server to 4,500 calls/s of
//! goodput; bounded, 5.8 s and 10,700–12,900/s. At 8,000/s both are equal.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use prost::Message as _;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::{
    GetProductRequest, ListProductsRequest, ProductOrder, SearchOrder, SearchProductsRequest,
};
use tokio::sync::Semaphore;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};

use crate::catalog::{Catalog, ProductInfo};
use crate::engine::{ArrivalFuture, Choice, Workload};
use crate::rest::check_loopback;
use crate::rng::Rng;
use crate::stats::{Done, Failure, Kind, KindId, Sample};

/// Consecutive calls sent on one connection before moving to the next.
const CHUNK: usize = 16;

/// One tonic channel per connection.
#[derive(Debug)]
pub struct GrpcPool {
    channels: Vec<Channel>,
    slots: Semaphore,
    next: AtomicUsize,
    timeout: Duration,
}

impl GrpcPool {
    pub async fn connect(
        url: &str,
        connections: usize,
        streams: usize,
        timeout: Duration,
        allow_remote: bool,
    ) -> anyhow::Result<Arc<Self>> {
        let endpoint = Endpoint::from_shared(url.to_owned())
            .with_context(|| format!("{url:?} is not a gRPC URL"))?
            .tcp_nodelay(true)
            .connect_timeout(timeout.min(Duration::from_secs(5)));
        let uri = endpoint.uri();
        let host = uri.host().with_context(|| format!("{url}: no host"))?;
        let port = uri.port_u16().unwrap_or(80);
        let addrs: Vec<_> = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("resolving {host}"))?
            .collect();
        check_loopback(url, &addrs, allow_remote)?;
        let mut channels = Vec::with_capacity(connections);
        for _ in 0..connections.max(1) {
            // Each `connect` opens its own HTTP/2 connection.
            let channel = endpoint
                .connect()
                .await
                .with_context(|| format!("connecting to {url}"))?;
            channels.push(channel);
        }
        Ok(Arc::new(Self {
            slots: Semaphore::new(channels.len() * streams),
            channels,
            next: AtomicUsize::new(0),
            timeout,
        }))
    }

    fn channel(&self) -> Channel {
        let n = self.next.fetch_add(1, Ordering::Relaxed) / CHUNK;
        self.channels[n % self.channels.len()].clone()
    }

    /// Lists up to `max` products (pages of 100), for the ids the targets use.
    pub async fn discover(&self, max: usize) -> anyhow::Result<Catalog> {
        let mut products = Vec::new();
        let mut page_tokens = Vec::new();
        let mut token = String::new();
        while products.len() < max {
            let page = ProductServiceClient::new(self.channel())
                .list_products(ListProductsRequest {
                    page_size: 100,
                    page_token: token.clone(),
                    ..Default::default()
                })
                .await
                .context("ListProducts")?
                .into_inner();
            products.extend(page.products.into_iter().map(|p| ProductInfo {
                id: p.id,
                sku: p.sku,
                name: p.name,
                category_id: p.category_id,
                available: p.available_quantity,
                attributes: p.attributes.into_iter().collect(),
            }));
            if page.next_page_token.is_empty() {
                break;
            }
            token = page.next_page_token;
            page_tokens.push(token.clone());
        }
        anyhow::ensure!(!products.is_empty(), "ListProducts returned no product");
        Ok(Catalog {
            products,
            page_tokens,
            ..Catalog::default()
        })
    }
}

/// Which ProductService method a gRPC target calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    GetProduct,
    ListProducts,
    SearchProducts,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Self::GetProduct => "GetProduct",
            Self::ListProducts => "ListProducts",
            Self::SearchProducts => "SearchProducts",
        }
    }

    fn path(self) -> PathAndQuery {
        PathAndQuery::from_static(match self {
            Self::GetProduct => "/shop.product.v1.ProductService/GetProduct",
            Self::ListProducts => "/shop.product.v1.ProductService/ListProducts",
            Self::SearchProducts => "/shop.product.v1.ProductService/SearchProducts",
        })
    }
}

/// Sends prepared message bytes; yields the response message's length.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

/// Small buffers: requests are tens of bytes (tonic's default is 8 KiB each).
const RAW_BUFFER: usize = 512;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = usize;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }

    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(RAW_BUFFER, 32 * 1024)
    }
}

impl Decoder for RawCodec {
    type Item = usize;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<usize>, Status> {
        let len = src.remaining();
        src.advance(len);
        Ok(Some(len))
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(RAW_BUFFER, 32 * 1024)
    }
}

/// Prepared requests of one method, encoded; an arrival clones one (a
/// reference count).
pub struct GrpcTarget {
    pool: Arc<GrpcPool>,
    method: Method,
    path: PathAndQuery,
    requests: Vec<Bytes>,
}

impl GrpcTarget {
    pub fn new(pool: Arc<GrpcPool>, method: Method, catalog: &Catalog, seed: u64) -> Self {
        let requests: Vec<Bytes> =
            match method {
                Method::GetProduct => catalog
                    .products
                    .iter()
                    .map(|p| {
                        GetProductRequest { id: p.id.clone() }
                            .encode_to_vec()
                            .into()
                    })
                    .collect(),
                Method::ListProducts => {
                    let mut list = vec![ListProductsRequest {
                        page_size: 20,
                        ..Default::default()
                    }];
                    list.extend(catalog.page_tokens.iter().take(10).map(|token| {
                        ListProductsRequest {
                            page_size: 20,
                            page_token: token.clone(),
                            ..Default::default()
                        }
                    }));
                    list.push(ListProductsRequest {
                        page_size: 20,
                        order_by: ProductOrder::PriceAsc.into(),
                        ..Default::default()
                    });
                    list.iter().map(|r| r.encode_to_vec().into()).collect()
                }
                Method::SearchProducts => {
                    crate::catalog::search_words(catalog, &mut Rng::new(seed), 200)
                        .into_iter()
                        .enumerate()
                        .map(|(i, query)| SearchProductsRequest {
                            query,
                            page_size: 20,
                            in_stock_only: i % 3 == 0,
                            order_by: if i % 5 == 0 {
                                SearchOrder::PriceAsc.into()
                            } else {
                                SearchOrder::Relevance.into()
                            },
                            ..Default::default()
                        })
                        .map(|r| r.encode_to_vec().into())
                        .collect()
                }
            };
        Self {
            pool,
            method,
            path: method.path(),
            requests,
        }
    }
}

impl Workload for GrpcTarget {
    fn kinds(&self) -> Vec<Kind> {
        vec![Kind::request(self.method.name())]
    }

    fn choose(&self, rng: &mut Rng) -> Choice {
        Choice {
            kind: 0,
            action: rng.below(self.requests.len()) as u32,
        }
    }

    fn start(&self, choice: Choice, _: &mut Rng, intended: Instant, base: KindId) -> ArrivalFuture {
        let pool = Arc::clone(&self.pool);
        let timeout = pool.timeout;
        let request = self
            .requests
            .get(choice.action as usize)
            .cloned()
            .unwrap_or_default();
        let path = self.path.clone();
        let kind = base + choice.kind;
        Box::pin(async move {
            let call = async {
                let _slot = pool
                    .slots
                    .acquire()
                    .await
                    .map_err(|_| Status::unavailable("loadgen is stopping"))?;
                let mut grpc = tonic::client::Grpc::new(pool.channel());
                grpc.ready()
                    .await
                    .map_err(|err| Status::unavailable(err.to_string()))?;
                grpc.unary(tonic::Request::new(request), path, RawCodec)
                    .await
            };
            let outcome = match tokio::time::timeout(timeout, call).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(status)) => Err(Failure::Grpc(status.code() as i32)),
                Err(_) => Err(Failure::Timeout),
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
