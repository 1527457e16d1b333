//! The PaymentService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::payment::v1::payment_service_server::PaymentService;

pub struct PaymentApi;

impl PaymentService for PaymentApi {}
