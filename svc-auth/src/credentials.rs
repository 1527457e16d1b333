//! What an account signs in with: the email rules, the password policy, and
//! Argon2id hashing.
//!
//! Argon2id parameters (OWASP Password Storage Cheat Sheet, first option):
//! m = 19456 KiB (19 MiB), t = 2 iterations, p = 1 lane, 16-byte random salt,
//! 32-byte output, version 0x13. They are stored in every PHC hash string, so a
//! later change still verifies old hashes.

use std::sync::{Arc, LazyLock};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::{OsRng, RngCore};
use tokio::sync::Semaphore;

pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_PARALLELISM: u32 = 1;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;
pub const MAX_DISPLAY_NAME_CHARS: usize = 100;

/// An Argon2id hash of a random password with the parameters above: verified
/// when the email is unknown, so that answer takes as long as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$bbbplUfWnZt4TdnYDYrK8Q$\
                          Nl974sL3MyVRvJOEqPAtlfZGHYSxz9EfLBALHZRxN0Y";

static COMMON_PASSWORDS: LazyLock<Vec<&'static str>> = LazyLock::new(|| {
    include_str!("common_passwords.txt")
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
});

/// A validated email address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Email {
    /// As given, trimmed: what the account shows.
    pub given: String,
    /// The comparison form (lowercased): what makes two addresses the same account.
    pub key: String,
}

impl Email {
    /// The comparison form of whatever was typed, valid or not (for sign-in,
    /// which must not tell a malformed address from an unknown one).
    pub fn key_of(raw: &str) -> String {
        raw.trim().to_lowercase()
    }

    /// Validates an address. The error describes the problem for a field violation.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let given = raw.trim();
        if given.is_empty() {
            return Err("is required");
        }
        if given.chars().count() > 254 {
            return Err("must be at most 254 characters");
        }
        if given.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("must not contain spaces or control characters");
        }
        let Some((local, domain)) = given.rsplit_once('@') else {
            return Err("must look like name@example.com");
        };
        if local.is_empty() || local.contains('@') || local.chars().count() > 64 {
            return Err("must have one @ after a name of at most 64 characters");
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err("must not have a dot at the start or end of the name, or two in a row");
        }
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |label: &&str| {
            !label.is_empty()
                && label.chars().count() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err("must have a domain like example.com after the @");
        }
        if labels
            .last()
            .is_some_and(|tld| tld.chars().all(|c| c.is_ascii_digit()))
        {
            return Err("must have a domain name, not an address, after the @");
        }
        Ok(Self {
            given: given.to_owned(),
            key: Self::key_of(given),
        })
    }

    fn local_part(&self) -> &str {
        self.key.rsplit_once('@').map_or("", |(local, _)| local)
    }
}

/// The password policy for new passwords. The error describes the problem.
pub fn check_new_password(password: &str, email: Option<&Email>) -> Result<(), &'static str> {
    let chars = password.chars().count();
    if chars < MIN_PASSWORD_CHARS {
        return Err("must be at least 10 characters");
    }
    if chars > MAX_PASSWORD_CHARS {
        return Err("must be at most 128 characters");
    }
    let folded = password.trim().to_lowercase();
    if let Some(email) = email
        && (folded == email.key || folded == email.local_part())
    {
        return Err("must not be the email address");
    }
    if COMMON_PASSWORDS.contains(&folded.as_str()) {
        return Err("is too common: it appears in lists of breached passwords");
    }
    Ok(())
}

/// A display name, trimmed; the error describes the problem.
pub fn check_display_name(raw: &str) -> Result<String, &'static str> {
    let name = raw.trim();
    if name.is_empty() {
        return Err("is required");
    }
    if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
        return Err("must be at most 100 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(name.to_owned())
}

/// Hashes and verifies passwords off the async threads, a bounded number at a
/// time: each hash holds 19 MiB, so a burst of sign-ins must queue rather than
/// exhaust memory.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
}

impl PasswordHasher {
    pub fn new() -> anyhow::Result<Self> {
        let params = Params::new(
            ARGON2_MEMORY_KIB,
            ARGON2_ITERATIONS,
            ARGON2_PARALLELISM,
            None,
        )
        .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?;
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(parallel * 2)),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
        let password = password.to_owned();
        let argon2 = self.argon2.clone();
        self.blocking(move || {
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
        })
        .await
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it
    /// verifies against a dummy and answers false, taking the same time.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(DUMMY_HASH).to_owned();
        let password = password.to_owned();
        let argon2 = self.argon2.clone();
        let matches = self
            .blocking(move || {
                let parsed = PasswordHash::new(&hash)
                    .map_err(|e| anyhow::anyhow!("stored hash is malformed: {e}"))?;
                Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
            })
            .await?;
        Ok(known && matches)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(work).await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_validated_and_compared_lowercased() {
        let email = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(email.given, "Ada.Lovelace@Example.COM");
        assert_eq!(email.key, "ada.lovelace@example.com");
        assert_eq!(Email::key_of(" ADA.lovelace@example.com"), email.key);
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "ada@@example.com",
            "ada lovelace@example.com",
            "ada@exa_mple.com",
            "ada@-example.com",
            ".ada@example.com",
            "ada..l@example.com",
            "ada@127.0.0.1",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(Email::parse("o'brien+shop@mail.example.co.uk").is_ok());
    }

    #[test]
    fn the_password_policy() {
        let email = Email::parse("grace.hopper@example.com").unwrap();
        assert!(check_new_password("short", Some(&email)).is_err());
        assert!(check_new_password(&"x".repeat(129), Some(&email)).is_err());
        assert!(check_new_password("Grace.Hopper@example.com", Some(&email)).is_err());
        assert!(check_new_password("grace.hopper", Some(&email)).is_err());
        assert!(check_new_password("Password123", Some(&email)).is_err());
        assert!(check_new_password("QWERTYUIOP", None).is_err());
        assert!(check_new_password("correct horse battery", Some(&email)).is_ok());
        // Counted in characters, not bytes.
        assert!(check_new_password("ééééééééé", None).is_err());
        assert!(check_new_password("éééééééééé", None).is_ok());
    }

    #[test]
    fn the_common_list_is_loaded_and_only_holds_passwords_the_length_rule_lets_through() {
        assert!(COMMON_PASSWORDS.len() >= 50);
        for password in COMMON_PASSWORDS.iter() {
            assert!(password.chars().count() >= MIN_PASSWORD_CHARS, "{password}");
            assert_eq!(*password, password.to_lowercase());
        }
    }

    #[test]
    fn the_dummy_hash_costs_what_a_real_one_does() {
        let parsed = PasswordHash::new(DUMMY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        let params = Params::try_from(&parsed).unwrap();
        assert_eq!(params.m_cost(), ARGON2_MEMORY_KIB);
        assert_eq!(params.t_cost(), ARGON2_ITERATIONS);
        assert_eq!(params.p_cost(), ARGON2_PARALLELISM);
    }

    #[tokio::test]
    async fn hashes_verify_and_carry_their_parameters() {
        let hasher = PasswordHasher::new().unwrap();
        let hash = hasher.hash("correct horse battery").await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify("correct horse battery", Some(&hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse batterY", Some(&hash))
                .await
                .unwrap()
        );
        assert!(!hasher.verify("anything at all", None).await.unwrap());
    }
}
