//! Storing verified deliveries: the delivery row and its job, committed
//! before the acknowledgement (DESIGN.md §5 rules 1–3).
//!
//! Deliveries that arrive together are committed together (group commit). A
//! few writer tasks each take whatever deliveries are waiting, up to a limit,
//! and store them in one transaction with one statement per table. A commit
//! costs a WAL flush and several round trips; sharing them is what lets intake
//! keep pace with PostgreSQL's own single-insert rate under concurrent
//! traffic. Nobody is answered before the transaction holding their delivery
//! has committed, and at low traffic a batch is simply one delivery.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::Bytes;
use diesel_async::{AsyncConnection as _, AsyncPgConnection};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::db::deliveries::{self, DeliveryOutcome, DeliverySource, NewDelivery};
use crate::db::DbPool;
use crate::ids::{GithubRepoId, InstallationId};
use crate::queue::{self, EnqueuedJob, NewJob};
use crate::supervise::{supervise, Fatal, Restart};
use crate::webhook::envelope::{Disposition, Envelope};

/// Writer tasks: while some wait for their commit, another gathers the next
/// batch. Each holds one connection of the store's own pool while it writes.
pub const WRITERS: usize = 4;
/// A batch stops growing at this many deliveries or bytes of bodies. The
/// byte cap also bounds memory: a connection keeps a buffer as large as the
/// largest statement it sent (batches spread over the shared pool took the
/// service's peak RSS from 50 to 98 MiB in the ingest benchmark).
const MAX_BATCH: usize = 128;
const MAX_BATCH_BYTES: usize = 2 * 1024 * 1024;
/// Deliveries waiting for a writer; beyond this, handlers wait to hand theirs
/// over (within their deadline) instead of growing memory.
const QUEUE_CAPACITY: usize = 1024;

/// A verified delivery, ready to be stored.
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub installation_id: Option<InstallationId>,
    /// GitHub id and full name.
    pub repository: Option<(GithubRepoId, String)>,
    pub outcome: DeliveryOutcome,
    pub job: Option<NewJob>,
    pub body: Bytes,
    pub source: DeliverySource,
    /// GitHub's time of the attempt, when known (the deliveries API tells it).
    pub github_delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The request headers that describe the delivery (see
    /// [`super::envelope::recorded_headers`]); `None` where there was no request.
    pub headers: Option<serde_json::Value>,
}

impl DeliveryRecord {
    /// The record of a verified body `body` of `event`, routed by its
    /// envelope, as intake stores it. Its job (if any) gets `max_attempts`.
    pub fn from_envelope(
        delivery_id: String,
        event: String,
        envelope: &Envelope,
        body: Bytes,
        max_attempts: i32,
    ) -> Self {
        let (outcome, job) = match &envelope.disposition {
            Disposition::Ping => (DeliveryOutcome::Ping, None),
            Disposition::Ignore => (DeliveryOutcome::Ignored, None),
            Disposition::Enqueue(job) => {
                (DeliveryOutcome::Queued, Some(NewJob { max_attempts, ..job.clone() }))
            }
        };
        Self {
            delivery_id,
            event,
            action: envelope.action.clone(),
            installation_id: envelope.installation_id,
            repository: envelope.repository.as_ref().map(|r| (r.github_id, r.full_name.clone())),
            outcome,
            job,
            body,
            source: DeliverySource::Webhook,
            github_delivered_at: None,
            headers: None,
        }
    }

    /// A delivery gap recovery knows of but does not fetch: `job` (a sweep of
    /// its repository) stands for it. Stored without a payload.
    pub fn without_payload(
        delivery_id: String,
        event: String,
        action: Option<String>,
        installation_id: Option<InstallationId>,
        repository: Option<(GithubRepoId, String)>,
        job: NewJob,
        github_delivered_at: chrono::DateTime<chrono::Utc>,
    ) -> Self {
        Self {
            delivery_id,
            event,
            action,
            installation_id,
            repository,
            outcome: DeliveryOutcome::Recovered,
            job: Some(job),
            body: Bytes::new(),
            source: DeliverySource::Recovery,
            github_delivered_at: Some(github_delivered_at),
            headers: None,
        }
    }

    /// As fetched by gap recovery: outcome `recovered` while its job is due.
    pub fn recovered(self, github_delivered_at: Option<chrono::DateTime<chrono::Utc>>) -> Self {
        let outcome = if self.job.is_some() { DeliveryOutcome::Recovered } else { self.outcome };
        Self { outcome, source: DeliverySource::Recovery, github_delivered_at, ..self }
    }

