//! Identity rules independent of gRPC: registering, signing in, refreshing and
//! ending sessions, and roles.

use std::collections::HashSet;
use std::time::Duration;

use shopmesh_platform::auth::{ADMIN_ROLE, SessionStore};
use uuid::Uuid;

use crate::credentials::{Email, PasswordHasher};
use crate::error::IdentityError;
use crate::events;
use crate::keys::{KeyRing, Rotation};
use crate::login_limit::LoginLimiter;
use crate::profiles::{ATTEMPT_LEASE, ProfileSync};
use crate::settings::ACCESS_TOKEN_TTL;
use crate::store::{NewRefreshToken, NewUser, RoleRevocation, Store};
use crate::tokens::{AccessTokenIssuer, RefreshToken};

/// Roles GrantRole knows.
pub const KNOWN_ROLES: &[&str] = &[ADMIN_ROLE];

type Result<T, E = IdentityError> = std::result::Result<T, E>;

/// A validated registration.
#[derive(Debug)]
pub struct Registration {
    pub email: Email,
    pub password: String,
    pub display_name: String,
}

/// The tokens of a session, fresh from issue.
#[derive(Debug)]
pub struct SessionTokens {
    pub access_token: String,
    pub access_expires_in: Duration,
    pub refresh_token: String,
    pub refresh_expires_in: Duration,
}

pub struct Identity {
    pub store: Store,
    pub hasher: PasswordHasher,
    pub keys: KeyRing,
    pub issuer: AccessTokenIssuer,
    pub sessions: SessionStore,
    pub limiter: LoginLimiter,
    pub profiles: ProfileSync,
    pub refresh_ttl: Duration,
    /// Comparison forms of the emails that become admins (BOOTSTRAP_ADMIN_EMAILS).
    pub bootstrap_admins: HashSet<String>,
}

impl Identity {
    /// Creates the account (and its admin role when bootstrapped), owes it a
    /// profile in the same transaction, creates the profile, signs it in.
    #[tracing::instrument(skip_all)]
    pub async fn register(&self, registration: Registration) -> Result<(Uuid, SessionTokens)> {
        let Registration {
            email,
            password,
            display_name,
        } = registration;
        let password_hash = self.hasher.hash(&password).await?;
        let user_id = Uuid::now_v7();
        let mut tx = self.store.begin().await?;
        let user = NewUser {
            id: user_id,
            email: &email.given,
            email_key: &email.key,
            password_hash: &password_hash,
            display_name: &display_name,
        };
        if !Store::insert_user(&mut tx, &user).await? {
            return Err(IdentityError::EmailTaken);
        }
        if self.bootstrap_admins.contains(&email.key) {
            Store::insert_role(&mut tx, user_id, ADMIN_ROLE).await?;
            tracing::info!(%user_id, "bootstrap admin registered");
        }
        Store::insert_pending_profile(&mut tx, user_id, ATTEMPT_LEASE).await?;
        // In the same transaction: no account without its event, no event
        // without its account (svc-notification sends the welcome email).
        let registered = events::user_registered(user_id, &email.given, &display_name);
        events::publish_user_registered(&mut tx, &registered)
            .await
            .map_err(|err| IdentityError::Internal(err.into()))?;
        tx.commit().await?;
        tracing::info!(%user_id, "account registered");

        self.profiles
            .create_now(user_id, &email.given, &display_name)
            .await;
        let tokens = self.start_session(user_id).await?;
        Ok((user_id, tokens))
    }

    /// Signs in. Unknown email and wrong password fail alike, and take as long.
    #[tracing::instrument(skip_all)]
    pub async fn login(&self, email: &str, password: &str, client: &str) -> Result<SessionTokens> {
        let email_key = Email::key_of(email);
        if let Some(retry_after) = self.limiter.admit(&email_key, client).await? {
            tracing::info!(client, "sign-in refused: too many failures");
            return Err(IdentityError::TooManyAttempts { retry_after });
        }
        let account = self.store.credentials(&email_key).await?;
        let matches = self
            .hasher
            .verify(password, account.as_ref().map(|a| a.password_hash.as_str()))
            .await?;
        // A failure stays counted: `admit` counted it already.
        let Some(account) = account.filter(|_| matches) else {
            return Err(IdentityError::InvalidCredentials);
        };
        self.limiter.succeeded(&email_key, client).await?;
        self.start_session(account.id).await
    }

    /// Opens a session (UUIDv7) in Redis, with a new refresh-token family and
    /// an access token carrying the user's current roles.
    async fn start_session(&self, user_id: Uuid) -> Result<SessionTokens> {
        let session_id = Uuid::now_v7();
        let roles = self.store.roles(user_id).await?;
        self.sessions
            .open(session_id, user_id, self.refresh_ttl)
            .await?;
        let refresh = RefreshToken::generate();
        self.store
            .insert_refresh_token_now(&NewRefreshToken {
                token_hash: &refresh.hash,
                user_id,
                session_id,
                family_id: Uuid::now_v7(),
                ttl: self.refresh_ttl,
            })
            .await?;
        self.tokens(user_id, session_id, roles, refresh).await
    }

