//! The CartService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::cart::v1::cart_service_server::CartService;

pub struct CartApi;

impl CartService for CartApi {}
