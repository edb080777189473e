//! The bodies of the fuzz targets under `fuzz/` (one function per target).
//!
//! Each function takes libFuzzer's raw bytes, derives structured inputs from
//! them by plain slicing, calls the code under test and asserts its
//! documented properties: a panic here is a finding. The fuzz targets call
//! these functions, and the tests below replay the kept inputs of
//! `fuzz/regressions/NAME/` through them, so `cargo test` re-checks every
//! crash once found.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::config::Secret;
use crate::github::link::next_link;
use crate::github::models::{IdOnly, PullRequest};
use crate::github::pacing::{self, Budget, Purpose};
use crate::github::policy::{self, LimitHeaders, Verdict, MAX_WAIT};
use crate::ids::{CommitSha, GithubRepoId, PullRequestNumber};
use crate::monitor::data::PrData;
use crate::monitor::delivered::{self, DeliveredPayload};
use crate::queue::JobKind;
use crate::webhook::envelope::{self, Disposition, EnvelopeError};
use crate::webhook::signature::{self, SignatureError};

/// The events intake tracks, plus `ping` and `push`.
pub const EVENT_NAMES: [&str; 9] = envelope::KNOWN_EVENTS;

/// The secrets the `signature` target signs and verifies with.
const SECRET_A: &str = "It's a Secret to Everybody";
const SECRET_B: &str = "old secret";

/// Reads fixed-size values off the front of the input; past its end every
/// value is zero and every slice empty, so any input is a valid one.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        head
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let head = self.bytes(N);
        out[..head.len()].copy_from_slice(head);
        out
    }

    fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }

    /// Any bit pattern: NaN, infinities, negative zero and subnormals included.
    fn f64(&mut self) -> f64 {
        f64::from_bits(self.u64())
    }

    /// A slice whose length is the next byte.
    fn short(&mut self) -> &'a [u8] {
        let n = usize::from(self.u8());
        self.bytes(n)
    }

    fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// `webhook::signature::verify` against an oracle written from its contract.
///
/// Layout: `[flags] [header length] header body`. Flags bits 0–1 choose the
/// secrets (none, A, A+B, B+A), bit 2 sends no header at all, bits 3–4 choose
/// the header: as given, signed with A, signed with B, or signed with A with
/// one byte (position and mask from the next two bytes) changed.
pub fn signature(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let given = input.short();
    let (position, mask) = (usize::from(input.u8()), input.u8());
    let body = input.rest();
    let (a, b) = (Secret::new(SECRET_A), Secret::new(SECRET_B));
    let secrets = match flags & 3 {
        0 => vec![],
        1 => vec![a.clone()],
        2 => vec![a.clone(), b.clone()],
        _ => vec![b.clone(), a.clone()],
    };

    // The property: a body signed with any configured secret verifies.
    for secret in &secrets {
        let header = signature::sign(secret, body);
        assert_eq!(signature::verify(&secrets, body, Some(header.as_bytes())), Ok(()));
    }

    let header: Option<Vec<u8>> = if flags & 4 != 0 {
        None
    } else {
        Some(match (flags >> 3) & 3 {
            0 => given.to_vec(),
            1 => signature::sign(&a, body).into_bytes(),
            2 => signature::sign(&b, body).into_bytes(),
            _ => {
                let mut header = signature::sign(&a, body).into_bytes();
                let at = position % header.len();
                header[at] ^= mask;
                header
            }
        })
    };
    let result = signature::verify(&secrets, body, header.as_deref());
    let expected = match header.as_deref() {
        None => Err(SignatureError::Missing),
        Some(header) => match header.strip_prefix(b"sha256=") {
            Some(hex) if hex.len() == 64 && hex.iter().all(u8::is_ascii_hexdigit) => {
                // hex digits decode in either case; GitHub writes lower case.
                let lower = hex.to_ascii_lowercase();
                let signed_by = |s: &Secret| signature::sign(s, body).as_bytes()[7..] == lower[..];
                if secrets.iter().any(signed_by) {
                    Ok(())
                } else {
                    Err(SignatureError::Mismatch)
                }
            }
            _ => Err(SignatureError::Malformed),
        },
    };
    assert_eq!(result, expected, "header {:?}", header.as_deref().map(String::from_utf8_lossy));
}