    fn row(&self, job_id: Option<i64>) -> NewDelivery<'_> {
        NewDelivery {
            delivery_id: &self.delivery_id,
            event: &self.event,
            action: self.action.as_deref(),
            installation_id: self.installation_id,
            repository_github_id: self.repository.as_ref().map(|(id, _)| *id),
            repository_full_name: self.repository.as_ref().map(|(_, name)| name.as_str()),
            outcome: self.outcome.as_str(),
            job_id,
            // An empty body is never a delivery (intake refuses anything but
            // a JSON object): it is a recovered one stored without its payload.
            payload: (!self.body.is_empty()).then_some(&self.body[..]),
            // Intake caps bodies at 25 MiB, which fits in an i32.
            payload_size: i32::try_from(self.body.len()).unwrap_or(i32::MAX),
            source: self.source.as_str(),
            github_delivered_at: self.github_delivered_at,
            headers: self.headers.as_ref(),
        }
    }
}

/// How a delivery ended once committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    New {
        outcome: DeliveryOutcome,
        job: Option<EnqueuedJob>,
    },
    /// Its id was stored before: nothing was written.
    Duplicate,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Nothing was stored; trying again later may work (503).
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// PostgreSQL answered with an error for this delivery (500).
    #[error("the database refused the delivery: {0}")]
    Refused(String),
}

impl StoreError {
    /// A lost or broken connection is the database being away; an error
    /// PostgreSQL answered with is a fault of ours.
    fn from_db(error: diesel::result::Error) -> Self {
        match error {
            ref away if crate::db::is_unavailable(away) => Self::Unavailable(error.to_string()),
            diesel::result::Error::DatabaseError(..) => Self::Refused(error.to_string()),
            other => Self::Unavailable(other.to_string()),
        }
    }
}

/// The handle request handlers store deliveries through.
#[derive(Clone)]
pub struct DeliveryStore {
    sender: mpsc::Sender<Pending>,
}

struct Pending {
    record: DeliveryRecord,
    reply: oneshot::Sender<Result<Stored, StoreError>>,
}

impl DeliveryStore {
    /// Starts the writer tasks on the current tokio runtime. They end when the
    /// last handle is dropped and the waiting deliveries are written.
    ///
    /// `pool` should be the store's own, of [`WRITERS`] connections: batches
    /// are large statements and a connection keeps a buffer the size of the
    /// largest it sent, so only these few should carry them (and the
    /// worker's load can never take intake's connections).
    ///
    /// A writer that panics is restarted (the handlers of its batch got 503s:
    /// nothing of theirs was acknowledged); one that keeps panicking is
    /// `fatal`.
    pub fn start(pool: DbPool, fatal: Fatal) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE_CAPACITY);
        let receiver = Arc::new(Mutex::new(receiver));
        // Writers end by themselves, when the last handle is gone: nothing stops them.
        let (_, running) = tokio::sync::watch::channel(false);
        for _ in 0..WRITERS {
            let (pool, receiver) = (pool.clone(), receiver.clone());
            tokio::spawn(supervise(
                "intake writer",
                Restart::OnPanic,
                running.clone(),
                fatal.clone(),
                move || run_writer(pool.clone(), receiver.clone()),
            ));
        }
        Self { sender }
    }

    /// Resolves once the delivery is committed (or known to be a duplicate).
    pub async fn store(&self, record: DeliveryRecord) -> Result<Stored, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Pending { record, reply })
            .await
            .map_err(|_| StoreError::Unavailable("the delivery writer has stopped".into()))?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the delivery writer stopped before committing".into()))?
    }
}

/// Stores `records` (distinct delivery ids) in one transaction on `conn`,
/// as the writers do, for those that store outside intake (gap recovery):
/// the same deduplication by delivery id, so a delivery recovered and then
/// redelivered by GitHub is stored, and processed, once.
pub async fn store_now(
    conn: &mut AsyncPgConnection,
    records: &[DeliveryRecord],
) -> Result<Vec<Stored>, StoreError> {
    let records: Vec<&DeliveryRecord> = records.iter().collect();
    commit(conn, &records).await
}

async fn run_writer(pool: DbPool, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    loop {
        let mut batch = {
            // One writer gathers at a time; the others are committing.
            let mut receiver = receiver.lock().await;
            let Some(first) = receiver.recv().await else { return };
            let mut bytes = first.record.body.len();
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
                let Ok(next) = receiver.try_recv() else { break };
                bytes += next.record.body.len();
                batch.push(next);
            }
            batch
        };
        // A handler that gave up has answered 503; not storing its delivery
        // keeps that answer true (GitHub will redeliver it).
        batch.retain(|pending| !pending.reply.is_closed());
        if !batch.is_empty() {
            write(&pool, batch).await;
        }
    }
}

