//! The simulated card network: deterministic test cards and tokens, no state.
//!
//! A token is `tok_<payload>.<mac>`: the payload names the test card (by its
//! place in [`TEST_CARDS`], never its number) and the token's expiry, and the
//! MAC is HMAC-SHA256 under `PAYMENT_SIMULATED_TOKEN_KEY`. Any replica, before
//! or after a restart, reads the card back from the token alone. References
//! are derived from the caller's idempotency key, so the same key always gets
//! the same answer: the network honours idempotency without remembering.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand_core::{OsRng, RngCore};
use sha2::{Digest, Sha256};
use shopmesh_platform::settings::Secret;

use super::{AuthorizeCall, Outcome, PaymentProvider, TokenizeError, Tokenized};
use crate::payment::{CardSummary, MethodInput, Money};

/// How long a simulated token is accepted.
pub const TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// What the network does when a card is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CardBehaviour {
    Approve,
    Decline {
        code: &'static str,
        message: &'static str,
    },
    /// The network does not answer before any sensible deadline.
    NoAnswer,
}

/// A documented test card (`proto/shop/payment/v1/payment.proto`).
#[derive(Clone, Copy, Debug)]
pub struct TestCard {
    pub number: &'static str,
    pub brand: &'static str,
    pub behaviour: CardBehaviour,
}

pub const TEST_CARDS: &[TestCard] = &[
    TestCard {
        number: "4242424242424242",
        brand: "visa",
        behaviour: CardBehaviour::Approve,
    },
    TestCard {
        number: "5555555555554444",
        brand: "mastercard",
        behaviour: CardBehaviour::Approve,
    },
    TestCard {
        number: "4000000000000002",
        brand: "visa",
        behaviour: CardBehaviour::Decline {
            code: "card_declined",
            message: "The card was declined.",
        },
    },
    TestCard {
        number: "4000000000009995",
        brand: "visa",
        behaviour: CardBehaviour::Decline {
            code: "insufficient_funds",
            message: "The card has insufficient funds.",
        },
    },
    TestCard {
        number: "4000000000000119",
        brand: "visa",
        behaviour: CardBehaviour::NoAnswer,
    },
    TestCard {
        number: "4000000000000127",
        brand: "visa",
        behaviour: CardBehaviour::Decline {
            code: "provider_error",
            message: "The card network could not process the card; try again or use another card.",
        },
    },
];

/// Calls the network received, per operation (tests count them).
#[derive(Debug, Default)]
pub struct CallCounts {
    pub tokenize: AtomicU64,
    pub authorize: AtomicU64,
    pub capture: AtomicU64,
    pub void: AtomicU64,
    pub refund: AtomicU64,
}

pub struct SimulatedNetwork {
    key: Secret<Vec<u8>>,
    /// How long a NoAnswer card keeps a call waiting.
    no_answer_for: Duration,
    pub calls: CallCounts,
}

impl SimulatedNetwork {
    pub fn new(key: &Secret<String>) -> Self {
        Self {
            key: Secret::new(key.expose().as_bytes().to_vec()),
            no_answer_for: Duration::from_secs(3600),
            calls: CallCounts::default(),
        }
    }

    /// A token for test card `index`, valid until `expires_at`.
    fn issue(&self, index: usize, expires_at: DateTime<Utc>) -> String {
        let mut nonce = [0u8; 8];
        OsRng.fill_bytes(&mut nonce);
        let payload = format!(
            "{index}:{}:{}",
            expires_at.timestamp(),
            URL_SAFE_NO_PAD.encode(nonce)
        );
        let payload = URL_SAFE_NO_PAD.encode(payload);
        let mac = URL_SAFE_NO_PAD.encode(&self.mac(&payload)[..16]);
        format!("tok_{payload}.{mac}")
    }

    /// The test card and expiry a token names, if this network issued it.
    fn read(&self, token: &str) -> Option<(usize, DateTime<Utc>)> {
        let (payload, mac) = token.strip_prefix("tok_")?.split_once('.')?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        if !constant_time_eq(&mac, &self.mac(payload)[..16]) {
            return None;
        }
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        let mut parts = payload.split(':');
        let index: usize = parts.next()?.parse().ok()?;
        let expires: i64 = parts.next()?.parse().ok()?;
        (index < TEST_CARDS.len()).then_some(())?;
        Some((index, DateTime::from_timestamp(expires, 0)?))
    }

