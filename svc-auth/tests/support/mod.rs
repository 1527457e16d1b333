//! What the svc-auth tests share: the service started as in production on its
//! own fresh database, a fake svc-user, and small helpers for calls.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use shopmesh_proto::shop::auth::v1::auth_service_client::AuthServiceClient;
use shopmesh_proto::shop::auth::v1::{
    LoginRequest, RefreshTokenRequest, RegisterRequest, RegisterResponse, TokenPair,
    ValidateTokenRequest, ValidateTokenResponse,
};
use shopmesh_proto::shop::user::v1::user_service_server::{UserService, UserServiceServer};
use shopmesh_proto::shop::user::v1::{CreateProfileRequest, CreateProfileResponse, Profile};
use shopmesh_testkit::{INTERNAL_TOKEN, TestService};
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

pub type Client = AuthServiceClient<Channel>;

pub const PASSWORD: &str = "correct horse battery staple";

/// A running svc-auth, its client, and the fake svc-user it talks to.
pub struct Harness {
    pub service: TestService,
    pub client: Client,
    pub users: FakeUserService,
}

/// Starts svc-auth against a healthy fake svc-user, with `extra` settings.
pub async fn start(extra: &[(&str, &str)]) -> Harness {
    let users = FakeUserService::default();
    let addr = users.clone().serve(free_port()).await;
    start_with_user_url(&format!("http://{addr}"), extra, users).await
}

/// Starts svc-auth with svc-user at `user_url` (which may not answer yet).
pub async fn start_with_user_url(
    user_url: &str,
    extra: &[(&str, &str)],
    users: FakeUserService,
) -> Harness {
    let mut settings: Vec<(&str, &str)> = vec![
        ("USER_GRPC_URL", user_url),
        // Keep what the tests leave in the shared Redis short-lived.
        ("REFRESH_TOKEN_TTL_HOURS", "1"),
    ];
    settings.extend_from_slice(extra);
    let service = TestService::spawn(&svc_auth::SPEC, &settings, svc_auth::build)
        .await
        .expect("svc-auth starts");
    let client = AuthServiceClient::new(service.channel().await.expect("connects"));
    Harness {
        service,
        client,
        users,
    }
}

/// A port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A unique address, so each test's sign-in failures have their own counter
/// in the shared Redis.
pub fn unique_email(name: &str) -> String {
    format!("{name}.{}@example.com", uuid::Uuid::now_v7().simple())
}

/// A random address in 10/8 for `x-client-ip`.
pub fn random_client_ip() -> String {
    let id = uuid::Uuid::new_v4().as_u128();
    format!("10.{}.{}.{}", id as u8, (id >> 8) as u8, (id >> 16) as u8)
}

pub fn bearer<T>(message: T, access_token: &str) -> Request<T> {
    shopmesh_testkit::with_bearer(message, access_token)
}

pub fn internal<T>(message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-service-token", INTERNAL_TOKEN.parse().unwrap());
    request
        .metadata_mut()
        .insert("x-service-name", "test".parse().unwrap());
    request
}

pub fn from_client<T>(message: T, ip: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("x-client-ip", ip.parse().unwrap());
    request
}

pub async fn register(client: &mut Client, email: &str) -> RegisterResponse {
    client
        .register(RegisterRequest {
            email: email.to_owned(),
            password: PASSWORD.to_owned(),
            display_name: "Test Shopper".to_owned(),
        })
        .await
        .expect("register")
        .into_inner()
}

pub async fn login(client: &mut Client, email: &str) -> TokenPair {
    try_login(client, email, PASSWORD, &random_client_ip())
        .await
        .expect("login")
}

/// ValidateToken as another service calls it.
pub async fn validate(
    client: &mut Client,
    access_token: &str,
) -> Result<ValidateTokenResponse, Status> {
    client
        .validate_token(internal(ValidateTokenRequest {
            access_token: access_token.to_owned(),
        }))
        .await
        .map(Response::into_inner)
}