/// `webhook::envelope::{parse_headers, parse_payload}`.
///
/// Layout: `[flags] [event length] [delivery length] event delivery body`.
/// Flags bit 0 drops the event header, bit 1 the delivery header. The body is
/// parsed as the event the input names and as each of [`EVENT_NAMES`].
pub fn envelope(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let (event_len, delivery_len) = (usize::from(input.u8()), usize::from(input.u8()));
    let event = input.bytes(event_len);
    let delivery = input.bytes(delivery_len);
    let body = input.rest();

    let event_header = (flags & 1 == 0).then_some(event);
    let delivery_header = (flags & 2 == 0).then_some(delivery);
    let result = envelope::parse_headers(event_header, delivery_header);
    let event_ok = !event.is_empty()
        && event.len() <= envelope::MAX_EVENT_NAME_LEN
        && event.iter().all(|b| b.is_ascii_lowercase() || *b == b'_');
    let delivery_ok = !delivery.is_empty()
        && delivery.len() <= envelope::MAX_DELIVERY_ID_LEN
        && delivery.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-');
    match result {
        Ok(headers) => {
            assert!(event_header.is_some() && delivery_header.is_some() && event_ok && delivery_ok);
            assert_eq!(headers.event.as_bytes(), event);
            assert_eq!(headers.delivery_id.as_bytes(), delivery);
        }
        Err(EnvelopeError::MissingEvent) => assert!(event_header.is_none()),
        Err(EnvelopeError::MissingDelivery) => assert!(event_header.is_some() && delivery_header.is_none()),
        Err(EnvelopeError::MalformedEvent) => assert!(!event_ok),
        Err(EnvelopeError::MalformedDelivery) => assert!(event_ok && !delivery_ok),
        Err(other) => panic!("parse_headers answered {other:?}"),
    }

    let derived = String::from_utf8_lossy(event);
    payload(&derived, body);
    for name in EVENT_NAMES {
        payload(name, body);
    }
}

fn payload(event: &str, body: &[u8]) {
    let result = envelope::parse_payload(event, body);
    let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let envelope = match result {
        Err(EnvelopeError::NotAnObject) => {
            assert!(!object);
            return;
        }
        Err(
            EnvelopeError::InvalidJson(_)
            | EnvelopeError::MissingField { .. }
            | EnvelopeError::InvalidField { .. },
        ) => {
            assert!(object);
            return;
        }
        Err(other) => panic!("parse_payload answered {other:?}"),
        Ok(envelope) => envelope,
    };
    assert!(object && std::str::from_utf8(body).is_ok());
    if let Some(repo) = &envelope.repository {
        assert!(repo.github_id.0 > 0);
        let (owner, name) = repo.full_name.split_once('/').unwrap_or_default();
        assert!(!owner.is_empty() && !name.is_empty() && !name.contains('/'), "{}", repo.full_name);
        assert_eq!(repo.installation_id, envelope.installation_id);
    }
    match (event, &envelope.disposition) {
        ("ping", Disposition::Ping) => {}
        ("pull_request", Disposition::Enqueue(job)) => {
            assert_eq!(job.kind, JobKind::Event);
            assert!(job.coalesce_key.as_deref().is_some_and(|k| k.starts_with("pr:")));
            assert!(envelope.repository.is_some());
            let number = job.payload["number"].as_i64().unwrap_or_default();
            assert!(number > 0 && number <= i64::from(i32::MAX), "{number}");
        }
        ("check_run" | "check_suite", Disposition::Enqueue(job)) => {
            assert_eq!(job.kind, JobKind::Event);
            assert!(job.coalesce_key.as_deref().is_some_and(|k| k.starts_with("checks:")));
            let sha = job.payload["head_sha"].as_str().unwrap_or_default();
            assert!(matches!(sha.len(), 40 | 64) && sha.bytes().all(|b| b.is_ascii_hexdigit()), "{sha}");
        }
        ("repository", Disposition::Enqueue(job)) => {
            assert_eq!(job.kind, JobKind::Event);
            assert!(envelope.repository.is_some());
        }
        ("installation" | "installation_repositories", Disposition::Enqueue(job)) => {
            assert_eq!(job.kind, JobKind::Install);
            assert!(envelope.installation_id.is_some());
        }
        (
            "ping"
            | "pull_request"
            | "check_run"
            | "check_suite"
            | "repository"
            | "installation"
            | "installation_repositories",
            other,
        ) => panic!("{event} became {other:?}"),
        (_, Disposition::Ignore) => {}
        (_, other) => panic!("untracked {event:?} became {other:?}"),
    }
}

/// `github::link::next_link` on the input as a header value (lossy UTF-8).
pub fn link(data: &[u8]) {
    let header = String::from_utf8_lossy(data);
    if let Some(target) = next_link(&header) {
        assert!(header.contains(&format!("<{target}>")), "{target:?}");
        assert!(!target.contains(','), "{target:?}");
    }
    // A next link appended as its own part is always found (or an earlier one is).
    let appended = format!("{header},<https://example.invalid/?page=2>; rel=\"next\"");
    assert!(next_link(&appended).is_some());
}

