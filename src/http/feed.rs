//! `GET /api/v1/events`: the change feed as Server-Sent Events.
//!
//! A stream replays what the client missed from `change_events` (after the
//! `Last-Event-ID` header or `?since=`), then follows the process's
//! [`ChangeFeed`]. Its cursor is a [`Position`]: anything at or before it is
//! never sent again, anything after it is sent once, in feed order.

use std::collections::VecDeque;
use std::sync::Arc;

use actix_web::web::Bytes;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::error::ReadError;
use super::read::{repository, text_parameter, ReadConfig};
use crate::db::change_events::{self, FeedEvent, Position};
use crate::feed::{self, ChangeFeed, StreamSlot};
use crate::ids::RepositoryId;

/// What a browser's EventSource waits before reconnecting, in milliseconds.
const RETRY_MS: u64 = 3000;
/// An event id is a BIGSERIAL: at most 19 digits.
const MAX_ID_DIGITS: usize = 19;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (0: everything kept); `Last-Event-ID` wins over it.
    #[param(value_type = Option<i64>, minimum = 0)]
    since: Option<String>,
    /// Only this repository's events, `owner/name`.
    #[param(max_length = 256, pattern = "^[^/\\x00]+/[^/\\x00]+$")]
    repository: Option<String>,
}

/// A non-negative event id, naming its source otherwise.
fn event_id(source: &str, text: &str) -> Result<i64, ReadError> {
    let invalid = || {
        ReadError::invalid(format!(
            "{source} must be an event id (a whole number of at most {MAX_ID_DIGITS} digits)"
        ))
    };
    if text.is_empty() || text.len() > MAX_ID_DIGITS || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    text.parse::<i64>().map_err(|_| invalid())
}

/// Where the client wants to resume: the `Last-Event-ID` header wins over
/// `?since=`, because a browser reconnects to the URL it first opened (with
/// its `since`) and sends the header with the last id it received.
fn resume_from(request: &HttpRequest, since: Option<&str>) -> Result<Option<i64>, ReadError> {
    if let Some(header) = request.headers().get("last-event-id") {
        let text = header.to_str().map_err(|_| ReadError::invalid("Last-Event-ID must be an event id"))?;
        return event_id("Last-Event-ID", text).map(Some);
    }
    since.map(|text| event_id("since", text)).transpose()
}

