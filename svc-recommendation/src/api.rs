//! The RecommendationService gRPC API. Methods not implemented here answer UNIMPLEMENTED
//! (tonic's default stubs, explained by the note set in `build`).

use shopmesh_proto::shop::recommendation::v1::recommendation_service_server::RecommendationService;

pub struct RecommendationApi;

impl RecommendationService for RecommendationApi {}
