//! Signed-in shoppers for the cart and checkout scenarios, prepared at setup:
//! each registers once (later runs find the account and log in), has a
//! shipping address and starts with an empty cart.
//!
//! Setup is paced for svc-auth's limits: sign-ins are Argon2id-bound (about
//! 12 ms of CPU each) and svc-auth refuses a client address after 20 failed
//! sign-ins in flight or in its window (an account after 5), so at most
//! `SETUP_CONCURRENCY` run at once, none is expected to fail, and a 429 or
//! 503 is waited out and retried rather than counted.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use futures::stream::{self, StreamExt};
use http::{HeaderValue, Method};
use serde_json::{Value, json};

use crate::rest::{RestClient, path_uri};
use crate::rng::Rng;
use crate::stats::Failure;

/// Sign-ins at once during setup (svc-auth allows 5 per account and 20
/// failures per client address; Argon2id makes more pointless on 2 cores).
const SETUP_CONCURRENCY: usize = 4;
/// The same for every loadgen account, so a later run can log in.
const PASSWORD: &str = "loadgen shopper passphrase";
/// Access tokens live 15 minutes: refresh those older than this.
const REFRESH_AFTER: Duration = Duration::from_secs(10 * 60);

pub struct Shopper {
    pub email: String,
    pub address_id: String,
    auth: RwLock<HeaderValue>,
    refresh: Mutex<(String, Instant)>,
    /// A journey that went wrong may have left lines in the cart.
    dirty: AtomicBool,
}

impl Shopper {
    /// `Bearer <access token>`, current.
    pub fn auth(&self) -> HeaderValue {
        self.auth
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn take_dirty(&self) -> bool {
        self.dirty.swap(false, Ordering::Relaxed)
    }

    pub fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Relaxed);
    }
}

/// The pool: the first `cart_users` shoppers share the cart scenario (any
/// number of arrivals at once); the others are lent one journey at a time.
pub struct Shoppers {
    all: Vec<Shopper>,
    cart_users: usize,
    free: Mutex<Vec<usize>>,
}

impl Shoppers {
    /// Registers or logs in `cart_users + checkout_users` shoppers named
    /// `loadgen-<n>@example.com`.
    pub async fn prepare(
        rest: &RestClient,
        cart_users: usize,
        checkout_users: usize,
    ) -> anyhow::Result<Arc<Self>> {
        let total = cart_users + checkout_users;
        let mut prepared: Vec<(usize, Shopper)> = stream::iter(0..total)
            .map(|n| async move { prepare_one(rest, n).await.map(|s| (n, s)) })
            .buffer_unordered(SETUP_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<anyhow::Result<_>>()?;
        prepared.sort_by_key(|(n, _)| *n);
        Ok(Arc::new(Self {
            all: prepared.into_iter().map(|(_, s)| s).collect(),
            cart_users,
            free: Mutex::new((cart_users..total).rev().collect()),
        }))
    }

    pub fn len(&self) -> usize {
        self.all.len()
    }

    pub fn is_empty(&self) -> bool {
        self.all.is_empty()
    }

    /// Any cart shopper (several arrivals may use one at once, as one person's
    /// browser tabs would).
    pub fn cart_user(&self, rng: &mut Rng) -> Option<&Shopper> {
        if self.cart_users == 0 {
            return None;
        }
        self.all.get(rng.below(self.cart_users))
    }

    /// A checkout shopper for one journey, or `None` when all are busy.
    pub fn lend(self: &Arc<Self>) -> Option<Lent> {
        let index = self
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()?;
        Some(Lent {
            pool: Arc::clone(self),
            index,
        })
    }

    /// Keeps the access tokens fresh for runs longer than their 15 minutes.
    pub fn spawn_refresher(self: &Arc<Self>, rest: RestClient) -> tokio::task::JoinHandle<()> {
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut warned = false;
            loop {
                tokio::time::sleep(Duration::from_secs(30)).await;
                let Some(pool) = pool.upgrade() else {
                    return;
                };
                for shopper in &pool.all {
                    let (token, issued) = shopper
                        .refresh
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clone();
                    if issued.elapsed() < REFRESH_AFTER {
                        continue;
                    }
                    match refresh(&rest, &token).await {
                        Ok((access, refresh)) => {
                            *shopper.auth.write().unwrap_or_else(PoisonError::into_inner) = access;
                            *shopper
                                .refresh
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner) =
                                (refresh, Instant::now());
                        }
                        Err(err) if !warned => {
                            warned = true;
                            eprintln!("loadgen: refreshing {}'s token: {err:#}", shopper.email);
                        }
                        Err(_) => {}
                    }
                }
            }
        })
    }
}

/// A checkout shopper lent to one journey; back in the pool when dropped.
pub struct Lent {
    pool: Arc<Shoppers>,
    index: usize,
}

impl std::ops::Deref for Lent {
    type Target = Shopper;

