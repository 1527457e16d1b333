//! svc-payment's own settings, on top of the ones every service has.

use std::sync::Arc;
use std::time::Duration;

use shopmesh_platform::settings::{Env, Secret, SettingsError};

use crate::provider::http::HttpProvider;
use crate::provider::simulated::SimulatedNetwork;
use crate::provider::{PaymentProvider, Provider};

/// The simulated network's token key when none is set. The simulated network
/// only ever moves pretend money, so a forged token gains nothing; set
/// `PAYMENT_SIMULATED_TOKEN_KEY` anyway wherever tokens should not be mintable.
const DEV_TOKEN_KEY: &str = "shopmesh-simulated-card-network-development-key";

#[derive(Clone, Debug)]
pub enum ProviderSettings {
    /// `PAYMENT_PROVIDER=simulated` (the default).
    Simulated {
        /// `PAYMENT_SIMULATED_TOKEN_KEY`: HMAC key of the network's card tokens
        /// (at least 16 characters); every replica needs the same one.
        token_key: Secret<String>,
    },
    /// `PAYMENT_PROVIDER=http`.
    Http {
        /// `PAYMENT_HTTP_BASE_URL`, e.g. `http://payment-provider.egress:8080`.
        base_url: String,
        /// `PAYMENT_HTTP_API_KEY`, sent as a bearer token.
        api_key: Secret<String>,
    },
}

#[derive(Clone, Debug)]
pub struct PaymentSettings {
    pub provider: ProviderSettings,
    /// `PAYMENT_PROVIDER_TIMEOUT_MS` (50 to 60000, default 3000): how long a
    /// provider call may take before the payment is left PENDING and the
    /// caller gets UNAVAILABLE.
    pub provider_timeout: Duration,
}

impl PaymentSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let timeout_ms: u64 = env.or("PAYMENT_PROVIDER_TIMEOUT_MS", 3000)?;
        if !(50..=60_000).contains(&timeout_ms) {
            return Err(invalid(
                "PAYMENT_PROVIDER_TIMEOUT_MS",
                format!("{timeout_ms} is outside 50..=60000 milliseconds"),
            ));
        }
        let kind: String = env.or("PAYMENT_PROVIDER", "simulated".to_owned())?;
        let provider = match kind.as_str() {
            "simulated" => {
                let token_key: Secret<String> = env.or(
                    "PAYMENT_SIMULATED_TOKEN_KEY",
                    Secret::new(DEV_TOKEN_KEY.to_owned()),
                )?;
                if token_key.expose().len() < 16 {
                    return Err(invalid(
                        "PAYMENT_SIMULATED_TOKEN_KEY",
                        "must be at least 16 characters",
                    ));
                }
                ProviderSettings::Simulated { token_key }
            }
            "http" => {
                let base_url: String = env.required("PAYMENT_HTTP_BASE_URL")?;
                // The workspace's reqwest is built without a TLS stack: TLS to
                // the provider is originated by the mesh's egress gateway
                // (docs/payments.md), so the service itself speaks http://.
                if !base_url.starts_with("http://") {
                    return Err(invalid(
                        "PAYMENT_HTTP_BASE_URL",
                        format!(
                            "{base_url:?} must be an http:// URL (this build has no TLS client; \
                             originate TLS at the egress gateway)"
                        ),
                    ));
                }
                let api_key: Secret<String> = env.required("PAYMENT_HTTP_API_KEY")?;
                if api_key.expose().trim().is_empty() {
                    return Err(invalid("PAYMENT_HTTP_API_KEY", "must not be empty"));
                }
                ProviderSettings::Http { base_url, api_key }
            }
            other => {
                return Err(invalid(
                    "PAYMENT_PROVIDER",
                    format!("{other:?} is not one of simulated, http"),
                ));
            }
        };
        Ok(Self {
            provider,
            provider_timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// The configured provider, bounded by the provider timeout.
    pub fn provider(&self) -> anyhow::Result<Provider> {
        let inner: Arc<dyn PaymentProvider> = match &self.provider {
            ProviderSettings::Simulated { token_key } => Arc::new(SimulatedNetwork::new(token_key)),
            ProviderSettings::Http { base_url, api_key } => Arc::new(HttpProvider::new(
                base_url,
                api_key.clone(),
                self.provider_timeout,
            )?),
        };
        Ok(Provider::new(inner, self.provider_timeout))
    }
}

fn invalid(variable: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError {
        variable: variable.to_owned(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_the_simulated_network_and_three_seconds() {
        let settings = PaymentSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert!(matches!(
            settings.provider,
            ProviderSettings::Simulated { .. }
        ));
        assert_eq!(settings.provider_timeout, Duration::from_secs(3));
        assert_eq!(settings.provider().unwrap().name(), "simulated");
    }

    #[test]
    fn the_http_provider_needs_a_url_and_a_key_that_never_prints() {
        let env = Env::from_pairs([
            ("PAYMENT_PROVIDER", "http"),
            (
                "PAYMENT_HTTP_BASE_URL",
                "http://payment-provider.egress:8080",
            ),
            ("PAYMENT_HTTP_API_KEY", "sk_live_very_secret"),
        ]);
        let settings = PaymentSettings::from_env(&env).unwrap();
        assert!(!format!("{settings:?}").contains("sk_live_very_secret"));
        assert_eq!(settings.provider().unwrap().name(), "http");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (pairs, variable) in [
            (vec![("PAYMENT_PROVIDER", "stripe")], "PAYMENT_PROVIDER"),
            (
                vec![("PAYMENT_PROVIDER_TIMEOUT_MS", "10")],
                "PAYMENT_PROVIDER_TIMEOUT_MS",
            ),
            (
                vec![("PAYMENT_PROVIDER_TIMEOUT_MS", "soon")],
                "PAYMENT_PROVIDER_TIMEOUT_MS",
            ),
            (
                vec![("PAYMENT_SIMULATED_TOKEN_KEY", "short")],
                "PAYMENT_SIMULATED_TOKEN_KEY",
            ),
            (vec![("PAYMENT_PROVIDER", "http")], "PAYMENT_HTTP_BASE_URL"),
            (
                vec![
                    ("PAYMENT_PROVIDER", "http"),
                    ("PAYMENT_HTTP_BASE_URL", "api.provider.example"),
                ],
                "PAYMENT_HTTP_BASE_URL",
            ),
            (
                vec![
                    ("PAYMENT_PROVIDER", "http"),
                    ("PAYMENT_HTTP_BASE_URL", "https://api.provider.example"),
                ],
                "PAYMENT_HTTP_BASE_URL",
            ),
            (
                vec![
                    ("PAYMENT_PROVIDER", "http"),
                    (
                        "PAYMENT_HTTP_BASE_URL",
                        "http://payment-provider.egress:8080",
                    ),
                ],
                "PAYMENT_HTTP_API_KEY",
            ),
        ] {
            let err = PaymentSettings::from_env(&Env::from_pairs(pairs)).unwrap_err();
            assert_eq!(err.variable, variable);
        }
    }
}
