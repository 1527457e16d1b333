//! Admission control on a real gRPC server: work in flight is bounded, a
//! refused call is UNAVAILABLE/OVERLOADED with a retry delay and never reaches
//! the handler, and a call whose deadline passes is dropped mid-handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use shopmesh_platform::GrpcServer;
use shopmesh_platform::errors::ErrorReason;
use shopmesh_platform::overload::OverloadSettings;
use shopmesh_proto::shop::product::v1::product_service_client::ProductServiceClient;
use shopmesh_proto::shop::product::v1::product_service_server::{
    ProductService, ProductServiceServer,
};
use shopmesh_proto::shop::product::v1::{GetProductRequest, GetProductResponse};
use tokio::sync::Semaphore;
use tonic::{Code, Request, Response, Status};
use tonic_types::StatusExt as _;

/// GetProduct waits for a permit the test hands out, counting the calls that
/// started and the ones dropped before they finished.
#[derive(Clone)]
struct Gate {
    open: Arc<Semaphore>,
    started: Arc<AtomicUsize>,
    dropped: Arc<AtomicUsize>,
}

struct CountDrop(Arc<AtomicUsize>, bool);

impl Drop for CountDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[tonic::async_trait]
impl ProductService for Gate {
    async fn get_product(
        &self,
        request: Request<GetProductRequest>,
    ) -> Result<Response<GetProductResponse>, Status> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = CountDrop(self.dropped.clone(), false);
        let _permit = self.open.acquire().await.unwrap();
        guard.1 = true;
        let _ = request;
        Ok(Response::new(GetProductResponse::default()))
    }
}

async fn serve(
    settings: OverloadSettings,
) -> (Gate, ProductServiceClient<tonic::transport::Channel>) {
    let gate = Gate {
        open: Arc::new(Semaphore::new(0)),
        started: Arc::default(),
        dropped: Arc::default(),
    };
    let server = GrpcServer::bind("127.0.0.1:0".parse().unwrap(), Duration::from_secs(1))
        .await
        .unwrap()
        .overload(settings)
        .add_service(ProductServiceServer::new(gate.clone()));
    let addr = server.local_addr().unwrap();
    tokio::spawn(server.serve(std::future::pending()));
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    (gate, ProductServiceClient::new(channel))
}

async fn until(what: &str, done: impl Fn() -> bool) {
    for _ in 0..500 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn calls_beyond_the_in_flight_limit_are_refused_at_once() {
    let (gate, client) = serve(OverloadSettings {
        max_in_flight: 2,
        lag_target: Duration::ZERO,
        ..OverloadSettings::default()
    })
    .await;
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let mut client = client.clone();
            tokio::spawn(async move { client.get_product(GetProductRequest::default()).await })
        })
        .collect();
    until("both calls are in the handler", || {
        gate.started.load(Ordering::SeqCst) == 2
    })
    .await;

    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        client.clone().get_product(GetProductRequest::default()),
    )
    .await
    .expect("a refusal does not wait")
    .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    let details = refused.get_error_details();
    assert_eq!(
        details.error_info().unwrap().reason,
        ErrorReason::Overloaded.as_str_name()
    );
    assert_eq!(
        details.retry_info().unwrap().retry_delay,
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        gate.started.load(Ordering::SeqCst),
        2,
        "never reached the handler"
    );
    let shed = shopmesh_platform::metrics::handle().render();
    assert!(
        shed.lines()
            .any(|line| line.starts_with("overload_shed_total")
                && line.contains("reason=\"in_flight\"")
                && line.contains("server=\"grpc\"")),
        "refusals are counted:\n{shed}"
    );

    // The places come back as the calls finish.
    gate.open.add_permits(100);
    for call in waiting {
        call.await.unwrap().unwrap();
    }
    client
        .clone()
        .get_product(GetProductRequest::default())
        .await
        .expect("served again");
}

#[tokio::test]
async fn a_call_past_its_deadline_is_dropped_in_the_handler() {
    let (gate, client) = serve(OverloadSettings::default()).await;
    let mut request = Request::new(GetProductRequest::default());
    request.set_timeout(Duration::from_millis(200));
    let status = client.clone().get_product(request).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::DeadlineExceeded | Code::Cancelled),
        "{status:?}"
    );
    until("the handler's work is dropped", || {
        gate.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    gate.open.add_permits(1);
}
