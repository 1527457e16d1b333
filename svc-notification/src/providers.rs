//! Where messages leave the shop: email over SMTP (lettre) and SMS through an
//! HTTP provider. Each send carries a key derived from the notification id —
//! the email's `Message-ID`, the SMS request's `Idempotency-Key` — so a resend
//! after a crash between "sent" and "marked sent" can be recognised downstream.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use shopmesh_platform::settings::Secret;
use uuid::Uuid;

use crate::settings::NotificationSettings;

/// Why a send did not go through.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// No retry can help (a 5xx from SMTP, a 4xx other than 429 from the SMS API).
    pub permanent: bool,
    pub message: String,
}

impl SendError {
    fn transient(message: impl Into<String>) -> Self {
        Self {
            permanent: false,
            message: message.into(),
        }
    }

    fn permanent(message: impl Into<String>) -> Self {
        Self {
            permanent: true,
            message: message.into(),
        }
    }
}

/// One email to send.
pub struct Email<'a> {
    pub notification_id: Uuid,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// The `Message-ID` of a notification's email: the same on every attempt.
pub fn message_id(notification_id: Uuid) -> String {
    format!("<{notification_id}@notification.shopmesh>")
}

pub enum Mailer {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        from: Mailbox,
    },
    /// `SMTP_URL=log:`: messages are logged, not sent (local runs).
    Log,
}

/// `smtp://host:port` → (host, port); port 25 when absent.
fn smtp_address(url: &str) -> anyhow::Result<(String, u16)> {
    let rest = url
        .strip_prefix("smtp://")
        .ok_or_else(|| anyhow::anyhow!("SMTP_URL must start with smtp://"))?
        .trim_end_matches('/');
    anyhow::ensure!(
        !rest.contains('@') && !rest.contains('?'),
        "SMTP_URL: credentials and options are not supported (plain SMTP only)"
    );
    Ok(match rest.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse()?),
        None => (rest.to_owned(), 25),
    })
}

impl Mailer {
    pub fn from_settings(settings: &NotificationSettings) -> anyhow::Result<Self> {
        if settings.smtp_url == "log:" {
            return Ok(Self::Log);
        }
        let (host, port) = smtp_address(&settings.smtp_url)?;
        // Plain SMTP: the in-cluster relay or a local capture server. TLS needs
        // lettre's `tokio1-rustls-tls` feature (docs/notifications.md).
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(Duration::from_secs(10)))
            .build();
        Ok(Self::Smtp {
            transport,
            from: settings.smtp_from.parse()?,
        })
    }

    pub async fn send(&self, email: &Email<'_>) -> Result<(), SendError> {
        match self {
            Self::Log => {
                tracing::info!(
                    to = email.to,
                    subject = email.subject,
                    message_id = %message_id(email.notification_id),
                    body = email.body,
                    "email (SMTP_URL=log:, not sent)"
                );
                Ok(())
            }
            Self::Smtp { transport, from } => {
                let to: Mailbox = email
                    .to
                    .parse()
                    .map_err(|e| SendError::permanent(format!("recipient {:?}: {e}", email.to)))?;
                let message = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(email.subject)
                    .message_id(Some(message_id(email.notification_id)))
                    .header(ContentType::TEXT_PLAIN)
                    .body(email.body.to_owned())
                    .map_err(|e| SendError::permanent(format!("building the email: {e}")))?;
                transport.send(message).await.map(|_| ()).map_err(|e| {
                    if e.is_permanent() {
                        SendError::permanent(format!("smtp refused: {e}"))
                    } else {
                        SendError::transient(format!("smtp: {e}"))
                    }
                })
            }
        }
    }
}

/// One SMS to send.
pub struct Sms<'a> {
    pub notification_id: Uuid,
    pub to: &'a str,
    pub text: &'a str,
}

/// An SMS gateway.
pub trait SmsProvider: Send + Sync {
    fn send<'a>(&'a self, sms: &'a Sms<'a>) -> BoxFuture<'a, Result<(), SendError>>;
}

/// Builds the provider from settings: HTTP when `SMS_PROVIDER_URL` is set,
/// otherwise one that logs.
pub fn sms_provider(settings: &NotificationSettings) -> anyhow::Result<Arc<dyn SmsProvider>> {
    Ok(match &settings.sms_url {
        Some(url) => Arc::new(HttpSms::new(url.clone(), settings.sms_api_key.clone())?),
        None => Arc::new(LogSms),
    })
}

/// `POST <SMS_PROVIDER_URL>` with JSON `{"to", "text", "reference"}`,
/// `Authorization: Bearer <key>` and `Idempotency-Key: <notification id>`;
/// any 2xx is accepted.
pub struct HttpSms {
    client: reqwest::Client,
    url: String,
    api_key: Secret<String>,
}

impl HttpSms {
    pub fn new(url: String, api_key: Secret<String>) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            url,
            api_key,
        })
    }
}

impl SmsProvider for HttpSms {
    fn send<'a>(&'a self, sms: &'a Sms<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        Box::pin(async move {
            let body = serde_json::json!({
                "to": sms.to,
                "text": sms.text,
                "reference": sms.notification_id.to_string(),
            });
            let response = self
                .client
                .post(&self.url)
                .bearer_auth(self.api_key.expose())
                .header("Idempotency-Key", sms.notification_id.to_string())
                .json(&body)
                .send()
                .await
                .map_err(|e| SendError::transient(format!("sms provider: {e}")))?;
            let status = response.status();
            if status.is_success() {
                Ok(())
            } else if status.is_client_error() && status.as_u16() != 429 {
                Err(SendError::permanent(format!(
                    "sms provider refused: {status}"
                )))
            } else {
                Err(SendError::transient(format!("sms provider: {status}")))
            }
        })
    }
}

/// No provider configured: SMS are logged (local runs).
pub struct LogSms;

impl SmsProvider for LogSms {
    fn send<'a>(&'a self, sms: &'a Sms<'a>) -> BoxFuture<'a, Result<(), SendError>> {
        tracing::info!(
            to = sms.to,
            text = sms.text,
            "sms (no SMS_PROVIDER_URL, not sent)"
        );
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_urls_name_host_and_port() {
        assert_eq!(
            smtp_address("smtp://127.0.0.1:2525").unwrap_or_default(),
            ("127.0.0.1".to_owned(), 2525)
        );
        assert_eq!(
            smtp_address("smtp://mail.internal").unwrap_or_default(),
            ("mail.internal".to_owned(), 25)
        );
        assert!(smtp_address("smtp://u:p@mail:25").is_err());
        assert!(smtp_address("smtps://mail:465").is_err());
    }

    #[test]
    fn the_message_id_is_stable_per_notification() {
        let id = Uuid::now_v7();
        assert_eq!(message_id(id), message_id(id));
        assert_eq!(message_id(id), format!("<{id}@notification.shopmesh>"));
    }
}
