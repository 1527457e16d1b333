//! The bare reference: a trivial axum server answering `GET /v1/products/{id}`
//! and a trivial tonic server answering `ProductService/GetProduct`, both with
//! one fixed demo product (the real answer's size), no database, no cache, no
//! middleware. Measured on the same machine with the same step plan, it is the
//! ceiling the real platform is compared with (`--bare` reports real/bare).
//!
//! Both also list products (`GET /v1/products`, `ListProducts`) so loadgen's
//! catalog discovery works against them unchanged; every other method is
//! UNIMPLEMENTED.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use bytes::Bytes;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use serde_json::{Value, json};
use shopmesh_demo::SeedProduct;
use shopmesh_proto::shop::common::v1::Money;
use shopmesh_proto::shop::product::v1::product_service_server::{
    ProductService, ProductServiceServer,
};
use shopmesh_proto::shop::product::v1::{
    GetProductRequest, GetProductResponse, ListProductsRequest, ListProductsResponse, Product,
};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin};
use tokio::sync::watch;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

/// Products the bare servers list (discovery needs ids; any id is answered).
const LISTED: usize = 100;

fn demo_products() -> Vec<SeedProduct> {
    shopmesh_demo::demo_catalog()
        .products
        .into_iter()
        .take(LISTED)
        .collect()
}

fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: at.timestamp(),
        nanos: i32::try_from(at.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

fn product_message(p: &SeedProduct) -> Product {
    Product {
        id: p.id.to_string(),
        sku: p.sku.clone(),
        name: p.name.clone(),
        description: p.description.clone(),
        category_id: p.category_id.to_string(),
        price: Some(Money {
            currency_code: p.currency_code.to_owned(),
            amount_minor: p.price_minor,
        }),
        attributes: p.attributes.iter().cloned().collect(),
        image_urls: p.image_urls.clone(),
        create_time: Some(timestamp(p.created_at)),
        update_time: Some(timestamp(p.created_at)),
        available_quantity: p.initial_stock,
    }
}

/// The proto3 JSON of a product, as the gateway writes it.
fn product_json(p: &SeedProduct) -> Value {
    let time = p
        .created_at
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let attributes: serde_json::Map<String, Value> = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": p.id.to_string(),
        "sku": p.sku,
        "name": p.name,
        "description": p.description,
        "categoryId": p.category_id.to_string(),
        "price": {"currencyCode": p.currency_code, "amountMinor": p.price_minor.to_string()},
        "attributes": attributes,
        "imageUrls": p.image_urls,
        "createTime": time,
        "updateTime": time,
        "availableQuantity": p.initial_stock.to_string(),
    })
}

/// Prepared answers, shared by every request (behind an `Arc`: axum's `State`
/// clones its value per request, and cloning 100 products cost ~500 µs).
struct Answers {
    product_json: Bytes,
    list_json: Bytes,
    product: Product,
    list: Vec<Product>,
}

impl Answers {
    fn new() -> anyhow::Result<Self> {
        let products = demo_products();
        let first = products.first().context("the demo catalog is empty")?;
        let list_json = json!({"products": products.iter().map(product_json).collect::<Vec<_>>()});
        Ok(Self {
            product_json: Bytes::from(serde_json::to_vec(&product_json(first))?),
            list_json: Bytes::from(serde_json::to_vec(&list_json)?),
            product: product_message(first),
            list: products.iter().map(product_message).collect(),
        })
    }
}

