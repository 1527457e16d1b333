//! The InventoryService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::inventory::v1::inventory_service_server::InventoryService;

pub struct InventoryApi;

impl InventoryService for InventoryApi {}
