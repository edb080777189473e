//! The change feed's hub: one listener per process turns `NOTIFY
//! prmonitor_changes` into reads of `change_events` and fans the events out
//! to every stream of `GET /api/v1/events` through a broadcast channel.
//!
//! The table is the truth, the channel only a shortcut: a stream replays
//! from the table first, and again whenever it falls behind the channel, so
//! a slow client never loses an event, and the listener polls as well, so a
//! notification lost while it reconnects delays events but loses none.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection as _, AsyncPgConnection, RunQueryDsl as _};
use futures_util::StreamExt as _;
use tokio::sync::{broadcast, watch, OwnedSemaphorePermit, Semaphore};

use crate::config::DatabaseUrl;
use crate::db::change_events::{self, FeedEvent, Position};
use crate::db::DbPool;

/// The channel the triggers notify (migration `2026-12-08-000001_change_events`).
pub const CHANNEL: &str = "prmonitor_changes";
/// Events read per query, by the listener and by a stream's replay.
pub const BATCH: i64 = 500;
/// Events the channel holds for streams that are behind; one that falls
/// further behind reads the table instead.
const CHANNEL_CAPACITY: usize = 4096;
/// The backstop read when no notification came.
const POLL: Duration = Duration::from_secs(2);
/// The read again when committed events wait for an older transaction to
/// end: that transaction may write no event, so no notification would come.
const WAITING_RETRY: Duration = Duration::from_millis(50);
/// Between a failed session of the listener and the next.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);
/// Opening the listener's connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A comment line this often keeps proxies from closing an idle stream.
pub const HEARTBEAT: Duration = Duration::from_secs(15);

/// The per-process hub. Streams subscribe to it; its listener feeds it.
pub struct ChangeFeed {
    pool: DbPool,
    sender: broadcast::Sender<Arc<FeedEvent>>,
    streams: Arc<Semaphore>,
    max_streams: usize,
    stopping: watch::Receiver<bool>,
}

/// One stream's place among the [`ChangeFeed`]'s bounded streams: the slot
/// and the gauge are given back when the stream is dropped, which actix does
/// when the client goes away.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        metrics::gauge!("prmonitor_change_feed_clients").decrement(1.0);
    }
}

impl ChangeFeed {
    /// A hub serving at most `max_streams` streams, which all end when
    /// `stopping` turns true (so a graceful stop does not wait on them).
    pub fn new(pool: DbPool, max_streams: usize, stopping: watch::Receiver<bool>) -> Self {
        let (sender, _) = broadcast::channel(CHANNEL_CAPACITY);
        Self { pool, sender, streams: Arc::new(Semaphore::new(max_streams)), max_streams, stopping }
    }

    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn max_streams(&self) -> usize {
        self.max_streams
    }

    /// A slot for one more stream, or `None` when all are taken.
    pub fn admit(&self) -> Option<StreamSlot> {
        let permit = self.streams.clone().try_acquire_owned().ok()?;
        metrics::gauge!("prmonitor_change_feed_clients").increment(1.0);
        Some(StreamSlot { _permit: permit })
    }

    /// The live events from now on (subscribe before reading the table, so
    /// nothing falls between the read and the first live event).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FeedEvent>> {
        self.sender.subscribe()
    }

    /// What streams watch to end when the service stops.
    pub fn stopping(&self) -> watch::Receiver<bool> {
        self.stopping.clone()
    }

    /// The listener: `LISTEN prmonitor_changes` on a connection of its own,
    /// reconnecting when it drops, reading what each notification (or the
    /// poll) makes servable and publishing it, until `stop` turns true.
    /// Run it supervised: it returns only when stopping.
    pub async fn listen(self: Arc<Self>, url: DatabaseUrl, mut stop: watch::Receiver<bool>) {
        // Events committed before the process started are the streams'
        // replay, read from the table: the listener starts at "now".
        let mut cursor: Option<Position> = None;
        loop {
            let session = self.session(&url, &mut cursor);
            tokio::select! {
                error = session => {
                    tracing::warn!(%error, "change feed notifications interrupted; reconnecting");
                }
                () = stopped(&mut stop) => return,
            }
            tokio::select! {
                () = tokio::time::sleep(RECONNECT_PAUSE) => {}
                () = stopped(&mut stop) => return,
            }
        }
    }

    /// One connection's life; returns why it ended.
    async fn session(&self, url: &DatabaseUrl, cursor: &mut Option<Position>) -> String {
        let connect = tokio::time::timeout(CONNECT_TIMEOUT, AsyncPgConnection::establish(url.expose()));
        let mut conn = match connect.await {
            Ok(Ok(conn)) => conn,
            Ok(Err(error)) => {
                // Without notifications the poll still runs, less often.
                self.publish(cursor).await;
                return format!("cannot connect: {error}");
            }
            Err(_) => {
                // Without notifications the poll still runs, less often.
                self.publish(cursor).await;
                return format!("cannot connect within {CONNECT_TIMEOUT:?}");
            }
        };
        if let Err(error) = diesel::sql_query(format!("LISTEN {CHANNEL}")).execute(&mut conn).await {
            return format!("LISTEN failed: {error}");
        }
        tracing::debug!("change feed listening");
        // After LISTEN: what was committed while no one listened is read now.
        let mut waiting = self.publish(cursor).await;
        let mut notifications = std::pin::pin!(conn.notifications_stream());
        loop {
            let pause = if waiting { WAITING_RETRY } else { POLL };
            tokio::select! {
                notification = notifications.next() => match notification {
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return error.to_string(),
                    None => return "the connection closed".to_owned(),
                },
                () = tokio::time::sleep(pause) => {}
            }
            waiting = self.publish(cursor).await;
        }
    }

    /// Reads every servable event after `cursor` and sends each to the
    /// streams, moving `cursor` on; true when committed events wait for an
    /// older transaction (read again soon). A failed read is retried at
    /// the next notification or poll, from the same cursor.
    async fn publish(&self, cursor: &mut Option<Position>) -> bool {
        let mut conn = match self.pool.get().await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "change feed: no connection to read events");
                return false;
            }
        };
        let mut after = match *cursor {
            Some(position) => position,
            None => match change_events::tail(&mut conn).await {
                Ok(position) => {
                    *cursor = Some(position);
                    position
                }
                Err(error) => {
                    tracing::warn!(%error, "change feed: cannot read where events end");
                    return false;
                }
            },
        };
        loop {
            match change_events::read_after(&mut conn, after, BATCH).await {
                Ok((events, waiting)) => {
                    let full = events.len() as i64 == BATCH;
                    for event in events {
                        after = event.position;
                        metrics::counter!("prmonitor_change_feed_events_total", "kind" => kind_label(&event.kind))
                            .increment(1);
                        // No stream listening is no error: the table keeps the event.
                        let _ = self.sender.send(Arc::new(event));
                    }
                    *cursor = Some(after);
                    if !full {
                        return waiting;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "change feed: cannot read events");
                    return false;
                }
            }
        }
    }
}

/// The metric label of an event kind: the table's CHECK allows only these.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "pull_request" => "pull_request",
        "check_run" => "check_run",
        "status" => "status",
        "merge_group" => "merge_group",
        "required_checks" => "required_checks",
        "repository" => "repository",
        _ => "other",
    }
}

/// Resolves when `stop` turns true; never, when no one can send it any more.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    if stop.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