fn json_response(body: Bytes) -> impl IntoResponse {
    (
        [(CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body,
    )
}

async fn get_product_json(State(answers): State<Arc<Answers>>) -> impl IntoResponse {
    json_response(answers.product_json.clone())
}

async fn list_products_json(State(answers): State<Arc<Answers>>) -> impl IntoResponse {
    json_response(answers.list_json.clone())
}

#[tonic::async_trait]
impl ProductService for Answers {
    async fn get_product(
        &self,
        _: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        Ok(Response::new(GetProductResponse {
            product: Some(self.product.clone()),
        }))
    }

    async fn list_products(
        &self,
        _: Request<ListProductsRequest>,
    ) -> Result<Response<ListProductsResponse>, Status> {
        Ok(Response::new(ListProductsResponse {
            products: self.list.clone(),
            next_page_token: String::new(),
        }))
    }
}

/// Serves both until `stop` turns true. Listeners are bound by the caller
/// (port 0 in tests).
pub async fn serve(
    http: TcpListener,
    grpc: TcpListener,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let answers = Arc::new(Answers::new()?);
    let router = Router::new()
        .route("/v1/products/{id}", get(get_product_json))
        .route("/v1/products", get(list_products_json))
        .route("/readyz", get(|| async { "ok" }))
        .with_state(Arc::clone(&answers));
    let mut http_stop = stop.clone();
    // TCP_NODELAY on both, as on the real servers (platform/src/grpc.rs, gateway).
    let http = axum::serve(
        http.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        }),
        router,
    )
    .with_graceful_shutdown(async move {
        let _ = http_stop.wait_for(|stop| *stop).await;
    });
    let grpc = tonic::transport::Server::builder()
        .add_service(ProductServiceServer::from_arc(answers))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(grpc).with_nodelay(Some(true)),
            async move {
                let _ = stop.wait_for(|stop| *stop).await;
            },
        );
    let (http, grpc) = tokio::join!(http.into_future(), grpc);
    http?;
    grpc?;
    Ok(())
}

/// `loadgen bare`: binds, prints `loadgen bare: http=ADDR grpc=ADDR` on one
/// line, serves until SIGINT/SIGTERM (or, with `exit_on_eof`, until its
/// standard input closes: how a parent loadgen stops it).
pub async fn main(http: SocketAddr, grpc: SocketAddr, exit_on_eof: bool) -> anyhow::Result<()> {
    let http = TcpListener::bind(http)
        .await
        .with_context(|| format!("binding {http}"))?;
    let grpc = TcpListener::bind(grpc)
        .await
        .with_context(|| format!("binding {grpc}"))?;
    println!(
        "loadgen bare: http={} grpc={}",
        http.local_addr()?,
        grpc.local_addr()?
    );
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        stop_requested(exit_on_eof).await;
        let _ = stop.send(true);
    });
    serve(http, grpc, stopped).await
}

async fn stop_requested(exit_on_eof: bool) {
    let eof = async {
        if exit_on_eof {
            let mut sink = Vec::new();
            let _ = tokio::io::stdin().read_to_end(&mut sink).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = eof => {}
        () = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

/// A `loadgen bare` child process (its own process, like the real servers).
pub struct BareChild {
    child: Child,
    stdin: Option<ChildStdin>,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub pid: u32,
}

impl BareChild {
    /// Starts `loadgen bare` on loopback ports chosen by the kernel.
    pub async fn spawn(workers: usize) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("finding loadgen's own binary")?;
        let mut child = tokio::process::Command::new(exe)
            .args(["bare", "--http", "127.0.0.1:0", "--grpc", "127.0.0.1:0"])
            .args(["--workers", &workers.to_string(), "--exit-on-stdin-eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("starting loadgen bare")?;
        let pid = child.id().context("loadgen bare exited at once")?;
        let stdout = child.stdout.take().context("no stdout from loadgen bare")?;
        let mut line = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            BufReader::new(stdout).read_line(&mut line),
        )
        .await
        .context("loadgen bare did not start within 20 s")??;
        let (http, grpc) = parse_banner(&line)
            .with_context(|| format!("unexpected first line from loadgen bare: {line:?}"))?;
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            http,
            grpc,
            pid,
        })
    }

    /// Closes its standard input (it drains and exits), then waits a little.
    pub async fn stop(mut self) {
        drop(self.stdin.take());
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn parse_banner(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.trim().strip_prefix("loadgen bare: http=")?;
    let (http, grpc) = rest.split_once(" grpc=")?;
    Some((http.parse().ok()?, grpc.parse().ok()?))
}
