//! Where a shopper's messages go: email and phone from svc-user's profile,
//! read when a notification is sent (so a changed address is honoured).

use std::time::Duration;

use shopmesh_platform::auth::ServiceCredentials;
use shopmesh_platform::clients::{Authenticated, LazyChannel};
use shopmesh_proto::shop::user::v1::GetUserProfileRequest;
use shopmesh_proto::shop::user::v1::user_service_client::UserServiceClient;
use tonic::Code;
use uuid::Uuid;

/// svc-user as svc-notification calls it: connect within 2 s, every call within 5 s.
const USER_SERVICE: LazyChannel =
    LazyChannel::new(Duration::from_secs(2)).call_timeout(Duration::from_secs(5));

#[derive(Clone, Debug)]
pub struct Contact {
    pub email: String,
    /// E.164; empty for none.
    pub phone: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("svc-user has no profile for this user")]
    NotFound,
    /// Down, overloaded or refusing: try again later.
    #[error("svc-user: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub struct Recipients {
    client: UserServiceClient<Authenticated>,
}

impl Recipients {
    /// Connects lazily: the service starts and queues while svc-user is down.
    pub fn new(user_url: &str, credentials: ServiceCredentials) -> anyhow::Result<Self> {
        Ok(Self {
            client: UserServiceClient::new(USER_SERVICE.authenticated(user_url, credentials)?),
        })
    }

    pub async fn contact(&self, user_id: Uuid) -> Result<Contact, LookupError> {
        let request = GetUserProfileRequest {
            user_id: user_id.to_string(),
        };
        match self.client.clone().get_user_profile(request).await {
            Ok(response) => {
                let profile = response.into_inner().profile.unwrap_or_default();
                Ok(Contact {
                    email: profile.email,
                    phone: profile.phone,
                })
            }
            Err(status) if status.code() == Code::NotFound => Err(LookupError::NotFound),
            Err(status) => Err(LookupError::Unavailable(format!(
                "{:?}: {}",
                status.code(),
                status.message()
            ))),
        }
    }
}
