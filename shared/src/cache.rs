//! Cache-aside for customer reads in Redis: never stale after a committed change, never
//! required to answer.
//!
//! **Keys.** One hash per customer, `cs:v1:{organization}:customer:{customer}`, holds each
//! cached view ([`View`]) and the customer's `token`; one string per organization,
//! `cs:v1:{organization}:generation`. The organization is always the caller's, from the
//! verified token: a client cannot name a key.
//!
//! **Freshness.** A writer commits, then replaces the customer's token (a job that changes a
//! whole organization replaces its generation) with a random one, before it answers. A reader
//! takes the generation and the token *before* it reads the database and stamps the value it
//! stores with them; a value is served only while its stamp equals the current generation and
//! token. So a reader that read the database before a commit may still store its old value
//! after the writer's invalidation, but that value is never served: the race this closes. The
//! invalidation that cannot reach Redis is remembered: before this process uses Redis again, it
//! replaces the generation of every organization it could not invalidate. The race accepted:
//! other processes that reach Redis meanwhile, or all of them if this one ends first, may serve
//! the old value until its hash expires, at most the TTL after the hash was made (`EXPIRE … NX`:
//! reads never extend it). Tokens are random, so an expired and remade hash or an evicted
//! generation can never make an old stamp valid again.
//!
//! **Never required.** Each call waits at most the configured timeout (milliseconds); a
//! failure opens a circuit that sends reads straight to PostgreSQL for a pause, after which
//! Redis is tried again. Invalidations are tried even while the circuit is open.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::config::CacheConfig;
use crate::error::ApiError;

/// A cached answer about one customer; each is a field of the customer's hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `GET /customers/{id}`, gRPC `GetCustomer` / `BatchGetCustomers`, and the loyalty card.
    Customer,
    /// `GET /customers/{id}/360`.
    Customer360,
}

impl View {
    fn field(self) -> &'static str {
        match self {
            View::Customer => "customer",
            View::Customer360 => "360",
        }
    }

    const ALL: [View; 2] = [View::Customer, View::Customer360];
}

/// What a transaction changed, for the invalidation after its commit.
#[derive(Debug, Default)]
pub struct Changes {
    pub customers: Vec<Uuid>,
    /// A job changed customers of the whole organization (scores of a run).
    pub organization: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.customers.is_empty() && !self.organization
    }
}

/// How the cache answered so far in this process (hits, misses, reads that skipped Redis).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub skipped: u64,
}

/// The cache of this process. Cheap to clone; [`Cache::disabled`] reads the database always.
#[derive(Clone, Default)]
pub struct Cache(Option<Arc<Redis>>);

struct Redis {
    client: redis::Client,
    connection: OnceCell<ConnectionManager>,
    /// Organizations whose invalidation failed: their generation is replaced before anything
    /// else this process asks of Redis. Each with the number of its last failure, so that a
    /// failure during a retry is not forgotten by it.
    unfinished: std::sync::Mutex<HashMap<Uuid, u64>>,
    failures: AtomicU64,
    ttl_seconds: i64,
    timeout: Duration,
    circuit: Circuit,
    hits: AtomicU64,
    misses: AtomicU64,
    skipped: AtomicU64,
}

/// The stamps a reader took before reading the database, for storing what it read.
struct Stamps {
    generation: String,
    tokens: HashMap<Uuid, String>,
}

impl Cache {
    pub fn disabled() -> Self {
        Self(None)
    }

