//! Gateway settings from the environment (see docs/conventions.md).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use shopmesh_platform::overload::OverloadSettings;
use shopmesh_platform::settings::{
    Env, RedisSettings, SettingsError, TelemetrySettings, listen_addr,
};

/// Each service's short name and default gRPC port.
pub const UPSTREAMS: [(&str, u16); 9] = [
    ("auth", 50051),
    ("user", 50052),
    ("product", 50053),
    ("inventory", 50054),
    ("cart", 50055),
    ("order", 50056),
    ("payment", 50057),
    ("notification", 50058),
    ("recommendation", 50059),
];

/// Which browser origins may call the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cors {
    Disabled,
    Any,
    Origins(Vec<http::HeaderValue>),
}

#[derive(Clone, Debug)]
pub struct GatewaySettings {
    pub http_addr: SocketAddr,
    pub metrics_addr: SocketAddr,
    /// Short service name → gRPC URL.
    pub upstreams: HashMap<String, String>,
    pub request_timeout: Duration,
    pub body_limit: usize,
    pub cors: Cors,
    pub drain: Duration,
    pub telemetry: TelemetrySettings,
    /// Sessions live in Redis: every signed-in request checks its session there.
    pub redis: RedisSettings,
    pub jwt_issuer: String,
    pub jwt_audience: String,
    /// How many proxies (the NGINX ingress: 1) append to `X-Forwarded-For` in
    /// front of the gateway; 0 trusts only the socket's peer address.
    pub trusted_proxy_hops: usize,
    /// Limits on the requests in flight (`OVERLOAD_*`; platform::overload).
    pub overload: OverloadSettings,
    /// `GATEWAY_CACHE_MB` (default 16, at most 4096): the bytes product pages
    /// may take in the edge cache; 0 turns it off, and no catalog stream is
    /// opened.
    pub edge_cache_bytes: usize,
    /// `GATEWAY_CACHE_TTL_SECONDS` (default 30, 1..=3600): the longest the
    /// edge cache serves a page, should an invalidation never arrive.
    pub edge_cache_ttl: Duration,
}

impl GatewaySettings {
    pub fn from_env(env: &Env) -> Result<Self, SettingsError> {
        let mut upstreams = HashMap::new();
        for (name, port) in UPSTREAMS {
            let variable = format!("{}_GRPC_URL", name.to_ascii_uppercase());
            let url: String = env.or(&variable, format!("http://127.0.0.1:{port}"))?;
            if http::Uri::try_from(url.as_str())
                .map(|u| u.scheme().is_none() || u.host().is_none())
                .unwrap_or(true)
            {
                return Err(SettingsError {
                    variable,
                    reason: format!("{url:?} is not an absolute http(s) URL"),
                });
            }
            upstreams.insert(name.to_owned(), url);
        }
        let body_limit: usize = env.or("BODY_LIMIT_BYTES", 1_048_576)?;
        if !(1_024..=64 * 1_048_576).contains(&body_limit) {
            return Err(SettingsError {
                variable: "BODY_LIMIT_BYTES".to_owned(),
                reason: format!("{body_limit} is outside 1 KiB..=64 MiB"),
            });
        }
        let edge_cache_mb: usize = env.within("GATEWAY_CACHE_MB", 16, 0..=4096)?;
        let edge_cache_ttl: u64 = env.within("GATEWAY_CACHE_TTL_SECONDS", 30, 1..=3600)?;
        Ok(Self {
            http_addr: listen_addr(env, "HTTP_ADDR", 8080)?,
            metrics_addr: listen_addr(env, "METRICS_ADDR", 9100)?,
            upstreams,
            request_timeout: env.seconds("REQUEST_TIMEOUT_SECONDS", 15)?,
            body_limit,
            cors: cors(env)?,
            drain: env.seconds("SHUTDOWN_DRAIN_SECONDS", 15)?,
            telemetry: TelemetrySettings::from_env(env, "gateway")?,
            redis: RedisSettings::from_env(env)?,
            jwt_issuer: env.or("JWT_ISSUER", "shopmesh".to_owned())?,
            jwt_audience: env.or("JWT_AUDIENCE", "shopmesh".to_owned())?,
            trusted_proxy_hops: env.or("TRUSTED_PROXY_HOPS", 0)?,
            overload: OverloadSettings::from_env(env)?,
            edge_cache_bytes: edge_cache_mb << 20,
            edge_cache_ttl: Duration::from_secs(edge_cache_ttl),
        })
    }
}

