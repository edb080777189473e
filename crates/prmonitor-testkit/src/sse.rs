//! Server-Sent Events as a browser's EventSource reads them (the WHATWG
//! "event stream interpretation"), for tests of `GET /api/v1/events` and of
//! anything built on it: [`Parser`] is the pure part, [`SseStream`] reads a
//! reqwest response body with it.

use std::pin::Pin;
use std::time::Duration;

use futures_util::{Stream, StreamExt as _};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The last event id as the client holds it after this event (an event
    /// without `id:` keeps the previous one, as EventSource does).
    pub id: Option<String>,
    /// `event:`; `message` when absent.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

impl Event {
    /// `data` as JSON; fails the test when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {}", self.data))
    }

    /// The id as a number; fails the test when there is none.
    pub fn id_number(&self) -> i64 {
        self.id.as_deref().and_then(|id| id.parse().ok()).unwrap_or_else(|| panic!("no numeric id: {self:?}"))
    }
}

/// What a stream carried, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A line starting with `:` (its text after the colon).
    Comment(String),
}

/// The line-by-line interpretation, fed any split of the bytes.
#[derive(Debug, Default)]
pub struct Parser {
    pending: Vec<u8>,
    /// A `\r` ended the last chunk: a `\n` opening the next one belongs to it.
    after_cr: bool,
    data: Option<String>,
    event: Option<String>,
    /// The client's last event id (set by `id:` even in a block without data).
    pub last_event_id: Option<String>,
    /// The last `retry:` value, in milliseconds.
    pub retry: Option<u64>,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; returns the items they complete.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Item> {
        let mut items = Vec::new();
        for &byte in bytes {
            if self.after_cr {
                self.after_cr = false;
                if byte == b'\n' {
                    continue;
                }
            }
            match byte {
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.pending);
                    self.line(&String::from_utf8_lossy(&line), &mut items);
                }
                _ => self.pending.push(byte),
            }
        }
        items
    }

    fn line(&mut self, line: &str, items: &mut Vec<Item>) {
        if line.is_empty() {
            // Dispatch: a block without data sets nothing but the id.
            if let Some(data) = self.data.take() {
                items.push(Item::Event(Event {
                    id: self.last_event_id.clone(),
                    event: self.event.take().unwrap_or_else(|| "message".to_owned()),
                    data,
                }));
            }
            self.event = None;
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            items.push(Item::Comment(comment.trim_start().to_owned()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            "id" if !value.contains('\0') => self.last_event_id = Some(value.to_owned()),
            "retry" => {
                if let Ok(ms) = value.parse() {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
    }
}

/// A response body read as an event stream.
pub struct SseStream {
    body: Pin<Box<dyn Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: Parser,
    queued: std::collections::VecDeque<Item>,
    /// Every item seen so far, for assertions on the whole stream.
    pub seen: Vec<Item>,
    ended: bool,
}

impl SseStream {
    /// Reads `response`, which must be a 200 `text/event-stream`.
    pub fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200, "the stream opens");
        let content_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        assert!(content_type.starts_with("text/event-stream"), "content-type {content_type}");
        Self {
            body: Box::pin(response.bytes_stream()),
            parser: Parser::new(),
            queued: Default::default(),
            seen: Vec::new(),
            ended: false,
        }
    }

    /// The client's last event id now.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id.as_deref()
    }

    pub fn retry(&self) -> Option<u64> {
        self.parser.retry
    }

    /// Reads until the server's opening is in (its `retry:`, and with
    /// `position`, the `id:` of where the stream starts), keeping every
    /// event that came with it for [`Self::next_event`]; false if it did
    /// not come within `timeout`.
    pub async fn opened(&mut self, position: bool, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.parser.retry.is_none() || (position && self.parser.last_event_id.is_none()) {
            if self.ended {
                return false;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => self.queued.extend(self.parser.feed(&chunk)),
            }
        }
        true
    }

    /// The next item, `None` when the stream ended or `timeout` passed.
    pub async fn next_item(&mut self, timeout: Duration) -> Option<Item> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(item) = self.queued.pop_front() {
                self.seen.push(item.clone());
                return Some(item);
            }
            if self.ended {
                return None;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => self.ended = true,
                Ok(Some(Ok(chunk))) => self.queued.extend(self.parser.feed(&chunk)),
            }
        }
    }

    /// The next event (comments skipped), `None` when none came in time.
    pub async fn next_event(&mut self, timeout: Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_item(left).await? {
                Item::Event(event) => return Some(event),
                Item::Comment(_) => {}
            }
        }
    }

    /// Events until `done` holds for the list (or `timeout` passes: the
    /// test then sees what came).
    pub async fn events_until(&mut self, timeout: Duration, done: impl Fn(&[Event]) -> bool) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut events = Vec::new();
        while !done(&events) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_event(left).await {
                Some(event) => events.push(event),
                None => break,
            }
        }
        events
    }

    /// Whether the server ended the stream within `timeout` (items before
    /// the end are kept in [`Self::seen`]).
    pub async fn ends_within(&mut self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return self.ended && self.queued.is_empty();
            }
            if self.next_item(left).await.is_none() {
                return self.ended;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(items: Vec<Item>) -> Vec<Event> {
        items
            .into_iter()
            .filter_map(|item| match item {
                Item::Event(event) => Some(event),
                Item::Comment(_) => None,
            })
            .collect()
    }

    #[test]
    fn blocks_split_anywhere_give_the_same_events() {
        let text = b"retry: 3000\n\nid: 4\n\n: keep-alive\n\nid: 5\nevent: pull_request\ndata: {\"a\":1}\n\ndata: x\ndata:y\r\n\r\n";
        for split in 0..text.len() {
            let mut parser = Parser::new();
            let mut items = parser.feed(&text[..split]);
            items.extend(parser.feed(&text[split..]));
            assert!(items.contains(&Item::Comment("keep-alive".into())), "split at {split}");
            let events = events(items);
            assert_eq!(
                events,
                vec![
                    Event { id: Some("5".into()), event: "pull_request".into(), data: "{\"a\":1}".into() },
                    Event { id: Some("5".into()), event: "message".into(), data: "x\ny".into() },
                ],
                "split at {split}"
            );
            assert_eq!(parser.retry, Some(3000));
        }
    }

    #[test]
    fn an_id_without_data_moves_the_last_event_id_only() {
        let mut parser = Parser::new();
        assert!(parser.feed(b"id: 17\n\n").is_empty());
        assert_eq!(parser.last_event_id.as_deref(), Some("17"));
        // A lone CR ends a line too.
        let items = parser.feed(b"event: reset\rdata: {}\r\r");
        assert_eq!(events(items)[0].id.as_deref(), Some("17"));
    }
}
