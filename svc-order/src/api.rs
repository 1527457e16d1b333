//! The OrderService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::order::v1::order_service_server::OrderService;

pub struct OrderApi;

impl OrderService for OrderApi {}