/// `github::policy` and `github::pacing::wait_needed`: no panic, and no wait
/// beyond [`MAX_WAIT`], whatever numbers the headers and the clocks hold.
///
/// Layout: `[flags] limit remaining reset retry_after (u64 each) [wall flags]
/// wall seconds (u64) wall nanos (u32) [block flags] block seconds (u64)
/// block nanos (u32) status (u16) base seconds (u64) base nanos (u32) retry
/// (u32) jitter (f64 bits) reserve percent (u32) [purpose]`, then four
/// header values (length byte + bytes) for `LimitHeaders::parse` and the
/// rest as GitHub's message.
pub fn policy(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let numbers = [input.u64(), input.u64(), input.u64(), input.u64()];
    let field = |bit: usize| (flags & (1 << bit) != 0).then_some(numbers[bit]);
    let limits =
        LimitHeaders { limit: field(0), remaining: field(1), reset: field(2), retry_after: field(3) };

    let wall_flags = input.u8();
    let wall_offset = Duration::new(input.u64(), input.u32() % 1_000_000_000);
    let wall = match wall_flags & 3 {
        0 => UNIX_EPOCH.checked_add(wall_offset),
        1 => UNIX_EPOCH.checked_sub(wall_offset),
        2 => SystemTime::now().checked_add(wall_offset),
        _ => SystemTime::now().checked_sub(wall_offset),
    }
    .unwrap_or(UNIX_EPOCH);

    let block_flags = input.u8();
    let block_offset = Duration::new(input.u64(), input.u32() % 1_000_000_000);
    let now = Instant::now();
    let blocked_until = match block_flags & 3 {
        0 => None,
        1 => now.checked_add(block_offset),
        2 => now.checked_sub(block_offset),
        _ => Some(now),
    };

    let status = input.u16();
    let base = Duration::new(input.u64(), input.u32() % 1_000_000_000);
    let retry = input.u32();
    let jitter = input.f64();
    let reserve_percent = input.u32();
    let purpose = match input.u8() & 3 {
        0 => Purpose::Webhook,
        1 => Purpose::Sweep,
        2 => Purpose::Backfill,
        _ => Purpose::Installation,
    };
    let values: Vec<String> = (0..4).map(|_| String::from_utf8_lossy(input.short()).into_owned()).collect();
    let message = String::from_utf8_lossy(input.rest());

    let parsed = LimitHeaders::parse(|name| {
        let at = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset", "retry-after"]
            .iter()
            .position(|n| *n == name)?;
        Some(values[at].clone())
    });
    for (value, got) in values.iter().zip([parsed.limit, parsed.remaining, parsed.reset, parsed.retry_after])
    {
        assert_eq!(got, value.trim().parse::<u64>().ok(), "{value:?}");
    }

    for limits in [limits, parsed] {
        if let Some(wait) = limits.until_reset(wall) {
            assert!(wait <= MAX_WAIT);
        }
        assert!(policy::rate_limit_wait(&limits, wall) <= MAX_WAIT);
        match policy::classify(status, &limits, &message, wall) {
            Verdict::RateLimited { wait } => assert!(wait <= MAX_WAIT && matches!(status, 403 | 429)),
            Verdict::Success => assert!((200..300).contains(&status)),
            Verdict::NotModified => assert_eq!(status, 304),
            Verdict::Gone => assert!(matches!(status, 404 | 410)),
            Verdict::Retryable => assert!((500..600).contains(&status)),
            Verdict::Fatal => {}
        }
        for epoch in [limits.reset, limits.retry_after, limits.limit].into_iter().flatten() {
            assert!(policy::until_epoch(epoch, wall) <= MAX_WAIT);
        }

        let budget = Budget { limit: limits.limit, remaining: limits.remaining, reset: limits.reset };
        for blocked in [blocked_until, None] {
            let wait = pacing::wait_needed(&budget, blocked, purpose, reserve_percent, now, wall);
            assert!(wait.is_none_or(|w| w <= MAX_WAIT), "{wait:?}");
            let unblocked = blocked.is_none_or(|until| until <= now);
            let known = budget.limit.is_some() && budget.remaining.is_some() && budget.reset.is_some();
            if unblocked && !known {
                assert_eq!(wait, None, "an unknown budget holds nobody");
            }
            if unblocked && purpose.may_use_reserve() && budget.remaining.is_some_and(|r| r > 0) {
                assert_eq!(wait, None, "{purpose:?} may spend the reserve");
            }
        }
    }

    let backoff = policy::backoff(base, retry, jitter);
    assert!(backoff <= MAX_WAIT, "{backoff:?}");
    // Equal jitter: never less than half the (capped) base delay.
    assert!(backoff >= base.min(MAX_WAIT) / 2, "{backoff:?} for {base:?}");
    assert!(policy::until_epoch(numbers[0], wall) <= MAX_WAIT);
}

