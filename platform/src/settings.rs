//! Typed settings from environment variables (12-factor), validated at start.
//!
//! Settings are read through an [`Env`] rather than `std::env` directly so tests
//! can hand in a map: mutating the process environment is `unsafe` in Rust 2024
//! and races with other tests.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// A bad or missing setting. The message always names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {variable}: {reason}")]
pub struct SettingsError {
    pub variable: String,
    pub reason: String,
}

/// Where settings come from: the process environment, or a map in tests.
#[derive(Clone, Debug, Default)]
pub struct Env {
    overrides: Option<HashMap<String, String>>,
}

impl Env {
    /// The process environment.
    pub fn process() -> Self {
        Self { overrides: None }
    }

    /// A fixed set of variables, nothing from the process (for tests).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Self {
            overrides: Some(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.into(), v.into()))
                    .collect(),
            ),
        }
    }

    /// Returns a copy with `name` set to `value` (for tests layering settings).
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.overrides
            .get_or_insert_with(HashMap::new)
            .insert(name.to_owned(), value.into());
        self
    }

    /// The raw value, with empty strings treated as unset.
    pub fn raw(&self, name: &str) -> Option<String> {
        let value = match &self.overrides {
            Some(map) => map.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// A required variable parsed as `T`.
    pub fn required<T>(&self, name: &str) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(name) {
            Some(raw) => parse(name, &raw),
            None => Err(SettingsError {
                variable: name.to_owned(),
                reason: "is required but not set".to_owned(),
            }),
        }
    }

    /// An optional variable parsed as `T`, `default` when unset.
    pub fn or<T>(&self, name: &str, default: T) -> Result<T, SettingsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.optional(name).map(|v| v.unwrap_or(default))
    }

    /// An optional variable parsed as `T`.
    pub fn optional<T>(&self, name: &str) -> Result<Option<T>, SettingsError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        self.raw(name).map(|raw| parse(name, &raw)).transpose()
    }

    /// A variable parsed as `T`, `default` when unset, which must lie in `range`.
    pub fn within<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, SettingsError>
    where
        T: FromStr + PartialOrd + fmt::Display,
        T::Err: fmt::Display,
    {
        let value: T = self.or(name, default)?;
        if !range.contains(&value) {
            return Err(SettingsError {
                variable: name.to_owned(),
                reason: format!("{value} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(value)
    }

    /// Whole seconds, at least 1 and at most one day.
    pub fn seconds(&self, name: &str, default: u64) -> Result<Duration, SettingsError> {
        let secs: u64 = self.or(name, default)?;
        if !(1..=86_400).contains(&secs) {
            return Err(SettingsError {
                variable: name.to_owned(),
                reason: format!("{secs} is outside 1..=86400 seconds"),
            });
        }
        Ok(Duration::from_secs(secs))
    }

    /// A callee's gRPC URL (`<NAME>_GRPC_URL`), `default` when unset; it must
    /// be http:// or https://, as tonic's `Endpoint` needs.
    pub fn grpc_url(&self, name: &str, default: &str) -> Result<String, SettingsError> {
        let url: String = self.or(name, default.to_owned())?;
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(SettingsError {
                variable: name.to_owned(),
                reason: format!("{url:?} must be an http:// or https:// URL"),
            });
        }
        Ok(url)
    }
}

fn parse<T>(name: &str, raw: &str) -> Result<T, SettingsError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    raw.trim().parse().map_err(|err: T::Err| SettingsError {
        variable: name.to_owned(),
        reason: format!("{raw:?} is not valid: {err}"),
    })
}

/// A secret value (a URL with a password, a key) that never prints.
#[derive(Clone)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The secret itself; call only where it is used, never to log.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T: FromStr> FromStr for Secret<T> {
    type Err = T::Err;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Secret)
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!("expected json or pretty, got {other:?}")),
        }
    }
}

/// Logging and tracing settings, shared by services and the gateway.
#[derive(Clone, Debug)]
pub struct TelemetrySettings {
    pub service_name: String,
    pub log_format: LogFormat,
    pub log_filter: String,
    pub otlp_endpoint: Option<String>,
}

