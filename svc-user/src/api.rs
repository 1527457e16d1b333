//! The UserService gRPC API: proto ↔ profiles and address books.

use shopmesh_platform::auth::{Caller, ServiceCaller};
use shopmesh_platform::errors::{self, ErrorReason, FieldViolations};
use shopmesh_platform::paging;
use shopmesh_proto::shop::user::v1::user_service_server::UserService;
use shopmesh_proto::shop::user::v1::{
    Address, CreateAddressRequest, CreateAddressResponse, CreateProfileRequest,
    CreateProfileResponse, DeleteAddressRequest, DeleteAddressResponse, GetMyProfileRequest,
    GetMyProfileResponse, GetProfileRequest, GetProfileResponse, GetUserAddressRequest,
    GetUserAddressResponse, GetUserProfileRequest, GetUserProfileResponse, ListAddressesRequest,
    ListAddressesResponse, MarketingPreferences, Profile, SetDefaultAddressRequest,
    SetDefaultAddressResponse, UpdateAddressRequest, UpdateAddressResponse, UpdateMyProfileRequest,
    UpdateMyProfileResponse,
};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::address::{self, AddressInput, AddressPage};
use crate::cached_profiles::Profiles;
use crate::error::UserError;
use crate::profile::{NewProfile, ProfileChange};
use crate::store::{AddressRecord, ProfileRecord, Store};

pub struct UserApi {
    store: Store,
    profiles: Profiles,
}

impl UserApi {
    pub fn new(store: Store, profiles: Profiles) -> Self {
        Self { store, profiles }
    }

    async fn profile(&self, user_id: Uuid) -> Result<Profile, Status> {
        let profile = self
            .profiles
            .get(user_id)
            .await
            .map_err(UserError::from)?
            .ok_or(UserError::ProfileNotFound(user_id))?;
        Ok(profile.into())
    }
}

/// Via `SystemTime`, whose conversion prost already gets right (also before 1970).
fn timestamp(at: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    std::time::SystemTime::from(at).into()
}

impl From<ProfileRecord> for Profile {
    fn from(record: ProfileRecord) -> Self {
        Self {
            user_id: record.user_id.to_string(),
            email: record.email,
            display_name: record.display_name,
            phone: record.phone,
            marketing: Some(MarketingPreferences {
                email_opt_in: record.email_opt_in,
                sms_opt_in: record.sms_opt_in,
            }),
            create_time: Some(timestamp(record.created_at)),
            update_time: Some(timestamp(record.updated_at)),
        }
    }
}

impl From<AddressRecord> for Address {
    fn from(record: AddressRecord) -> Self {
        Self {
            id: record.id.to_string(),
            label: record.label,
            recipient: record.recipient,
            line1: record.line1,
            line2: record.line2,
            city: record.city,
            region: record.region,
            postal_code: record.postal_code,
            country_code: record.country_code,
            phone: record.phone,
            is_default: record.is_default,
            create_time: Some(timestamp(record.created_at)),
            update_time: Some(timestamp(record.updated_at)),
        }
    }
}

#[tonic::async_trait]
impl UserService for UserApi {
    async fn get_my_profile(
        &self,
        request: Request<GetMyProfileRequest>,
    ) -> Result<Response<GetMyProfileResponse>, Status> {
        let caller = Caller::of(&request)?;
        Ok(Response::new(GetMyProfileResponse {
            profile: Some(self.profile(caller.user_id).await?),
        }))
    }