    /// A cache over `REDIS_URL` when one is configured. Nothing connects yet: the connection is
    /// made by the first call that needs it, and remade after a failure.
    pub fn from_config(config: &CacheConfig) -> anyhow::Result<Self> {
        let Some(url) = &config.url else { return Ok(Self::disabled()) };
        let url = url.expose();
        if url.starts_with("rediss://") {
            // rustls needs one process-wide provider; an earlier install is as good.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let client = redis::Client::open(url)
            .map_err(|_| anyhow::anyhow!("REDIS_URL is not a valid redis:// or rediss:// address"))?;
        Ok(Self(Some(Arc::new(Redis {
            client,
            connection: OnceCell::new(),
            unfinished: Default::default(),
            failures: AtomicU64::new(0),
            ttl_seconds: i64::try_from(config.ttl.as_secs()).unwrap_or(i64::MAX),
            timeout: config.timeout,
            circuit: Circuit::new(config.pause),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }))))
    }

    /// The cache of the environment's settings ([`CacheConfig::load`]): what every `main` builds.
    pub async fn load() -> anyhow::Result<Self> {
        Self::from_config(&CacheConfig::load().await?)
    }

    pub fn stats(&self) -> CacheStats {
        self.0.as_ref().map_or_else(CacheStats::default, |redis| CacheStats {
            hits: redis.hits.load(Ordering::Relaxed),
            misses: redis.misses.load(Ordering::Relaxed),
            skipped: redis.skipped.load(Ordering::Relaxed),
        })
    }

    /// `view` of one customer: from the cache when it holds a valid one, else from `load`,
    /// whose answer is then stored.
    pub async fn read<T, Load, Fut>(
        &self,
        organization_id: Uuid,
        view: View,
        customer_id: Uuid,
        load: Load,
    ) -> Result<T, ApiError>
    where
        T: Serialize + DeserializeOwned,
        Load: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, ApiError>>,
    {
        let (mut found, stamps) = self.lookup::<T>(organization_id, view, &[customer_id]).await;
        if let Some(value) = found.remove(&customer_id) {
            return Ok(value);
        }
        let value = load().await?;
        if let Some(stamps) = stamps {
            self.store(organization_id, view, &stamps, [(customer_id, &value)]).await;
        }
        Ok(value)
    }

    /// [`Cache::read`] for many customers in one round trip: `load` gets the ids the cache did
    /// not answer and returns what exists of them; the answer follows the order of `ids`, and
    /// ids that exist nowhere are left out.
    pub async fn read_many<T, Load, Fut>(
        &self,
        organization_id: Uuid,
        view: View,
        ids: &[Uuid],
        id_of: fn(&T) -> Uuid,
        load: Load,
    ) -> Result<Vec<T>, ApiError>
    where
        T: Serialize + DeserializeOwned + Clone,
        Load: FnOnce(Vec<Uuid>) -> Fut,
        Fut: Future<Output = Result<Vec<T>, ApiError>>,
    {
        let (mut found, stamps) = self.lookup::<T>(organization_id, view, ids).await;
        let mut missing: Vec<Uuid> = ids.iter().copied().filter(|id| !found.contains_key(id)).collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            let loaded = load(missing).await?;
            if let Some(stamps) = stamps {
                self.store(organization_id, view, &stamps, loaded.iter().map(|value| (id_of(value), value))).await;
            }
            found.extend(loaded.into_iter().map(|value| (id_of(&value), value)));
        }
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    /// Makes every cached view of what `changes` names invalid. Called after the commit and
    /// before the writer answers; tried even while reads skip Redis.
    pub async fn invalidate(&self, organization_id: Uuid, changes: &Changes) {
        let Some(redis) = &self.0 else { return };
        if changes.is_empty() {
            return;
        }
        let mut pipe = redis::pipe();
        if changes.organization {
            pipe.set(generation_key(organization_id), random_token()).ignore();
        }
        for customer_id in &changes.customers {
            let key = customer_key(organization_id, *customer_id);
            pipe.hset(&key, "token", random_token()).ignore();
            pipe.hdel(&key, &View::ALL.map(View::field)[..]).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(redis.ttl_seconds).arg("NX").ignore();
        }
        if redis.run::<()>(&pipe, true).await.is_none() {
            let failure = redis.failures.fetch_add(1, Ordering::Relaxed);
            redis.unfinished.lock().expect("unfinished lock").insert(organization_id, failure);
            tracing::warn!(
                %organization_id,
                customers = changes.customers.len(),
                organization = changes.organization,
                "cache invalidation failed: retried as an organization-wide one on the next call"
            );
        }
    }

    /// The valid cached views among `ids`, and the stamps to store the others with (`None`
    /// when Redis is not answering).
    async fn lookup<T: DeserializeOwned>(
        &self,
        organization_id: Uuid,
        view: View,
        ids: &[Uuid],
    ) -> (HashMap<Uuid, T>, Option<Stamps>) {
        let Some(redis) = &self.0 else { return (HashMap::new(), None) };
        if !redis.circuit.is_closed() {
            redis.skipped.fetch_add(ids.len() as u64, Ordering::Relaxed);
            return (HashMap::new(), None);
        }
        let generation_key = generation_key(organization_id);
        let mut pipe = redis::pipe();
        pipe.get(&generation_key);
        for id in ids {
            pipe.cmd("HMGET").arg(customer_key(organization_id, *id)).arg("token").arg(view.field());
        }
        let Some((generation, entries)) = redis.run::<Vec<redis::Value>>(&pipe, false).await.and_then(|values| {
            let mut values = values.into_iter();
            let generation: Option<String> = redis::from_redis_value(values.next()?).ok()?;
            let entries: Vec<(Option<String>, Option<Vec<u8>>)> =
                values.map(redis::from_redis_value).collect::<Result<_, _>>().ok()?;
            Some((generation, entries))
        }) else {
            redis.skipped.fetch_add(ids.len() as u64, Ordering::Relaxed);
            return (HashMap::new(), None);
        };
        let generation = match generation {
            Some(generation) => generation,
            // None yet (or evicted): make one, so that no stored value goes unstamped.
            None => {
                let mut pipe = redis::pipe();
                pipe.cmd("SET").arg(&generation_key).arg(random_token()).arg("NX").arg("GET");
                pipe.get(&generation_key);
                match redis.run::<(Option<String>, Option<String>)>(&pipe, false).await {
                    Some((_, Some(generation))) => generation,
                    _ => return (HashMap::new(), None),
                }
            }
        };
        let mut found = HashMap::new();
        let mut tokens = HashMap::new();
        let mut hits = 0;
        for (id, (token, value)) in ids.iter().zip(entries) {
            let token = token.unwrap_or_default();
            let valid = value.as_deref().and_then(|value| unstamp(value, &generation, &token));
            match valid.and_then(|json| serde_json::from_slice::<T>(json).ok()) {
                Some(value) => {
                    hits += 1;
                    found.insert(*id, value);
                }
                None => {
                    tokens.insert(*id, token);
                }
            }
        }
        redis.hits.fetch_add(hits, Ordering::Relaxed);
        redis.misses.fetch_add(ids.len() as u64 - hits, Ordering::Relaxed);
        (found, Some(Stamps { generation, tokens }))
    }

    async fn store<'a, T: Serialize + 'a>(
        &self,
        organization_id: Uuid,
        view: View,
        stamps: &Stamps,
        values: impl IntoIterator<Item = (Uuid, &'a T)>,
    ) {
        let Some(redis) = &self.0 else { return };
        let mut pipe = redis::pipe();
        for (id, value) in values {
            let Some(token) = stamps.tokens.get(&id) else { continue };
            let Ok(json) = serde_json::to_vec(value) else { continue };
            let key = customer_key(organization_id, id);
            pipe.hset(&key, view.field(), stamp(&stamps.generation, token, &json)).ignore();
            pipe.cmd("EXPIRE").arg(&key).arg(redis.ttl_seconds).arg("NX").ignore();
        }
        redis.run::<()>(&pipe, false).await;
    }
}

impl Redis {
    /// Runs `pipe` within the timeout; `None` when Redis did not answer in time, which opens the
    /// circuit. Reads (`even_if_open` false) do not try while the circuit is open.
    async fn run<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline, even_if_open: bool) -> Option<T> {
        if !even_if_open && !self.circuit.is_closed() {
            return None;
        }
        let attempt = async {
            let connection = self
                .connection
                .get_or_try_init(|| {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.timeout))
                        .set_response_timeout(Some(self.timeout))
                        .set_number_of_retries(1);
                    ConnectionManager::new_with_config(self.client.clone(), config)
                })
                .await?;
            let mut connection = connection.clone();
            let unfinished: Vec<(Uuid, u64)> =
                self.unfinished.lock().expect("unfinished lock").iter().map(|(id, n)| (*id, *n)).collect();
            if !unfinished.is_empty() {
                let mut retry = redis::pipe();
                for (organization_id, _) in &unfinished {
                    retry.set(generation_key(*organization_id), random_token()).ignore();
                }
                retry.query_async::<()>(&mut connection).await?;
                let mut still = self.unfinished.lock().expect("unfinished lock");
                for (organization_id, failure) in unfinished {
                    if still.get(&organization_id) == Some(&failure) {
                        still.remove(&organization_id);
                    }
                }
            }
            pipe.query_async::<T>(&mut connection).await
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(Ok(value)) => {
                self.circuit.close();
                Some(value)
            }
            Ok(Err(error)) => {
                self.circuit.open(&format!("{:?}", error.kind()));
                None
            }
            Err(_) => {
                self.circuit.open("timed out");
                None
            }
        }
    }
}