impl TelemetrySettings {
    pub fn from_env(env: &Env, binary: &str) -> Result<Self, SettingsError> {
        let otlp_endpoint: Option<String> = env.optional("OTEL_EXPORTER_OTLP_ENDPOINT")?;
        if let Some(endpoint) = &otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(SettingsError {
                variable: "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                reason: format!("{endpoint:?} must be an http:// or https:// URL"),
            });
        }
        Ok(Self {
            service_name: env.or("OTEL_SERVICE_NAME", binary.to_owned())?,
            log_format: env.or("LOG_FORMAT", LogFormat::Json)?,
            log_filter: env.or("RUST_LOG", "info".to_owned())?,
            otlp_endpoint,
        })
    }
}

/// PostgreSQL pool settings.
#[derive(Clone, Debug)]
pub struct DatabaseSettings {
    /// Full URL whose path names this service's own database.
    pub url: Secret<String>,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let url: Secret<String> = env.required("DATABASE_URL")?;
        if !(url.expose().starts_with("postgres://") || url.expose().starts_with("postgresql://")) {
            return Err(SettingsError {
                variable: "DATABASE_URL".to_owned(),
                reason: "must be a postgres:// URL".to_owned(),
            });
        }
        let max_connections: u32 = env.within("DB_MAX_CONNECTIONS", 10, 1..=1000)?;
        Ok(Self {
            url,
            max_connections,
            acquire_timeout: env.seconds("DB_ACQUIRE_TIMEOUT_SECONDS", 5)?,
        })
    }
}

/// Redis settings.
#[derive(Clone, Debug)]
pub struct RedisSettings {
    pub url: Secret<String>,
    /// How long any one command may wait, queued while disconnected included
    /// (`REDIS_COMMAND_TIMEOUT_MS`): during a failover or an outage a request
    /// fails within this instead of hanging. Long enough to ride out a Sentinel
    /// failover on loopback (3.5–3.9 s measured with a 1 s down-after).
    pub command_timeout: Duration,
}

impl RedisSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let url: Secret<String> = env.or(
            "REDIS_URL",
            Secret::new("redis://127.0.0.1:6379".to_owned()),
        )?;
        let scheme_ok = ["redis://", "rediss://", "redis-sentinel://"]
            .iter()
            .any(|scheme| url.expose().starts_with(scheme));
        if !scheme_ok {
            return Err(SettingsError {
                variable: "REDIS_URL".to_owned(),
                reason: "must be a redis://, rediss:// or redis-sentinel:// URL".to_owned(),
            });
        }
        let millis: u64 = env.within("REDIS_COMMAND_TIMEOUT_MS", 5_000, 1..=60_000)?;
        Ok(Self {
            url,
            command_timeout: Duration::from_millis(millis),
        })
    }
}

/// What every service needs to check callers: where the signing keys are, what
/// tokens must say, and the credential services present to each other.
#[derive(Clone, Debug)]
pub struct AuthSettings {
    /// svc-auth's gRPC URL, for the JWKS.
    pub auth_url: String,
    pub issuer: String,
    pub audience: String,
    /// Shared by the services for INTERNAL methods (Istio adds workload identity in a cluster).
    pub internal_token: Secret<String>,
}

impl AuthSettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let internal_token: Secret<String> = env.required("INTERNAL_SERVICE_TOKEN")?;
        if internal_token.expose().len() < 16 || !internal_token.expose().is_ascii() {
            return Err(SettingsError {
                variable: "INTERNAL_SERVICE_TOKEN".to_owned(),
                reason: "must be at least 16 ASCII characters".to_owned(),
            });
        }
        let auth_url: String = env.or("AUTH_GRPC_URL", "http://127.0.0.1:50051".to_owned())?;
        if !(auth_url.starts_with("http://") || auth_url.starts_with("https://")) {
            return Err(SettingsError {
                variable: "AUTH_GRPC_URL".to_owned(),
                reason: format!("{auth_url:?} must be an http:// or https:// URL"),
            });
        }
        Ok(Self {
            auth_url,
            issuer: env.or("JWT_ISSUER", "shopmesh".to_owned())?,
            audience: env.or("JWT_AUDIENCE", "shopmesh".to_owned())?,
            internal_token,
        })
    }
}