/// Stores a batch and answers every handler in it.
async fn write(pool: &DbPool, batch: Vec<Pending>) {
    metrics::histogram!("prmonitor_intake_batch_deliveries").record(batch.len() as f64);
    let mut conn = match pool.get().await {
        Ok(conn) => conn,
        Err(error) => {
            let error = StoreError::Unavailable(error.to_string());
            for pending in batch {
                let _ = pending.reply.send(Err(error.clone()));
            }
            return;
        }
    };
    // The same id twice in one batch (a redelivery racing the original): the
    // first is stored, the others share its fate as duplicates.
    let mut seen = HashSet::new();
    let (firsts, repeats): (Vec<Pending>, Vec<Pending>) =
        batch.into_iter().partition(|pending| seen.insert(pending.record.delivery_id.clone()));
    let records: Vec<&DeliveryRecord> = firsts.iter().map(|pending| &pending.record).collect();
    let results = match commit(&mut conn, &records).await {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        Err(error @ StoreError::Unavailable(_)) => vec![Err(error); records.len()],
        // One delivery the database refuses must not fail the others: each
        // is tried alone, so only the one at fault gets the error.
        Err(StoreError::Refused(error)) => {
            tracing::warn!(%error, deliveries = records.len(), "a batch was refused; storing its deliveries one by one");
            let mut results = Vec::with_capacity(records.len());
            for record in &records {
                results.push(commit(&mut conn, std::slice::from_ref(record)).await.map(|mut s| s.remove(0)));
            }
            results
        }
    };
    let mut fates = std::collections::HashMap::new();
    for (pending, result) in firsts.into_iter().zip(results) {
        if let Err(error) = &result {
            tracing::warn!(delivery_id = %pending.record.delivery_id, %error, "delivery not stored");
        }
        fates.insert(pending.record.delivery_id.clone(), result.clone().map(|_| Stored::Duplicate));
        let _ = pending.reply.send(result);
    }
    for pending in repeats {
        let fate = fates.get(&pending.record.delivery_id).cloned().unwrap_or(Ok(Stored::Duplicate));
        let _ = pending.reply.send(fate);
    }
}

/// One transaction for `records` (distinct delivery ids): their jobs in one
/// statement, their rows in another. Ids stored before are found on the row
/// insert; the transaction is then rolled back — taking the jobs enqueued for
/// them along — and retried without them. Duplicates are rare, so the common
/// case is two statements.
async fn commit(
    conn: &mut AsyncPgConnection,
    records: &[&DeliveryRecord],
) -> Result<Vec<Stored>, StoreError> {
    enum Abort {
        Duplicates(Vec<String>),
        Db(diesel::result::Error),
    }
    impl From<diesel::result::Error> for Abort {
        fn from(error: diesel::result::Error) -> Self {
            Self::Db(error)
        }
    }

    let mut duplicates: HashSet<String> = HashSet::new();
    loop {
        let fresh: Vec<&DeliveryRecord> =
            records.iter().copied().filter(|r| !duplicates.contains(&r.delivery_id)).collect();
        if fresh.is_empty() {
            return Ok(vec![Stored::Duplicate; records.len()]);
        }
        let attempt = conn
            .transaction::<_, Abort, _>(async |conn| {
                let jobs: Vec<&NewJob> = fresh.iter().filter_map(|r| r.job.as_ref()).collect();
                let mut enqueued = queue::enqueue_many(conn, &jobs).await?.into_iter();
                let assigned: Vec<Option<EnqueuedJob>> =
                    fresh.iter().map(|r| r.job.as_ref().and_then(|_| enqueued.next())).collect();
                let rows: Vec<NewDelivery<'_>> =
                    fresh.iter().zip(&assigned).map(|(r, job)| r.row(job.map(|j| j.id))).collect();
                let inserted: HashSet<String> =
                    deliveries::insert_new(conn, &rows).await?.into_iter().collect();
                if inserted.len() < fresh.len() {
                    let stored_before = fresh
                        .iter()
                        .filter(|r| !inserted.contains(&r.delivery_id))
                        .map(|r| r.delivery_id.clone());
                    return Err(Abort::Duplicates(stored_before.collect()));
                }
                Ok(fresh.iter().map(|r| r.delivery_id.as_str()).zip(assigned).collect::<Vec<_>>())
            })
            .await;
        match attempt {
            Ok(assigned) => {
                let jobs: std::collections::HashMap<&str, Option<EnqueuedJob>> =
                    assigned.into_iter().collect();
                return Ok(records
                    .iter()
                    .map(|r| match jobs.get(r.delivery_id.as_str()) {
                        Some(job) => Stored::New { outcome: r.outcome, job: *job },
                        None => Stored::Duplicate,
                    })
                    .collect());
            }
            Err(Abort::Duplicates(ids)) => duplicates.extend(ids),
            Err(Abort::Db(error)) => return Err(StoreError::from_db(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    #[test]
    fn a_server_shutting_down_is_unavailable_not_a_refusal() {
        let shutdown = Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new("terminating connection due to administrator command".to_owned()),
        );
        assert!(matches!(StoreError::from_db(shutdown), StoreError::Unavailable(_)));
        let refused =
            Error::DatabaseError(DatabaseErrorKind::CheckViolation, Box::new("violates check".to_owned()));
        assert!(matches!(StoreError::from_db(refused), StoreError::Refused(_)));
    }
}
