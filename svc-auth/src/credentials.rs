//! What an account signs in with: the email rules, the password policy, and
//! Argon2id hashing.
//!
//! Argon2id parameters (OWASP Password Storage Cheat Sheet, first option):
//! m = 19456 KiB (19 MiB), t = 2 iterations, p = 1 lane, 16-byte random salt,
//! 32-byte output, version 0x13. They are stored in every PHC hash string, so a
//! later change still verifies old hashes.

use std::sync::{Arc, LazyLock, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
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

/// Hashes and verifies passwords off the async threads, one per core at a time:
/// Argon2 is pure CPU, so more at once only adds memory and latency. A burst of
/// sign-ins queues on the permits rather than exhausting memory.
///
/// Each hash needs 19 MiB of working memory. Allocating it per call made the
/// process grow to about 1 GB under a stream of sign-ins with glibc's malloc
/// (the allocator then; every binary now uses mimalloc): glibc raises its mmap
/// threshold after the first such block is freed, so later ones came from
/// per-thread arenas that kept them. The working memory is therefore taken from
/// a pool of at most one buffer per permit, allocated once and reused, which
/// bounds it whatever the allocator does.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    memory: Arc<MemoryPool>,
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
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Ok(Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            permits: Arc::new(Semaphore::new(cores)),
            memory: Arc::default(),
        })
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`).
    pub async fn hash(&self, password: &str) -> anyhow::Result<String> {
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let password = password.to_owned();
        let argon2 = self.argon2.clone();
        let memory = Arc::clone(&self.memory);
        self.blocking(move || {
            let salt_string =
                SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
            let output = memory.compute(
                &argon2,
                password.as_bytes(),
                &salt,
                Params::DEFAULT_OUTPUT_LEN,
            )?;
            let phc = PasswordHash {
                algorithm: Algorithm::Argon2id.ident(),
                version: Some(Version::V0x13.into()),
                params: ParamsString::try_from(argon2.params())
                    .map_err(|e| anyhow::anyhow!("argon2 parameters: {e}"))?,
                salt: Some(salt_string.as_salt()),
                hash: Some(output),
            };
            Ok(phc.to_string())
        })
        .await
    }

    /// Whether `password` matches `hash`; with no hash (unknown account) it
    /// verifies against a dummy and answers false, taking the same time. The
    /// stored hash's own algorithm, version and parameters are used.
    pub async fn verify(&self, password: &str, hash: Option<&str>) -> anyhow::Result<bool> {
        let known = hash.is_some();
        let hash = hash.unwrap_or(DUMMY_HASH).to_owned();
        let password = password.to_owned();
        let memory = Arc::clone(&self.memory);
        let matches = self
            .blocking(move || {
                let malformed =
                    |e: &dyn std::fmt::Display| anyhow::anyhow!("stored hash is malformed: {e}");
                let parsed = PasswordHash::new(&hash).map_err(|e| malformed(&e))?;
                let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
                    return Err(malformed(&"no salt or no hash"));
                };
                let algorithm = Algorithm::try_from(parsed.algorithm).map_err(|e| malformed(&e))?;
                let version = parsed
                    .version
                    .map(Version::try_from)
                    .transpose()
                    .map_err(|e| malformed(&e))?
                    .unwrap_or_default();
                let params = Params::try_from(&parsed).map_err(|e| malformed(&e))?;
                let mut salt_bytes = [0u8; 64];
                let salt = salt
                    .decode_b64(&mut salt_bytes)
                    .map_err(|e| malformed(&e))?;
                let argon2 = Argon2::new(algorithm, version, params);
                let computed =
                    memory.compute(&argon2, password.as_bytes(), salt, expected.len())?;
                // `Output`'s equality is constant-time.
                Ok(computed == expected)
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

/// Argon2 working memory, kept for reuse. At most one buffer per permit is ever
/// taken at once, so the pool never holds more than that. Reuse is sound: the
/// first pass of Argon2 writes every block before any is read.
#[derive(Default)]
struct MemoryPool(Mutex<Vec<Vec<Block>>>);

impl MemoryPool {
    /// Runs `argon2` over `password` and `salt` into an output of `len` bytes.
    fn compute(
        &self,
        argon2: &Argon2<'_>,
        password: &[u8],
        salt: &[u8],
        len: usize,
    ) -> anyhow::Result<Output> {
        let mut blocks = self.take();
        blocks.resize(argon2.params().block_count(), Block::default());
        let output = Output::init_with(len, |out| {
            argon2
                .hash_password_into_with_memory(password, salt, out, &mut blocks)
                .map_err(Into::into)
        });
        // What is left in the blocks is derived from the password.
        blocks.fill(Block::default());
        self.give(blocks);
        output.map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
    }

    fn take(&self) -> Vec<Block> {
        self.0
            .lock()
            .map(|mut pool| pool.pop())
            .unwrap_or_default()
            .unwrap_or_default()
    }

    fn give(&self, blocks: Vec<Block>) {
        if let Ok(mut pool) = self.0.lock() {
            pool.push(blocks);
        }
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
    async fn pooled_memory_gives_the_reference_implementations_hashes() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new().unwrap();
        let reference = hasher.argon2.clone();
        // Several rounds, so that reused (dirty) buffers are exercised both ways.
        for round in 0..3 {
            let password = format!("correct horse battery {round}");
            let ours = hasher.hash(&password).await.unwrap();
            let parsed = PasswordHash::new(&ours).unwrap();
            assert!(
                reference
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            );
            assert!(
                reference
                    .verify_password(b"wrong horse battery", &parsed)
                    .is_err()
            );

            let salt = SaltString::encode_b64(&[round; 16]).unwrap();
            let theirs = reference
                .hash_password(password.as_bytes(), &salt)
                .unwrap()
                .to_string();
            assert!(hasher.verify(&password, Some(&theirs)).await.unwrap());
            assert!(
                !hasher
                    .verify("wrong horse battery", Some(&theirs))
                    .await
                    .unwrap()
            );
        }
        // Never more buffers than hashes that can run at once.
        assert!(hasher.memory.0.lock().unwrap().len() <= hasher.permits.available_permits());
    }

    #[tokio::test]
    async fn a_stored_hash_with_other_parameters_still_verifies() {
        use argon2::password_hash::PasswordHasher as _;
        let hasher = PasswordHasher::new().unwrap();
        let older = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 3, 1, Some(24)).unwrap(),
        );
        let salt = SaltString::encode_b64(b"sixteen byte salt").unwrap();
        let stored = older
            .hash_password(b"correct horse battery", &salt)
            .unwrap()
            .to_string();
        assert!(
            hasher
                .verify("correct horse battery", Some(&stored))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify("correct horse batterY", Some(&stored))
                .await
                .unwrap()
        );
        assert!(
            hasher
                .verify("anything", Some("$argon2id$v=19$nonsense"))
                .await
                .is_err()
        );
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