/// The change feed: what changed, as Server-Sent Events.
///
/// A stream replays what the client missed (after `Last-Event-ID` or
/// `?since=`), then follows live; a client resuming from a pruned event gets
/// `reset`. The response never ends while the service runs.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "read",
    // The board's setting: with PRMONITOR_BOARD_PUBLIC the stream needs no token.
    security((), ("bearer" = [])),
    params(
        EventsQuery,
        ("Last-Event-ID" = Option<i64>, Header, minimum = 0, description = "the last event id received (a reconnecting EventSource sends it)"),
    ),
    responses(
        (status = 200, description = "the stream: each event a change", content_type = "text/event-stream", body = super::openapi_answers::FeedMessage),
        (status = 400, description = "an unknown or malformed query parameter, or an event id or repository that cannot be one", body = super::error::ErrorBody),
        (status = 401, description = super::read::UNAUTHORIZED, body = super::error::ErrorBody),
        (status = 404, description = "not a watched repository", body = super::error::ErrorBody),
        (status = 503, description = "the instance serves as many streams as it may (PRMONITOR_CHANGE_FEED_MAX_CLIENTS), or the database is unavailable", body = super::error::ErrorBody,
            headers(("Retry-After" = i32, description = "seconds, when the streams are all taken"))),
    )
)]
#[tracing::instrument(name = "change_feed", skip_all)]
pub async fn events(
    request: HttpRequest,
    query: Result<web::Query<EventsQuery>, actix_web::Error>,
    config: web::Data<ReadConfig>,
    feed: web::Data<ChangeFeed>,
) -> Result<HttpResponse, ReadError> {
    config.authorize_board(&request)?;
    let query = query.map_err(|e| ReadError::malformed_query(&e))?.into_inner();
    let resume = resume_from(&request, query.since.as_deref())?;
    text_parameter("repository", query.repository.as_deref())?;
    let wanted = match query.repository.as_deref() {
        None => None,
        Some(full_name) => match full_name.split_once('/') {
            Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((owner.to_owned(), name.to_owned()))
            }
            _ => return Err(ReadError::invalid("repository must be owner/name")),
        },
    };
    let slot = feed.admit().ok_or(ReadError::Busy(format!(
        "this instance already serves {} change feed streams; retry later",
        feed.max_streams()
    )))?;
    let feed = feed.into_inner();
    // Subscribed before the table is read: an event published meanwhile is
    // either in the replay or in the channel (and then skipped as sent).
    let live = feed.subscribe();
    let mut conn = feed.pool().get().await?;
    let repository_id = match wanted {
        Some((owner, name)) => Some(repository(&mut conn, &owner, &name).await?.id),
        None => None,
    };
    let mut out = VecDeque::new();
    out.push_back(Bytes::from(format!("retry: {RETRY_MS}\n\n")));
    let cursor = match resume {
        // Everything kept.
        Some(0) => Position::START,
        Some(id) => match change_events::position_of(&mut conn, id).await? {
            Some(position) => position,
            None => {
                // Pruned (or never served): the client must reload, and
                // follows from here.
                let tail = change_events::tail(&mut conn).await?;
                out.push_back(Bytes::from(format!(
                    "id: {}\nevent: reset\ndata: {}\n\n",
                    tail.id,
                    serde_json::json!({
                        "reason": format!("event {id} is no longer kept; reload the state and follow from here"),
                    })
                )));
                tail
            }
        },
        None => {
            // From now on; the id tells a reconnecting browser where "now" was.
            let tail = change_events::tail(&mut conn).await?;
            out.push_back(Bytes::from(format!("id: {}\n\n", tail.id)));
            tail
        }
    };
    drop(conn);
    tracing::debug!(?cursor, ?repository_id, "change feed stream opened");
    let stream = Stream {
        stopping: feed.stopping(),
        feed,
        live,
        cursor,
        repository_id,
        out,
        replay: true,
        heartbeat: tokio::time::interval_at(tokio::time::Instant::now() + feed::HEARTBEAT, feed::HEARTBEAT),
        _slot: slot,
    };
    let body = futures_util::stream::unfold(stream, |mut stream| async move {
        let chunk = stream.next().await?;
        Some((Ok::<_, actix_web::Error>(chunk), stream))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("cache-control", "no-cache"))
        // nginx buffers responses unless told not to.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// One client's stream; dropped (with its slot) when the client goes away.
struct Stream {
    feed: Arc<ChangeFeed>,
    live: broadcast::Receiver<Arc<FeedEvent>>,
    cursor: Position,
    repository_id: Option<RepositoryId>,
    out: VecDeque<Bytes>,
    /// Read the table after `cursor` before taking live events: at the
    /// start, and after falling behind the channel.
    replay: bool,
    heartbeat: tokio::time::Interval,
    stopping: watch::Receiver<bool>,
    _slot: StreamSlot,
}

impl Stream {
    /// The next chunk to send, or `None` to end the stream (the service
    /// stops, or the table cannot be read: the client resumes from its
    /// last id, losing nothing).
    async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.out.pop_front() {
                return Some(chunk);
            }
            if *self.stopping.borrow() {
                return None;
            }
            if self.replay {
                self.replay().await?;
                continue;
            }
            tokio::select! {
                () = feed::stopped(&mut self.stopping) => return None,
                received = self.live.recv() => match received {
                    Ok(event) => self.take(&event),
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "change feed stream fell behind; reading the table");
                        self.replay = true;
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.heartbeat.tick() => self.out.push_back(Bytes::from_static(b": keep-alive\n\n")),
            }
        }
    }

    /// One batch from the table; `None` when it cannot be read.
    async fn replay(&mut self) -> Option<()> {
        let read = async {
            let mut conn = self.feed.pool().get().await.map_err(|e| e.to_string())?;
            change_events::read_after(&mut conn, self.cursor, feed::BATCH).await.map_err(|e| e.to_string())
        };
        match read.await {
            Ok((events, _)) => {
                // Those waiting for an older transaction come through the
                // listener once servable.
                if (events.len() as i64) < feed::BATCH {
                    self.replay = false;
                }
                for event in &events {
                    self.take(event);
                }
                Some(())
            }
            Err(error) => {
                tracing::warn!(%error, "change feed stream cannot read events; ending it");
                None
            }
        }
    }

    /// Queues `event` unless it was sent already (or is filtered out).
    fn take(&mut self, event: &FeedEvent) {
        if event.position <= self.cursor {
            return;
        }
        self.cursor = event.position;
        if self.repository_id.is_some_and(|wanted| wanted != event.repository_id) {
            return;
        }
        self.out.push_back(Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {}\n\n",
            event.id(),
            event.kind,
            event.json()
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_is_digits_only() {
        assert_eq!(event_id("since", "0").ok(), Some(0));
        assert_eq!(event_id("since", "42").ok(), Some(42));
        assert_eq!(event_id("since", "9223372036854775807").ok(), Some(i64::MAX));
        for bad in
            ["", "-1", "+1", " 1", "1 ", "1.0", "0x10", "9223372036854775808", "12345678901234567890", "1\0"]
        {
            assert!(event_id("since", bad).is_err(), "{bad:?}");
        }
    }
}
