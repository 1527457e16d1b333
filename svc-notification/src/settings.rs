//! svc-notification's own settings, on top of the ones every service has.

use std::time::Duration;

use shopmesh_platform::settings::{Env, Secret, SettingsError};

#[derive(Clone, Debug)]
pub struct NotificationSettings {
    /// Where email goes (`SMTP_URL`, required): `smtp://host:port` for plain
    /// SMTP, or `log:` to only log messages (`make run`, no mail server).
    pub smtp_url: String,
    /// The From address (`SMTP_FROM`, default `shopmesh <no-reply@shopmesh.invalid>`).
    pub smtp_from: String,
    /// The SMS provider's send endpoint (`SMS_PROVIDER_URL`); unset logs SMS instead.
    pub sms_url: Option<String>,
    /// The SMS provider's API key (`SMS_PROVIDER_API_KEY`), sent as a bearer token.
    pub sms_api_key: Secret<String>,
    /// svc-user, for recipients' email and phone (`USER_GRPC_URL`).
    pub user_url: String,
    /// Provider attempts before a notification FAILs (`NOTIFICATION_MAX_ATTEMPTS`, 5).
    pub max_attempts: i32,
    /// Longest wait between two attempts (`NOTIFICATION_MAX_BACKOFF_SECONDS`, 300).
    pub max_backoff: Duration,
    /// The Kafka consumer group (`NOTIFICATION_CONSUMER_GROUP`, `svc-notification`);
    /// every replica must use the same one. Tests give each service its own.
    pub consumer_group: String,
}

fn invalid(variable: &str, reason: String) -> SettingsError {
    SettingsError {
        variable: variable.to_owned(),
        reason,
    }
}

impl NotificationSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let smtp_url: String = env.required("SMTP_URL")?;
        if !(smtp_url == "log:" || smtp_url.starts_with("smtp://")) {
            return Err(invalid(
                "SMTP_URL",
                format!("{smtp_url:?} must be smtp://host:port or log:"),
            ));
        }
        let smtp_from: String = env.or(
            "SMTP_FROM",
            "shopmesh <no-reply@shopmesh.invalid>".to_owned(),
        )?;
        if smtp_from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(invalid(
                "SMTP_FROM",
                format!("{smtp_from:?} is not an email address"),
            ));
        }
        let sms_url: Option<String> = env.optional("SMS_PROVIDER_URL")?;
        if let Some(url) = &sms_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid(
                "SMS_PROVIDER_URL",
                format!("{url:?} must be an http:// or https:// URL"),
            ));
        }
        let sms_api_key: Secret<String> =
            env.or("SMS_PROVIDER_API_KEY", Secret::new(String::new()))?;
        if sms_url.is_some() && sms_api_key.expose().is_empty() {
            return Err(invalid(
                "SMS_PROVIDER_API_KEY",
                "must be set when SMS_PROVIDER_URL is".to_owned(),
            ));
        }
        let user_url: String = env.or("USER_GRPC_URL", "http://127.0.0.1:50052".to_owned())?;
        if !(user_url.starts_with("http://") || user_url.starts_with("https://")) {
            return Err(invalid(
                "USER_GRPC_URL",
                format!("{user_url:?} must be an http:// or https:// URL"),
            ));
        }
        let max_attempts: i32 = env.or("NOTIFICATION_MAX_ATTEMPTS", 5)?;
        if max_attempts < 1 {
            return Err(invalid(
                "NOTIFICATION_MAX_ATTEMPTS",
                "must be at least 1".to_owned(),
            ));
        }
        Ok(Self {
            smtp_url,
            smtp_from,
            sms_url,
            sms_api_key,
            user_url,
            max_attempts,
            max_backoff: env.seconds("NOTIFICATION_MAX_BACKOFF_SECONDS", 300)?,
            consumer_group: env.or("NOTIFICATION_CONSUMER_GROUP", "svc-notification".to_owned())?,
        })
    }
}
