//! Kafka settings from the environment, and the librdkafka configuration every
//! client of this module starts from.

use rdkafka::ClientConfig;

use shopmesh_platform::settings::{Env, Secret, SettingsError};

/// Where the brokers are, how to authenticate, and how topics are created.
#[derive(Clone, Debug)]
pub struct EventsSettings {
    /// `KAFKA_BROKERS`: bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// Client id on the broker and `producer` of the envelopes: the binary name.
    pub client_id: String,
    /// `KAFKA_SECURITY_PROTOCOL`: `plaintext` (default), `ssl`, `sasl_plaintext`, `sasl_ssl`.
    pub security_protocol: Option<String>,
    /// `KAFKA_SASL_MECHANISM`: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512`.
    pub sasl_mechanism: Option<String>,
    /// `KAFKA_SASL_USERNAME`.
    pub sasl_username: Option<String>,
    /// `KAFKA_SASL_PASSWORD`.
    pub sasl_password: Option<Secret<String>>,
    /// `KAFKA_SSL_CA_LOCATION`: PEM file of a private CA (the system CAs otherwise).
    pub ssl_ca_location: Option<String>,
    /// `KAFKA_TOPIC_PARTITIONS`: partitions of topics created at start.
    pub topic_partitions: i32,
    /// `KAFKA_TOPIC_REPLICATION`: replication factor of topics created at start.
    pub topic_replication: i32,
    /// `KAFKA_CONSUMER_MAX_ATTEMPTS`: handler attempts before a message goes to `<topic>.dlq`.
    pub max_attempts: u32,
}

const SECURITY_PROTOCOLS: &[&str] = &["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"];
const SASL_MECHANISMS: &[&str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

impl EventsSettings {
    /// Reads the `KAFKA_*` variables; `binary` is the client id (e.g. `svc-order`).
    pub fn from_env(env: &Env, binary: &str) -> Result<Self, SettingsError> {
        let invalid = |variable: &str, reason: String| SettingsError {
            variable: variable.to_owned(),
            reason,
        };
        let brokers: String = env.or("KAFKA_BROKERS", "127.0.0.1:9092".to_owned())?;
        if brokers.split(',').any(|b| !b.trim().contains(':')) {
            return Err(invalid(
                "KAFKA_BROKERS",
                format!("{brokers:?} must be host:port[,host:port...]"),
            ));
        }
        let security_protocol: Option<String> = env
            .optional::<String>("KAFKA_SECURITY_PROTOCOL")?
            .map(|p| p.to_ascii_lowercase());
        if let Some(protocol) = &security_protocol
            && !SECURITY_PROTOCOLS.contains(&protocol.as_str())
        {
            return Err(invalid(
                "KAFKA_SECURITY_PROTOCOL",
                format!(
                    "{protocol:?} is not one of {}",
                    SECURITY_PROTOCOLS.join(", ")
                ),
            ));
        }
        let sasl_mechanism: Option<String> = env
            .optional::<String>("KAFKA_SASL_MECHANISM")?
            .map(|m| m.to_ascii_uppercase());
        if let Some(mechanism) = &sasl_mechanism
            && !SASL_MECHANISMS.contains(&mechanism.as_str())
        {
            return Err(invalid(
                "KAFKA_SASL_MECHANISM",
                format!("{mechanism:?} is not one of {}", SASL_MECHANISMS.join(", ")),
            ));
        }
        let sasl_username: Option<String> = env.optional("KAFKA_SASL_USERNAME")?;
        let sasl_password: Option<Secret<String>> = env.optional("KAFKA_SASL_PASSWORD")?;
        if sasl_username.is_some() != sasl_password.is_some() {
            return Err(invalid(
                "KAFKA_SASL_PASSWORD",
                "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD go together".to_owned(),
            ));
        }
        let topic_partitions: i32 = env.within("KAFKA_TOPIC_PARTITIONS", 3, 1..=1000)?;
        let topic_replication: i32 = env.within("KAFKA_TOPIC_REPLICATION", 1, 1..=10)?;
        let max_attempts: u32 = env.within("KAFKA_CONSUMER_MAX_ATTEMPTS", 5, 1..=100)?;
        Ok(Self {
            brokers,
            client_id: binary.to_owned(),
            security_protocol,
            sasl_mechanism,
            sasl_username,
            sasl_password,
            ssl_ca_location: env.optional("KAFKA_SSL_CA_LOCATION")?,
            topic_partitions,
            topic_replication,
            max_attempts,
        })
    }

    /// Settings for `brokers` with every default (tests, tools).
    pub fn for_brokers(brokers: &str, client_id: &str) -> Self {
        Self {
            brokers: brokers.to_owned(),
            client_id: client_id.to_owned(),
            security_protocol: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
            ssl_ca_location: None,
            topic_partitions: 3,
            topic_replication: 1,
            max_attempts: 5,
        }
    }

    /// The connection part of every client's configuration.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", &self.client_id)
            // Fail over quickly between bootstrap servers; keep librdkafka's own logs quiet.
            .set("socket.connection.setup.timeout.ms", "10000")
            .set("log.connection.close", "false");
        if let Some(protocol) = &self.security_protocol {
            config.set("security.protocol", protocol);
        }
        if let Some(mechanism) = &self.sasl_mechanism {
            config.set("sasl.mechanism", mechanism);
        }
        if let (Some(user), Some(password)) = (&self.sasl_username, &self.sasl_password) {
            config
                .set("sasl.username", user)
                .set("sasl.password", password.expose());
        }
        if let Some(ca) = &self.ssl_ca_location {
            config.set("ssl.ca.location", ca);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let settings =
            EventsSettings::from_env(&Env::from_pairs::<&str, &str>([]), "svc-x").unwrap();
        assert_eq!(settings.brokers, "127.0.0.1:9092");
        assert_eq!(settings.topic_partitions, 3);
        assert_eq!(settings.topic_replication, 1);
        assert_eq!(settings.max_attempts, 5);
        assert_eq!(settings.client_id, "svc-x");

        for (name, value) in [
            ("KAFKA_BROKERS", "no-port"),
            ("KAFKA_SECURITY_PROTOCOL", "tls"),
            ("KAFKA_SASL_MECHANISM", "GSSAPI"),
            ("KAFKA_TOPIC_PARTITIONS", "0"),
            ("KAFKA_TOPIC_REPLICATION", "x"),
            ("KAFKA_CONSUMER_MAX_ATTEMPTS", "0"),
            ("KAFKA_SASL_PASSWORD", "only-the-password"),
        ] {
            let err =
                EventsSettings::from_env(&Env::from_pairs([(name, value)]), "svc-x").unwrap_err();
            assert_eq!(err.variable, name, "{err}");
        }
    }

    #[test]
    fn the_sasl_password_never_prints() {
        let env = Env::from_pairs([
            ("KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KAFKA_SASL_USERNAME", "shop"),
            ("KAFKA_SASL_PASSWORD", "hunter2"),
        ]);
        let settings = EventsSettings::from_env(&env, "svc-x").unwrap();
        assert_eq!(settings.security_protocol.as_deref(), Some("sasl_ssl"));
        assert_eq!(settings.sasl_mechanism.as_deref(), Some("SCRAM-SHA-512"));
        assert!(!format!("{settings:?}").contains("hunter2"));
    }
}
