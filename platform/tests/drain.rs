//! SIGTERM handling of the gRPC host: health turns NOT_SERVING for callers still
//! connected, new connections are refused, and the drain is bounded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use shopmesh_platform::GrpcServer;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

#[tokio::test]
async fn shutdown_turns_health_not_serving_and_bounds_the_drain() {
    let server = GrpcServer::bind("127.0.0.1:0".parse().unwrap(), Duration::from_secs(2))
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(server.serve(async {
        let _ = stopped.await;
    }));

    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    // An in-flight call that outlives the shutdown signal: a health watch.
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        watch.message().await.unwrap().unwrap().status(),
        ServingStatus::Serving
    );

    stop.send(()).unwrap();
    let next = tokio::time::timeout(Duration::from_secs(30), watch.message())
        .await
        .expect("watch answers");
    assert_eq!(
        next.unwrap().unwrap().status(),
        ServingStatus::NotServing,
        "callers see NOT_SERVING"
    );

    // The watch never ends by itself; the drain bound must end the server anyway.
    let result = tokio::time::timeout(Duration::from_secs(30), serving)
        .await
        .expect("the drain is bounded");
    result.unwrap().unwrap();
    let refused = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    assert!(refused.is_err(), "no new connections after shutdown");
}
