//! svc-auth's own settings, on top of the ones every service has (issuer,
//! audience and the internal token come from `settings.auth`).

use std::time::Duration;

use shopmesh_platform::settings::{Env, SettingsError};

use crate::credentials::Email;

/// How long an access token lives. Short, because it is verified without a
/// round trip; revocation reaches it through the session check instead.
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

#[derive(Clone, Debug)]
pub struct AuthServiceSettings {
    /// svc-user, for CreateProfile (`USER_GRPC_URL`).
    pub user_url: String,
    /// Lifetime of a refresh token and of its session (`REFRESH_TOKEN_TTL_HOURS`).
    pub refresh_ttl: Duration,
    /// How long a key signs before it is replaced (`SIGNING_KEY_ROTATION_HOURS`).
    pub key_rotation: Duration,
    /// How often the rotation schedule is checked (`SIGNING_KEY_CHECK_SECONDS`).
    pub key_check_interval: Duration,
    /// Comparison forms of the emails that get the admin role (`BOOTSTRAP_ADMIN_EMAILS`).
    pub bootstrap_admins: Vec<String>,
    pub login_limits: LoginLimits,
    /// Longest wait between two CreateProfile retries (`PROFILE_RETRY_MAX_BACKOFF_SECONDS`).
    pub profile_retry_max_backoff: Duration,
}

/// Failed sign-ins tolerated before RESOURCE_EXHAUSTED, counted in a fixed
/// window that starts at the first failure.
#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Per account, whoever tries it (`LOGIN_MAX_FAILURES_PER_ACCOUNT`).
    pub per_account: u32,
    /// Per client address, whatever account it tries (`LOGIN_MAX_FAILURES_PER_CLIENT`).
    pub per_client: u32,
    /// `LOGIN_FAILURE_WINDOW_SECONDS`.
    pub window: Duration,
}

impl AuthServiceSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        Ok(Self {
            user_url: env.grpc_url("USER_GRPC_URL", "http://127.0.0.1:50052")?,
            refresh_ttl: hours(env, "REFRESH_TOKEN_TTL_HOURS", 720)?,
            key_rotation: hours(env, "SIGNING_KEY_ROTATION_HOURS", 720)?,
            key_check_interval: env.seconds("SIGNING_KEY_CHECK_SECONDS", 60)?,
            bootstrap_admins: bootstrap_admins(env)?,
            login_limits: LoginLimits {
                per_account: count(env, "LOGIN_MAX_FAILURES_PER_ACCOUNT", 5)?,
                per_client: count(env, "LOGIN_MAX_FAILURES_PER_CLIENT", 20)?,
                window: env.seconds("LOGIN_FAILURE_WINDOW_SECONDS", 900)?,
            },
            profile_retry_max_backoff: env.seconds("PROFILE_RETRY_MAX_BACKOFF_SECONDS", 300)?,
        })
    }
}

fn invalid(variable: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

/// Whole hours, 1 to 8760 (a year). A refresh lifetime must also fit the
/// `int32` seconds of `TokenPair.refresh_expires_in_seconds`, which a year does.
fn hours(env: &Env, name: &str, default: u64) -> Result<Duration, SettingsError> {
    let hours: u64 = env.or(name, default)?;
    if !(1..=8760).contains(&hours) {
        return Err(invalid(name, format!("{hours} is outside 1..=8760 hours")));
    }
    Ok(Duration::from_secs(hours * 3600))
}

fn count(env: &Env, name: &str, default: u32) -> Result<u32, SettingsError> {
    let n: u32 = env.or(name, default)?;
    if !(1..=10_000).contains(&n) {
        return Err(invalid(name, format!("{n} is outside 1..=10000")));
    }
    Ok(n)
}

fn bootstrap_admins(env: &Env) -> Result<Vec<String>, SettingsError> {
    let raw: String = env.or("BOOTSTRAP_ADMIN_EMAILS", String::new())?;
    let mut emails = Vec::new();
    for entry in raw.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let email = Email::parse(entry).map_err(|reason| {
            invalid(
                "BOOTSTRAP_ADMIN_EMAILS",
                format!("{entry:?} is not an email address: {reason}"),
            )
        })?;
        emails.push(email.key);
    }
    Ok(emails)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let settings = AuthServiceSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.user_url, "http://127.0.0.1:50052");
        assert_eq!(settings.refresh_ttl, Duration::from_secs(720 * 3600));
        assert_eq!(settings.key_rotation, Duration::from_secs(720 * 3600));
        assert!(settings.bootstrap_admins.is_empty());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("USER_GRPC_URL", "127.0.0.1:50052"),
            ("REFRESH_TOKEN_TTL_HOURS", "0"),
            ("SIGNING_KEY_ROTATION_HOURS", "forever"),
            ("BOOTSTRAP_ADMIN_EMAILS", "root@example.com, not-an-email"),
            ("LOGIN_MAX_FAILURES_PER_ACCOUNT", "0"),
        ] {
            let err = AuthServiceSettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name, "{value}");
        }
    }

    #[test]
    fn bootstrap_admins_are_compared_like_logins() {
        let env = Env::from_pairs([(
            "BOOTSTRAP_ADMIN_EMAILS",
            " Root@Example.COM ,ops@example.com,",
        )]);
        let settings = AuthServiceSettings::from_env(&env).unwrap();
        assert_eq!(
            settings.bootstrap_admins,
            ["root@example.com", "ops@example.com"]
        );
    }
}