    async fn tokens(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        roles: Vec<String>,
        refresh: RefreshToken,
    ) -> Result<SessionTokens> {
        Ok(SessionTokens {
            access_token: self.issuer.issue(user_id, session_id, roles).await?,
            access_expires_in: ACCESS_TOKEN_TTL,
            refresh_token: refresh.token,
            refresh_expires_in: self.refresh_ttl,
        })
    }

    /// Rotates a refresh token: the presented one is spent, a new one (same
    /// session, same family) and a new access token come back. A spent token
    /// presented again means two parties hold it: the session is revoked.
    #[tracing::instrument(skip_all)]
    pub async fn refresh(&self, presented: &str) -> Result<SessionTokens> {
        let hash = RefreshToken::hash_of(presented);
        let mut tx = self.store.begin().await?;
        let Some(stored) = Store::refresh_token_for_update(&mut tx, &hash).await? else {
            return Err(IdentityError::InvalidRefreshToken);
        };
        let (user_id, session_id) = (stored.user_id, stored.session_id);
        if stored.used_at.is_some() {
            // Redis first: if it is down, nothing changes and the next try decides again.
            self.sessions.revoke(session_id, user_id).await?;
            Store::revoke_family(&mut tx, stored.family_id).await?;
            tx.commit().await?;
            tracing::warn!(%user_id, %session_id, "refresh token reused: session revoked");
            return Err(IdentityError::RefreshTokenReused);
        }
        if stored.revoked_at.is_some() || stored.expires_at <= chrono::Utc::now() {
            return Err(IdentityError::InvalidRefreshToken);
        }
        if !self
            .sessions
            .extend(session_id, user_id, self.refresh_ttl)
            .await?
        {
            // Logged out or expired in Redis: the family is dead too.
            Store::revoke_family(&mut tx, stored.family_id).await?;
            tx.commit().await?;
            return Err(IdentityError::InvalidRefreshToken);
        }
        Store::mark_refresh_token_used(&mut tx, stored.id).await?;
        let refresh = RefreshToken::generate();
        Store::insert_refresh_token(
            &mut tx,
            &NewRefreshToken {
                token_hash: &refresh.hash,
                user_id,
                session_id,
                family_id: stored.family_id,
                ttl: self.refresh_ttl,
            },
        )
        .await?;
        tx.commit().await?;
        let roles = self.store.roles(user_id).await?;
        self.tokens(user_id, session_id, roles, refresh).await
    }

    /// Ends one session: its access token is refused at the next call
    /// everywhere, its refresh token at once.
    pub async fn logout(&self, user_id: Uuid, session_id: Uuid) -> Result<()> {
        self.sessions.revoke(session_id, user_id).await?;
        self.store.revoke_session_tokens(session_id).await?;
        Ok(())
    }

    /// Ends every session of a user; returns how many were live.
    pub async fn logout_all(&self, user_id: Uuid) -> Result<usize> {
        let live = self.sessions.revoke_all(user_id).await?;
        self.store.revoke_user_tokens(user_id).await?;
        tracing::info!(%user_id, sessions = live, "all sessions revoked");
        Ok(live)
    }

    pub async fn grant_role(&self, user_id: Uuid, role: &str) -> Result<Vec<String>> {
        let roles = self
            .store
            .grant_role(user_id, role)
            .await?
            .ok_or(IdentityError::UserNotFound(user_id))?;
        tracing::info!(%user_id, role, "role granted");
        Ok(roles)
    }

    /// Revokes a role and every session of the user, so the role stops working
    /// now rather than when the access token expires. The sessions go even when
    /// the role was already gone, so a retry after a failure still revokes them.
    pub async fn revoke_role(&self, user_id: Uuid, role: &str) -> Result<Vec<String>> {
        let roles = match self.store.revoke_role(user_id, role).await? {
            RoleRevocation::UnknownUser => return Err(IdentityError::UserNotFound(user_id)),
            RoleRevocation::LastAdmin => return Err(IdentityError::LastAdmin),
            RoleRevocation::Done(roles) => roles,
        };
        self.logout_all(user_id).await?;
        tracing::info!(%user_id, role, "role revoked");
        Ok(roles)
    }

    pub async fn jwks(&self) -> Result<Vec<shopmesh_platform::auth::Jwk>> {
        Ok(self.keys.published().await?)
    }

    pub async fn rotate_signing_key(&self) -> Result<Rotation> {
        Ok(self.keys.rotate().await?)
    }
}
