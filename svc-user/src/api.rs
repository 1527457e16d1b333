//! The UserService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::user::v1::user_service_server::UserService;

pub struct UserApi;

impl UserService for UserApi {}