/// A `host:port` listen address with a default port.
pub fn listen_addr(env: &Env, name: &str, default_port: u16) -> Result<SocketAddr, SettingsError> {
    env.or(name, SocketAddr::from(([0, 0, 0, 0], default_port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_urls_must_be_http_and_name_their_variable() {
        let env = Env::from_pairs([("A_GRPC_URL", "https://a:1"), ("B_GRPC_URL", "b:2")]);
        assert_eq!(
            env.grpc_url("A_GRPC_URL", "http://x:1").unwrap(),
            "https://a:1"
        );
        assert_eq!(
            env.grpc_url("C_GRPC_URL", "http://x:1").unwrap(),
            "http://x:1"
        );
        let err = env.grpc_url("B_GRPC_URL", "http://x:1").unwrap_err();
        assert_eq!(err.variable, "B_GRPC_URL");
        assert!(err.reason.contains("http://"), "{}", err.reason);
    }

    #[test]
    fn missing_required_variable_is_named() {
        let err = DatabaseSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    }

    #[test]
    fn malformed_values_are_refused_with_their_name() {
        let env = Env::from_pairs([("GRPC_ADDR", "not-an-address")]);
        let err = listen_addr(&env, "GRPC_ADDR", 1).unwrap_err();
        assert_eq!(err.variable, "GRPC_ADDR");
        assert!(err.reason.contains("not-an-address"));

        let env = Env::from_pairs([
            ("DATABASE_URL", "postgres://x/db"),
            ("DB_MAX_CONNECTIONS", "0"),
        ]);
        assert_eq!(
            DatabaseSettings::from_env(&env).unwrap_err().variable,
            "DB_MAX_CONNECTIONS"
        );

        let env = Env::from_pairs([("LOG_FORMAT", "xml")]);
        assert_eq!(
            TelemetrySettings::from_env(&env, "x").unwrap_err().variable,
            "LOG_FORMAT"
        );

        let env = Env::from_pairs([("REDIS_URL", "http://nope")]);
        assert_eq!(
            RedisSettings::from_env(&env).unwrap_err().variable,
            "REDIS_URL"
        );

        let env = Env::from_pairs([("SHUTDOWN_DRAIN_SECONDS", "0")]);
        assert_eq!(
            env.seconds("SHUTDOWN_DRAIN_SECONDS", 15)
                .unwrap_err()
                .variable,
            "SHUTDOWN_DRAIN_SECONDS"
        );
    }

    #[test]
    fn defaults_apply_and_empty_means_unset() {
        let env = Env::from_pairs([("GRPC_ADDR", "  ")]);
        assert_eq!(listen_addr(&env, "GRPC_ADDR", 50053).unwrap().port(), 50053);
        let telemetry = TelemetrySettings::from_env(&env, "svc-x").unwrap();
        assert_eq!(telemetry.log_format, LogFormat::Json);
        assert_eq!(telemetry.service_name, "svc-x");
    }

    #[test]
    fn the_internal_token_is_required_and_long_enough() {
        let err = AuthSettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap_err();
        assert_eq!(err.variable, "INTERNAL_SERVICE_TOKEN");
        let err = AuthSettings::from_env(&Env::from_pairs([("INTERNAL_SERVICE_TOKEN", "short")]))
            .unwrap_err();
        assert_eq!(err.variable, "INTERNAL_SERVICE_TOKEN");
        let ok = AuthSettings::from_env(&Env::from_pairs([(
            "INTERNAL_SERVICE_TOKEN",
            "a-long-enough-token",
        )]))
        .unwrap();
        assert!(!format!("{ok:?}").contains("a-long-enough-token"));
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_pairs([("DATABASE_URL", "postgres://u:hunter2@h/db")]);
        let db = DatabaseSettings::from_env(&env).unwrap();
        assert!(!format!("{db:?}").contains("hunter2"));
    }
}