fn cors(env: &Env) -> Result<Cors, SettingsError> {
    let Some(raw) = env.raw("CORS_ALLOWED_ORIGINS") else {
        return Ok(Cors::Disabled);
    };
    if raw.trim() == "*" {
        return Ok(Cors::Any);
    }
    let mut origins = Vec::new();
    for origin in raw.split(',').map(str::trim).filter(|o| !o.is_empty()) {
        let valid = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.ends_with('/');
        let value = http::HeaderValue::from_str(origin)
            .ok()
            .filter(|_| valid)
            .ok_or_else(|| SettingsError {
                variable: "CORS_ALLOWED_ORIGINS".to_owned(),
                reason: format!("{origin:?} is not an origin like https://shop.example.com"),
            })?;
        origins.push(value);
    }
    Ok(Cors::Origins(origins))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_point_at_the_local_stack() {
        let settings = GatewaySettings::from_env(&Env::from_pairs::<&str, &str>([])).unwrap();
        assert_eq!(settings.http_addr.port(), 8080);
        assert_eq!(settings.upstreams["product"], "http://127.0.0.1:50053");
        assert_eq!(settings.cors, Cors::Disabled);
        assert_eq!(settings.edge_cache_bytes, 16 << 20);
        assert_eq!(settings.edge_cache_ttl, Duration::from_secs(30));
    }

    #[test]
    fn the_edge_cache_can_be_sized_or_turned_off() {
        let env = Env::from_pairs([
            ("GATEWAY_CACHE_MB", "0"),
            ("GATEWAY_CACHE_TTL_SECONDS", "3600"),
        ]);
        let settings = GatewaySettings::from_env(&env).unwrap();
        assert_eq!(settings.edge_cache_bytes, 0);
        assert_eq!(settings.edge_cache_ttl, Duration::from_secs(3600));
        let env = Env::from_pairs([("GATEWAY_CACHE_MB", "4096")]);
        let settings = GatewaySettings::from_env(&env).unwrap();
        assert_eq!(settings.edge_cache_bytes, 4096 << 20);
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("PRODUCT_GRPC_URL", "svc-product:50053"),
            ("BODY_LIMIT_BYTES", "12"),
            ("REQUEST_TIMEOUT_SECONDS", "soon"),
            ("CORS_ALLOWED_ORIGINS", "shop.example.com"),
            ("HTTP_ADDR", "8080"),
            ("TRUSTED_PROXY_HOPS", "-1"),
            ("REDIS_URL", "localhost"),
            ("GATEWAY_CACHE_MB", "4097"),
            ("GATEWAY_CACHE_MB", "-1"),
            ("GATEWAY_CACHE_MB", "lots"),
            ("GATEWAY_CACHE_TTL_SECONDS", "0"),
            ("GATEWAY_CACHE_TTL_SECONDS", "3601"),
        ] {
            let err = GatewaySettings::from_env(&Env::from_pairs([(name, value)])).unwrap_err();
            assert_eq!(err.variable, name);
        }
    }

    #[test]
    fn cors_origins_are_parsed() {
        let env = Env::from_pairs([(
            "CORS_ALLOWED_ORIGINS",
            "https://a.example, http://localhost:3000",
        )]);
        let Cors::Origins(origins) = GatewaySettings::from_env(&env).unwrap().cors else {
            panic!("origins expected");
        };
        assert_eq!(origins.len(), 2);
    }
}