/// Asserts that ValidateToken refuses `access_token` as UNAUTHENTICATED.
pub async fn assert_refused(client: &mut Client, access_token: &str) {
    let status = validate(client, access_token).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}

/// RefreshToken with `refresh_token`.
pub async fn refresh(client: &mut Client, refresh_token: &str) -> Result<TokenPair, Status> {
    client
        .refresh_token(RefreshTokenRequest {
            refresh_token: refresh_token.to_owned(),
        })
        .await
        .map(|r| r.into_inner().tokens.unwrap())
}

/// Login from client address `ip`.
pub async fn try_login(
    client: &mut Client,
    email: &str,
    password: &str,
    ip: &str,
) -> Result<TokenPair, Status> {
    let request = LoginRequest {
        email: email.to_owned(),
        password: password.to_owned(),
    };
    client
        .login(from_client(request, ip))
        .await
        .map(|r| r.into_inner().tokens.unwrap())
}

/// The fields an INVALID_ARGUMENT names.
#[allow(unused_imports)] // not every test file asks for it
pub use shopmesh_platform::errors::violated_fields;

/// The `kid` in a JWT's header.
pub fn kid_of(jwt: &str) -> String {
    let header = jwt.split('.').next().unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
    json["kid"].as_str().unwrap().to_owned()
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// svc-user as svc-auth sees it: only CreateProfile, idempotent by user id,
/// recording every call, and switchable to answer UNAVAILABLE.
#[derive(Clone, Default)]
pub struct FakeUserService {
    state: Arc<FakeState>,
}

#[derive(Default)]
struct FakeState {
    failing: AtomicBool,
    calls: Mutex<Vec<RecordedCall>>,
    profiles: Mutex<HashMap<String, Profile>>,
}

#[derive(Clone, Debug)]
pub struct RecordedCall {
    pub request: CreateProfileRequest,
    pub service_name: Option<String>,
    pub service_token: Option<String>,
    pub answered_ok: bool,
}

impl FakeUserService {
    /// Serves on 127.0.0.1:`port` until the test ends; returns the address.
    pub async fn serve(self, port: u16) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .expect("the fake svc-user binds");
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(UserServiceServer::new(self))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        addr
    }

    pub fn set_failing(&self, failing: bool) {
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    pub fn calls(&self) -> Vec<RecordedCall> {
        self.state.calls.lock().unwrap().clone()
    }

    pub fn calls_for(&self, user_id: &str) -> Vec<RecordedCall> {
        self.calls()
            .into_iter()
            .filter(|c| c.request.user_id == user_id)
            .collect()
    }

    pub fn profile(&self, user_id: &str) -> Option<Profile> {
        self.state.profiles.lock().unwrap().get(user_id).cloned()
    }

    pub fn profile_count(&self) -> usize {
        self.state.profiles.lock().unwrap().len()
    }
}

#[tonic::async_trait]
impl UserService for FakeUserService {
    async fn create_profile(
        &self,
        request: Request<CreateProfileRequest>,
    ) -> Result<Response<CreateProfileResponse>, Status> {
        let header = |name: &str| {
            request
                .metadata()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let failing = self.state.failing.load(Ordering::SeqCst);
        let call = RecordedCall {
            request: request.get_ref().clone(),
            service_name: header("x-service-name"),
            service_token: header("x-service-token"),
            answered_ok: !failing,
        };
        self.state.calls.lock().unwrap().push(call);
        if failing {
            return Err(Status::unavailable("svc-user is restarting"));
        }
        let body = request.into_inner();
        let profile = self
            .state
            .profiles
            .lock()
            .unwrap()
            .entry(body.user_id.clone())
            .or_insert_with(|| Profile {
                user_id: body.user_id.clone(),
                email: body.email.clone(),
                display_name: body.display_name.clone(),
                ..Default::default()
            })
            .clone();
        Ok(Response::new(CreateProfileResponse {
            profile: Some(profile),
        }))
    }
}