/// `monitor::delivered::{newest_pr, check_runs}`.
///
/// Layout: `[flags] repository id (i64) PR number (i64)`, then the head SHA
/// up to the first NUL byte, then the payloads, separated by NUL bytes, each
/// `[kind] body`. Kind bits 0–1 choose the event (push, pull_request,
/// check_run, check_suite: a zero byte would be a separator, so the common
/// kinds are not zero), bit 2 stands for a purged body. Flags bit 0 takes
/// the repository id, number and SHA from the first payload's body instead,
/// so that mutated payloads get past the identity checks.
pub fn delivered(data: &[u8]) {
    let mut input = Input(data);
    let flags = input.u8();
    let (mut repository, mut number) = (input.i64(), input.i64());
    let mut parts = input.rest().split(|b| *b == 0);
    let mut head_sha = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let payloads: Vec<DeliveredPayload> = parts
        .take(8)
        .map(|part| {
            let (kind, body) = part.split_first().map_or((0, &[][..]), |(k, b)| (*k, b));
            let event = ["push", "pull_request", "check_run", "check_suite"][usize::from(kind & 3)];
            DeliveredPayload { event: event.into(), body: (kind & 4 == 0).then(|| body.to_vec()) }
        })
        .collect();

    if flags & 1 != 0 {
        let first = payloads
            .first()
            .and_then(|p| p.body.as_deref())
            .and_then(|body| serde_json::from_slice::<serde_json::Value>(body).ok())
            .unwrap_or_default();
        repository = first["repository"]["id"].as_i64().unwrap_or(repository);
        number = first["pull_request"]["number"].as_i64().unwrap_or(number);
        if let Some(sha) = first["check_run"]["head_sha"].as_str() {
            head_sha = sha.to_owned();
        }
    }

    let found = PullRequestNumber::from_github(number)
        .and_then(|wanted| delivered::newest_pr(&payloads, GithubRepoId(repository), wanted));
    if let Some(pr) = found {
        assert_eq!(i64::from(pr.number.0), number);
        // Every delivery is a snapshot of this PR, none newer than the answer.
        // Read as newest_pr reads them: from_slice does not check the UTF-8 of
        // the strings it skips (intake's parse_payload did, before storing).
        #[derive(serde::Deserialize)]
        struct Snapshot {
            pull_request: PullRequest,
            repository: IdOnly,
        }
        let mut found = false;
        for payload in &payloads {
            assert_eq!(payload.event, "pull_request");
            let parsed = payload.body.as_deref().map(serde_json::from_slice::<Snapshot>);
            let Some(Ok(Snapshot { pull_request, repository: repo })) = parsed else {
                panic!("an unreadable PR snapshot was accepted")
            };
            assert_eq!(repo.id, repository);
            let Ok(snapshot) = PrData::from_github(&pull_request) else {
                panic!("a PR snapshot out of range was accepted")
            };
            assert!(snapshot.updated_at <= pr.updated_at);
            found |= snapshot == pr;
        }
        assert!(found, "the answer is one of the snapshots");
    }

    if let Some(runs) =
        delivered::check_runs(&payloads, GithubRepoId(repository), &CommitSha(head_sha.clone()))
    {
        assert!(!runs.is_empty() && runs.len() <= payloads.len());
        assert!(payloads.iter().all(|p| p.event == "check_run" && p.body.is_some()));
        for (i, run) in runs.iter().enumerate() {
            assert_eq!(run.head_sha.as_str(), head_sha);
            assert!(runs[..i].iter().all(|other| other.github_id != run.github_id), "one entry per run");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn replay(name: &str, target: fn(&[u8])) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions").join(name);
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut replayed = 0;
        for entry in entries {
            let path = entry.expect("directory entry").path();
            if path.is_file() {
                let data = std::fs::read(&path).expect("regression input");
                eprintln!("replaying {}", path.display());
                target(&data);
                replayed += 1;
            }
        }
        assert!(replayed > 0, "{} holds no regression input", dir.display());
    }

    #[test]
    fn signature_regressions() {
        replay("signature", super::signature);
    }

    #[test]
    fn envelope_regressions() {
        replay("envelope", super::envelope);
    }

    #[test]
    fn link_regressions() {
        replay("link", super::link);
    }

    #[test]
    fn policy_regressions() {
        replay("policy", super::policy);
    }

    #[test]
    fn delivered_regressions() {
        replay("delivered", super::delivered);
    }
}