    fn card_of_token(&self, token: &str) -> Result<(TestCard, DateTime<Utc>), TokenizeError> {
        let (index, expires_at) = self
            .read(token)
            .ok_or_else(|| TokenizeError::Invalid("unknown card token".to_owned()))?;
        if expires_at <= Utc::now() {
            return Err(TokenizeError::Invalid(
                "the card token has expired".to_owned(),
            ));
        }
        Ok((TEST_CARDS[index], expires_at))
    }

    fn mac(&self, message: &str) -> [u8; 32] {
        hmac_sha256(self.key.expose(), message.as_bytes())
    }
}

fn summary(card: &TestCard) -> CardSummary {
    CardSummary {
        brand: card.brand.to_owned(),
        last4: card.number[card.number.len() - 4..].to_owned(),
    }
}

/// A reference derived from the caller's key: the same key, the same answer.
fn reference(prefix: &str, idempotency_key: &str) -> String {
    let digest = Sha256::digest(idempotency_key.as_bytes());
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}_{hex}")
}

fn known_authorization(authorization: &str) -> Option<Outcome> {
    (!authorization.starts_with("sim_auth_")).then(|| Outcome::Declined {
        code: "provider_error".to_owned(),
        message: "unknown authorization".to_owned(),
    })
}

#[tonic::async_trait]
impl PaymentProvider for SimulatedNetwork {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn tokenize(&self, method: &MethodInput) -> Result<Tokenized, TokenizeError> {
        self.calls.tokenize.fetch_add(1, Ordering::Relaxed);
        match method {
            MethodInput::Token(token) => {
                let (card, expires_at) = self.card_of_token(token)?;
                Ok(Tokenized {
                    token: token.clone(),
                    card: summary(&card),
                    expires_at: Some(expires_at),
                })
            }
            MethodInput::TestCard(number) => {
                let index = TEST_CARDS
                    .iter()
                    .position(|card| card.number == number.expose())
                    .ok_or_else(|| {
                        TokenizeError::Invalid(
                            "not one of the simulated card network's test cards".to_owned(),
                        )
                    })?;
                let expires_at = Utc::now()
                    + chrono::Duration::from_std(TOKEN_TTL).unwrap_or(chrono::Duration::hours(24));
                Ok(Tokenized {
                    token: self.issue(index, expires_at),
                    card: summary(&TEST_CARDS[index]),
                    expires_at: Some(expires_at),
                })
            }
        }
    }

    async fn authorize(&self, call: AuthorizeCall<'_>) -> Outcome {
        self.calls.authorize.fetch_add(1, Ordering::Relaxed);
        // An authorization already asked for under this key is answered from
        // the token as before, even if the token has expired since.
        let Some((index, _)) = self.read(call.token) else {
            return Outcome::Declined {
                code: "provider_error".to_owned(),
                message: "unknown card token".to_owned(),
            };
        };
        match TEST_CARDS[index].behaviour {
            CardBehaviour::Approve => Outcome::Approved {
                reference: reference("sim_auth", call.idempotency_key),
            },
            CardBehaviour::Decline { code, message } => Outcome::Declined {
                code: code.to_owned(),
                message: message.to_owned(),
            },
            CardBehaviour::NoAnswer => {
                tokio::time::sleep(self.no_answer_for).await;
                Outcome::Unavailable {
                    reason: "provider_timeout".to_owned(),
                }
            }
        }
    }

    async fn capture(&self, idempotency_key: &str, authorization: &str, _: &Money) -> Outcome {
        self.calls.capture.fetch_add(1, Ordering::Relaxed);
        known_authorization(authorization).unwrap_or_else(|| Outcome::Approved {
            reference: reference("sim_cap", idempotency_key),
        })
    }

    async fn void(&self, idempotency_key: &str, authorization: &str) -> Outcome {
        self.calls.void.fetch_add(1, Ordering::Relaxed);
        known_authorization(authorization).unwrap_or_else(|| Outcome::Approved {
            reference: reference("sim_void", idempotency_key),
        })
    }

    async fn refund(&self, idempotency_key: &str, authorization: &str, _: &Money) -> Outcome {
        self.calls.refund.fetch_add(1, Ordering::Relaxed);
        known_authorization(authorization).unwrap_or_else(|| Outcome::Approved {
            reference: reference("sim_ref", idempotency_key),
        })
    }
}

