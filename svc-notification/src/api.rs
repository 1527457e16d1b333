//! The NotificationService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::notification::v1::notification_service_server::NotificationService;

pub struct NotificationApi;

impl NotificationService for NotificationApi {}