/// After a failure, reads skip Redis for `pause`; then the next read tries it again.
struct Circuit {
    pause: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` until which reads skip Redis; 0 when closed.
    open_until: AtomicU64,
}

impl Circuit {
    fn new(pause: Duration) -> Self {
        Self { pause, epoch: Instant::now(), open_until: AtomicU64::new(0) }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn is_closed(&self) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until == 0 || self.now() >= until
    }

    fn open(&self, why: &str) {
        let until = self.now() + u64::try_from(self.pause.as_millis()).unwrap_or(u64::MAX / 2);
        if self.open_until.swap(until, Ordering::Relaxed) == 0 {
            tracing::warn!(
                why,
                pause_ms = self.pause.as_millis() as u64,
                "cache unavailable: reading from the database"
            );
        }
    }

    fn close(&self) {
        if self.open_until.swap(0, Ordering::Relaxed) != 0 {
            tracing::info!("cache available again");
        }
    }
}

/// The hash of one customer's cached views and token.
pub fn customer_key(organization_id: Uuid, customer_id: Uuid) -> String {
    format!("cs:v1:{organization_id}:customer:{customer_id}")
}

/// The generation of an organization's cached views.
pub fn generation_key(organization_id: Uuid) -> String {
    format!("cs:v1:{organization_id}:generation")
}

fn random_token() -> String {
    Uuid::new_v4().simple().to_string()
}

/// `generation token\n` then the JSON answer.
fn stamp(generation: &str, token: &str, json: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(generation.len() + token.len() + 2 + json.len());
    value.extend_from_slice(generation.as_bytes());
    value.push(b' ');
    value.extend_from_slice(token.as_bytes());
    value.push(b'\n');
    value.extend_from_slice(json);
    value
}

/// The JSON of `value` when its stamp is `generation` and `token`.
fn unstamp<'a>(value: &'a [u8], generation: &str, token: &str) -> Option<&'a [u8]> {
    let newline = value.iter().position(|byte| *byte == b'\n')?;
    let (head, json) = value.split_at(newline);
    let (stamped_generation, stamped_token) = std::str::from_utf8(head).ok()?.split_once(' ')?;
    (stamped_generation == generation && stamped_token == token).then_some(&json[1..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_valid_only_under_the_stamps_it_was_stored_with() {
        let value = stamp("g1", "t1", br#"{"a":1}"#);
        assert_eq!(unstamp(&value, "g1", "t1"), Some(&br#"{"a":1}"#[..]));
        assert_eq!(unstamp(&value, "g2", "t1"), None);
        assert_eq!(unstamp(&value, "g1", "t2"), None);
        assert_eq!(unstamp(&value, "g1", ""), None);
        let untouched = stamp("g1", "", b"{}");
        assert_eq!(unstamp(&untouched, "g1", ""), Some(&b"{}"[..]));
        assert_eq!(unstamp(b"no stamp", "g1", ""), None);
    }

    #[test]
    fn keys_carry_the_format_version_and_the_organization() {
        let (organization, customer) = (Uuid::nil(), Uuid::max());
        assert_eq!(customer_key(organization, customer), format!("cs:v1:{organization}:customer:{customer}"));
    }
}
