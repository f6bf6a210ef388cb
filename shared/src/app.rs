//! The application handle every operation takes, whatever the transport: the database, the
//! read cache and what follows a commit (the cache invalidation, the publish). Built once per
//! cold start.

use std::future::{self, Future};
use std::sync::Arc;

use futures_util::{stream, FutureExt, StreamExt};
use uuid::Uuid;

use crate::cache::Cache;
use crate::config::EventsConfig;
use crate::db::{Db, TenantTx};
use crate::error::loggable;
use crate::events::Relay;

#[derive(Clone)]
pub struct App {
    pub db: Db,
    /// Publishes a write's events right after it commits; `None` leaves them to the
    /// scheduled relay.
    relay: Option<Arc<Relay>>,
    pub cache: Cache,
}

impl App {
    /// An application whose events leave with the scheduled relay.
    pub fn new(db: Db) -> Self {
        Self { db, relay: None, cache: Cache::disabled() }
    }

    /// An application that publishes each write's events right after its commit.
    pub fn publishing_with(db: Db, relay: Arc<Relay>) -> Self {
        Self { db, relay: Some(relay), cache: Cache::disabled() }
    }

    /// Over `db`, publishing after commits when `events` names the outbound queue.
    pub async fn with_events(db: Db, events: &EventsConfig) -> Self {
        match &events.outbox_queue_url {
            Some(queue_url) => {
                let sqs = aws_sdk_sqs::Client::new(&crate::aws::from_env().await);
                Self::publishing_with(db.clone(), Arc::new(Relay::new(db, sqs, queue_url)))
            }
            None => Self::new(db),
        }
    }

    /// This application reading through `cache`.
    pub fn with_cache(self, cache: Cache) -> Self {
        Self { cache, ..self }
    }

    /// Commits a write, makes the cached views of what it changed invalid, then publishes the
    /// events it wrote (their message groups only, within a short budget; see
    /// `Relay::publish_after_commit`). Reads just commit. The invalidation runs even when the
    /// commit reports an error, since the commit may still have happened.
    pub async fn commit(&self, tx: TenantTx<'_>) -> anyhow::Result<()> {
        let organization_id = tx.organization_id();
        let changes = tx.take_changes();
        let committed = tx.commit().await;
        self.cache.invalidate(organization_id, &changes).await;
        let committed = committed?;
        if let Some(relay) = &self.relay {
            relay.publish_after_commit(committed.organization_id, &committed.message_groups).await;
        }
        Ok(())
    }
}

/// What a job's pass over the organizations did.
#[derive(Debug)]
pub struct Tally<T> {
    /// The result of each organization that succeeded.
    pub done: Vec<T>,
    /// Organizations whose work failed (logged).
    pub failed: usize,
    /// Whether `keep_going` stopped the pass before every organization was visited.
    pub stopped: bool,
}

/// Runs `work` for each organization, `at_once` at a time (1: in turn), for jobs: a failing
/// organization is logged under `job` and counted, and the others go on. Starts no further
/// organization once `keep_going` answers false; those already started finish.
pub async fn for_each_organization<T, Fut>(
    job: &'static str,
    organizations: impl IntoIterator<Item = Uuid>,
    at_once: usize,
    mut keep_going: impl FnMut() -> bool,
    mut work: impl FnMut(Uuid) -> Fut,
) -> Tally<T>
where
    Fut: Future<Output = anyhow::Result<T>>,
{
    let mut tally = Tally { done: Vec::new(), failed: 0, stopped: false };
    let mut stopped = false;
    let mut finished = stream::iter(organizations)
        .take_while(|_| {
            stopped = !keep_going();
            future::ready(!stopped)
        })
        .map(|organization_id| work(organization_id).map(move |result| (organization_id, result)))
        .buffer_unordered(at_once.max(1));
    while let Some((organization_id, result)) = finished.next().await {
        match result {
            Ok(result) => tally.done.push(result),
            Err(error) => {
                tally.failed += 1;
                tracing::error!(%organization_id, error = %loggable(&error), "{job} pass failed");
            }
        }
    }
    drop(finished);
    tally.stopped = stopped;
    tally
}