    fn deref(&self) -> &Shopper {
        &self.pool.all[self.index]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        self.pool
            .free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(self.index);
    }
}

fn bearer(token: &str) -> anyhow::Result<HeaderValue> {
    Ok(HeaderValue::from_str(&format!("Bearer {token}"))?)
}

fn token_pair(tokens: &Value) -> anyhow::Result<(HeaderValue, String)> {
    let access = tokens["accessToken"]
        .as_str()
        .context("no accessToken in the answer")?;
    let refresh = tokens["refreshToken"].as_str().unwrap_or_default();
    Ok((bearer(access)?, refresh.to_owned()))
}

/// A setup call, retried while the server says "later" (429, 503) or the
/// shopper's profile is still being created (404 from svc-user).
async fn setup_call(
    rest: &RestClient,
    method: Method,
    path: &str,
    auth: Option<&HeaderValue>,
    body: Option<Value>,
    retry_not_found: bool,
) -> Result<Value, Failure> {
    let uri = path_uri(path).map_err(|_| Failure::BadResponse)?;
    let body = body.map(|b| Bytes::from(b.to_string()));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let failure = match rest
            .call(
                method.clone(),
                uri.clone(),
                auth.cloned(),
                body.clone(),
                true,
            )
            .await
        {
            Ok(reply) if reply.body.is_empty() => return Ok(Value::Null),
            Ok(reply) => {
                return serde_json::from_slice(&reply.body).map_err(|_| Failure::BadResponse);
            }
            Err(failure) => failure,
        };
        let wait = match failure {
            Failure::Http(429 | 503) | Failure::Timeout | Failure::Transport => {
                Duration::from_secs(1)
            }
            Failure::Http(404) if retry_not_found => Duration::from_millis(200),
            _ => return Err(failure),
        };
        if Instant::now() + wait > deadline {
            return Err(failure);
        }
        tokio::time::sleep(wait).await;
    }
}

async fn prepare_one(rest: &RestClient, n: usize) -> anyhow::Result<Shopper> {
    let email = format!("loadgen-{n:05}@example.com");
    let registered = setup_call(
        rest,
        Method::POST,
        "/v1/auth:register",
        None,
        Some(json!({"email": email, "password": PASSWORD, "displayName": format!("Loadgen Shopper {n}")})),
        false,
    )
    .await;
    let (auth, refresh) = match registered {
        Ok(answer) => token_pair(&answer["tokens"])?,
        // Registered by an earlier run: log in.
        Err(Failure::Http(409)) => {
            let tokens = setup_call(
                rest,
                Method::POST,
                "/v1/auth:login",
                None,
                Some(json!({"email": email, "password": PASSWORD})),
                false,
            )
            .await
            .map_err(|f| anyhow::anyhow!("logging in {email}: {}", f.label()))?;
            token_pair(&tokens)?
        }
        Err(failure) => bail!("registering {email}: {}", failure.label()),
    };
    let addresses = setup_call(
        rest,
        Method::GET,
        "/v1/me/addresses",
        Some(&auth),
        None,
        true,
    )
    .await
    .map_err(|f| anyhow::anyhow!("{email}'s addresses: {}", f.label()))?;
    let address_id = match addresses["addresses"][0]["id"].as_str() {
        Some(id) => id.to_owned(),
        None => {
            let address = json!({
                "recipient": format!("Loadgen Shopper {n}"),
                "line1": format!("{} Market Street", n + 1),
                "city": "London",
                "postalCode": "EC1A 1BB",
                "countryCode": "GB",
            });
            let created = setup_call(
                rest,
                Method::POST,
                "/v1/me/addresses",
                Some(&auth),
                Some(address),
                true,
            )
            .await
            .map_err(|f| anyhow::anyhow!("adding {email}'s address: {}", f.label()))?;
            created["id"]
                .as_str()
                .context("the new address has no id")?
                .to_owned()
        }
    };
    // Lines left by an earlier, interrupted run would change what checkout buys.
    setup_call(
        rest,
        Method::POST,
        "/v1/carts/mine:clear",
        Some(&auth),
        Some(json!({})),
        false,
    )
    .await
    .map_err(|f| anyhow::anyhow!("emptying {email}'s cart: {}", f.label()))?;
    Ok(Shopper {
        email,
        address_id,
        auth: RwLock::new(auth),
        refresh: Mutex::new((refresh, Instant::now())),
        dirty: AtomicBool::new(false),
    })
}

async fn refresh(rest: &RestClient, token: &str) -> anyhow::Result<(HeaderValue, String)> {
    let tokens = setup_call(
        rest,
        Method::POST,
        "/v1/auth:refresh",
        None,
        Some(json!({"refreshToken": token})),
        false,
    )
    .await
    .map_err(|f| anyhow::anyhow!("{}", f.label()))?;
    token_pair(&tokens)
}