/// HMAC-SHA256 (RFC 2104), with the `sha2` the workspace already has.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::CardNumber;

    fn network() -> SimulatedNetwork {
        SimulatedNetwork::new(&Secret::new("unit-test-token-key".to_owned()))
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    async fn tokenize(network: &SimulatedNetwork, number: &str) -> Tokenized {
        network
            .tokenize(&MethodInput::TestCard(CardNumber::parse(number).unwrap()))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn tokens_carry_the_card_but_not_its_number() {
        let tokenized = tokenize(&network(), "5555555555554444").await;
        assert!(tokenized.token.starts_with("tok_"));
        assert!(!tokenized.token.contains("5555555555554444"));
        let decoded = String::from_utf8(
            URL_SAFE_NO_PAD
                .decode(tokenized.token[4..].split('.').next().unwrap())
                .unwrap(),
        )
        .unwrap();
        assert!(!decoded.contains("5555"), "{decoded}");
        assert_eq!(
            tokenized.card,
            CardSummary {
                brand: "mastercard".to_owned(),
                last4: "4444".to_owned()
            }
        );
        // Another instance with the same key (a replica, a restart) reads it.
        let checked = network()
            .tokenize(&MethodInput::Token(tokenized.token.clone()))
            .await
            .unwrap();
        assert_eq!(checked.card, tokenized.card);
    }

    #[tokio::test]
    async fn forged_altered_and_foreign_tokens_are_refused() {
        let tokenized = tokenize(&network(), "4242424242424242").await;
        let other = SimulatedNetwork::new(&Secret::new("another-token-key!!".to_owned()));
        for token in [
            "tok_nope".to_owned(),
            format!("{}x", tokenized.token),
            tokenized.token.replacen("tok_", "tok_A", 1),
        ] {
            let err = network()
                .tokenize(&MethodInput::Token(token.clone()))
                .await
                .unwrap_err();
            assert!(matches!(err, TokenizeError::Invalid(_)), "{token}");
        }
        assert!(
            other
                .tokenize(&MethodInput::Token(tokenized.token))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn expired_tokens_are_refused() {
        let network = network();
        let token = network.issue(0, Utc::now() - chrono::Duration::seconds(1));
        assert_eq!(
            network.tokenize(&MethodInput::Token(token)).await,
            Err(TokenizeError::Invalid(
                "the card token has expired".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn unknown_numbers_are_refused() {
        let err = network()
            .tokenize(&MethodInput::TestCard(
                CardNumber::parse("4111111111111111").unwrap(),
            ))
            .await
            .unwrap_err();
        assert!(matches!(err, TokenizeError::Invalid(_)));
    }

    #[tokio::test]
    async fn each_test_card_behaves_as_documented_and_answers_by_key() {
        let network = network();
        let amount = Money::new("USD", 1000);
        let mut answers = Vec::new();
        for number in [
            "4242424242424242",
            "5555555555554444",
            "4000000000000002",
            "4000000000009995",
            "4000000000000127",
        ] {
            let token = tokenize(&network, number).await.token;
            let call = AuthorizeCall {
                idempotency_key: "key-1",
                token: &token,
                amount: &amount,
            };
            answers.push(network.authorize(call).await);
        }
        let approved = Outcome::Approved {
            reference: reference("sim_auth", "key-1"),
        };
        assert_eq!(answers[0], approved);
        assert_eq!(answers[1], approved);
        let codes: Vec<_> = answers[2..]
            .iter()
            .map(|a| match a {
                Outcome::Declined { code, .. } => code.as_str(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            ["card_declined", "insufficient_funds", "provider_error"]
        );
        assert_eq!(network.calls.authorize.load(Ordering::Relaxed), 5);
    }

    #[tokio::test]
    async fn the_slow_card_does_not_answer() {
        let network = network();
        let token = tokenize(&network, "4000000000000119").await.token;
        let amount = Money::new("USD", 1000);
        let call = AuthorizeCall {
            idempotency_key: "k",
            token: &token,
            amount: &amount,
        };
        let answer =
            tokio::time::timeout(Duration::from_millis(100), network.authorize(call)).await;
        assert!(answer.is_err(), "answered: {answer:?}");
    }
}
