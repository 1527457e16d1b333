//! The AuthService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::auth::v1::auth_service_server::AuthService;

pub struct AuthApi;

impl AuthService for AuthApi {}