    async fn update_my_profile(
        &self,
        request: Request<UpdateMyProfileRequest>,
    ) -> Result<Response<UpdateMyProfileResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let change = ProfileChange::from_request(request.get_ref())?;
        let profile = self.store.update_profile(user_id, &change).await?;
        self.profiles.updated(&profile).await;
        Ok(Response::new(UpdateMyProfileResponse {
            profile: Some(profile.into()),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<GetProfileResponse>, Status> {
        let user_id = errors::parse_uuid("user_id", &request.get_ref().user_id)?;
        Ok(Response::new(GetProfileResponse {
            profile: Some(self.profile(user_id).await?),
        }))
    }

    async fn create_profile(
        &self,
        request: Request<CreateProfileRequest>,
    ) -> Result<Response<CreateProfileResponse>, Status> {
        let service = ServiceCaller::of(&request)?.name.clone();
        let new = NewProfile::from_request(request.get_ref())?;
        let (profile, created) = self
            .store
            .create_profile(&new)
            .await
            .map_err(UserError::from)?;
        if created {
            tracing::info!(user_id = %profile.user_id, caller = %service, "profile created");
        }
        Ok(Response::new(CreateProfileResponse {
            profile: Some(profile.into()),
        }))
    }

    async fn list_addresses(
        &self,
        request: Request<ListAddressesRequest>,
    ) -> Result<Response<ListAddressesResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let page = AddressPage::from_request(user_id, request.get_ref())?;
        let mut addresses = self
            .store
            .addresses(user_id, &page)
            .await
            .map_err(UserError::from)?;
        let next_page_token = if addresses.len() > page.page_size as usize {
            addresses.truncate(page.page_size as usize);
            addresses
                .last()
                .map(|last| {
                    let cursor: address::AddressCursor =
                        (last.is_default, last.created_at.timestamp_micros(), last.id);
                    paging::encode(&address::fingerprint(user_id), &cursor)
                })
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(ListAddressesResponse {
            addresses: addresses.into_iter().map(Into::into).collect(),
            next_page_token,
        }))
    }

    async fn create_address(
        &self,
        request: Request<CreateAddressRequest>,
    ) -> Result<Response<CreateAddressResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let input = AddressInput::for_create(request.get_ref().address.as_ref())?;
        let address = self.store.create_address(user_id, &input).await?;
        Ok(Response::new(CreateAddressResponse {
            address: Some(address.into()),
        }))
    }

    async fn update_address(
        &self,
        request: Request<UpdateAddressRequest>,
    ) -> Result<Response<UpdateAddressResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let (id, input) = AddressInput::for_update(request.get_ref())?;
        let address = self.store.update_address(user_id, id, &input).await?;
        Ok(Response::new(UpdateAddressResponse {
            address: Some(address.into()),
        }))
    }

    async fn delete_address(
        &self,
        request: Request<DeleteAddressRequest>,
    ) -> Result<Response<DeleteAddressResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        self.store.delete_address(user_id, id).await?;
        Ok(Response::new(DeleteAddressResponse {}))
    }

    async fn set_default_address(
        &self,
        request: Request<SetDefaultAddressRequest>,
    ) -> Result<Response<SetDefaultAddressResponse>, Status> {
        let user_id = Caller::of(&request)?.user_id;
        let id = errors::parse_uuid("id", &request.get_ref().id)?;
        let address = self.store.set_default_address(user_id, id).await?;
        Ok(Response::new(SetDefaultAddressResponse {
            address: Some(address.into()),
        }))
    }

    async fn get_user_profile(
        &self,
        request: Request<GetUserProfileRequest>,
    ) -> Result<Response<GetUserProfileResponse>, Status> {
        ServiceCaller::of(&request)?;
        let user_id = errors::parse_uuid("user_id", &request.get_ref().user_id)?;
        Ok(Response::new(GetUserProfileResponse {
            profile: Some(self.profile(user_id).await?),
        }))
    }

    async fn get_user_address(
        &self,
        request: Request<GetUserAddressRequest>,
    ) -> Result<Response<GetUserAddressResponse>, Status> {
        ServiceCaller::of(&request)?;
        let request = request.get_ref();
        let mut violations = FieldViolations::new();
        let mut parse = |field: &str, raw: &str| {
            Uuid::parse_str(raw).unwrap_or_else(|_| {
                violations.add(field, "must be a UUID");
                Uuid::nil()
            })
        };
        let user_id = parse("user_id", &request.user_id);
        let address_id = parse("address_id", &request.address_id);
        violations.into_result()?;
        let address = self
            .store
            .user_address(user_id, address_id)
            .await
            .map_err(UserError::from)?
            // Names the id as the caller spelled it, as this RPC always has
            // (`UserError::AddressNotFound` would print the canonical form).
            .ok_or_else(|| errors::not_found(ErrorReason::AddressNotFound, &request.address_id))?;
        Ok(Response::new(GetUserAddressResponse {
            address: Some(address.into()),
        }))
    }
}
