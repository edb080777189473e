//! Many changes in one call, from inside the process ([`crate::Simulator::activity`])
//! or from outside it (`POST /_sim/activity`): a standalone simulator can
//! then drive a running prmonitor, and a benchmark can ask for "N changes
//! across R repositories" at once.
//!
//! Two kinds:
//! - random activity: `changes` changes drawn with a seed from a realistic
//!   mix (PRs opened with their first check runs, pushes queueing new runs,
//!   runs started and completed, titles edited, labels, drafts, closes,
//!   merges, reopens) across some or all repositories; the same seed on the
//!   same world makes the same changes;
//! - explicit operations: a list tried in full on a copy of the repositories
//!   it touches, and kept only when every entry succeeded, so a list that
//!   fails is not half-applied.
//!
//! Each change sends the webhooks GitHub would send, rendered right after it
//! (a payload shows the world as it was then), unless `webhooks` is false:
//! the change is then silent, as if GitHub lost every delivery.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::generate::{AUTHORS, CHECKS, LABELS};
use crate::model::{Event, ModelError, NewPr, PrState, World};
use crate::prng::SplitMix64;
use crate::server::{lock, Shared};
use crate::webhooks::{self, Outgoing};

/// The most changes (or operations) one call may ask for.
pub const MAX_CHANGES: usize = 100_000;
/// The largest request body `POST /_sim/activity` reads.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long changes are made under one hold of the world's lock: API
/// requests are served between the chunks of a long activity.
const LOCK_HOLD: Duration = Duration::from_millis(20);
/// Rendered webhooks waiting to be sent beyond which an activity waits.
const UNSENT_LIMIT: usize = 1_000;

/// What to change.
#[derive(Debug, Clone, PartialEq)]
pub struct Activity {
    pub changes: Changes,
    /// Send the webhooks the changes cause (to the configured target, if any).
    pub webhooks: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Changes {
    /// `count` changes drawn from a realistic mix, in `repositories`
    /// (`owner/name`; empty: every repository), with `seed` (none: one is
    /// drawn from the world's generator and reported).
    Random { count: usize, repositories: Vec<String>, seed: Option<u64> },
    /// These operations, in order, all or none.
    Operations(Vec<Operation>),
}

impl Activity {
    /// `count` random changes in every repository, with webhooks.
    pub fn random(count: usize) -> Self {
        Self { changes: Changes::Random { count, repositories: Vec::new(), seed: None }, webhooks: true }
    }

    /// These operations, with webhooks.
    pub fn operations(operations: Vec<Operation>) -> Self {
        Self { changes: Changes::Operations(operations), webhooks: true }
    }

    /// Random changes only in these repositories (operations name their own).
    pub fn in_repositories(mut self, names: &[&str]) -> Self {
        if let Changes::Random { repositories, .. } = &mut self.changes {
            *repositories = names.iter().map(|n| (*n).to_owned()).collect();
        }
        self
    }

    /// The seed of random changes (operations need none).
    pub fn seed(mut self, value: u64) -> Self {
        if let Changes::Random { seed, .. } = &mut self.changes {
            *seed = Some(value);
        }
        self
    }

    /// Changes without webhooks, as if GitHub lost every delivery.
    pub fn silent(mut self) -> Self {
        self.webhooks = false;
        self
    }

    /// Reads the JSON body of `POST /_sim/activity`.
    pub fn from_json(body: &[u8]) -> Result<Self, ActivityError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| ActivityError::Malformed(format!("Problems parsing JSON: {e}")))?;
        if !value.is_object() {
            return Err(ActivityError::Malformed("the body must be a JSON object".into()));
        }
        let raw: RawActivity = serde_json::from_value(value)
            .map_err(|e| ActivityError::Invalid(ModelError::Invalid(format!("invalid request: {e}"))))?;
        raw.validate().map_err(ActivityError::Invalid)
    }
}

/// Why a request body is not an activity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ActivityError {
    /// Not JSON, or not an object (HTTP 400).
    #[error("{0}")]
    Malformed(String),
    /// JSON that does not describe an activity (HTTP 422).
    #[error("{0}")]
    Invalid(ModelError),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawActivity {
    changes: Option<usize>,
    repositories: Option<Vec<String>>,
    seed: Option<u64>,
    webhooks: Option<bool>,
    // Read one by one, so an entry's error names the entry.
    operations: Option<Vec<Value>>,
}

impl RawActivity {
    fn validate(self) -> Result<Activity, ModelError> {
        let webhooks = self.webhooks.unwrap_or(true);
        let changes = match (self.changes, self.operations) {
            (Some(count), None) => {
                if count > MAX_CHANGES {
                    return Err(ModelError::Invalid(format!("changes: at most {MAX_CHANGES}, not {count}")));
                }
                Changes::Random {
                    count,
                    repositories: self.repositories.unwrap_or_default(),
                    seed: self.seed,
                }
            }
            (None, Some(entries)) => {
                if self.repositories.is_some() || self.seed.is_some() {
                    return Err(ModelError::Invalid(
                        "repositories and seed go with random changes, not with operations".into(),
                    ));
                }
                if entries.len() > MAX_CHANGES {
                    return Err(ModelError::Invalid(format!(
                        "operations: at most {MAX_CHANGES}, not {}",
                        entries.len()
                    )));
                }
                let operations = entries
                    .into_iter()
                    .enumerate()
                    .map(|(i, entry)| {
                        serde_json::from_value::<Operation>(entry)
                            .map_err(|e| ModelError::Invalid(e.to_string()).at(format!("operations[{i}]")))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Changes::Operations(operations)
            }
            (Some(_), Some(_)) => {
                return Err(ModelError::Invalid("either changes or operations, not both".into()));
            }
            (None, None) => {
                return Err(ModelError::Invalid(
                    "give changes (random activity) or operations (a list of changes)".into(),
                ));
            }
        };
        Ok(Activity { changes, webhooks })
    }
}

fn default_author() -> String {
    "octocat".to_owned()
}

/// One change, as `operations` entries name it (`{"op": "push", ...}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// `pull_request` `opened`, and `check_run` `created` for each of `checks` on its head.
    OpenPr {
        repository: String,
        title: String,
        #[serde(default = "default_author")]
        author: String,
        #[serde(default)]
        body: Option<String>,
        #[serde(default)]
        draft: bool,
        #[serde(default)]
        labels: Vec<String>,
        #[serde(default)]
        checks: Vec<String>,
    },
    /// `edited`.
    EditPr {
        repository: String,
        number: i64,
        #[serde(default)]
        title: Option<String>,
        #[serde(default)]
        body: Option<String>,
    },
    Label {
        repository: String,
        number: i64,
        label: String,
    },
    Unlabel {
        repository: String,
        number: i64,
        label: String,
    },
    /// `converted_to_draft` or `ready_for_review`.
    SetDraft {
        repository: String,
        number: i64,
        draft: bool,
    },
    /// A new head: `synchronize`, and `check_run` `created` for each of `checks` on it.
    Push {
        repository: String,
        number: i64,
        #[serde(default)]
        checks: Vec<String>,
    },
    Close {
        repository: String,
        number: i64,
    },
    Merge {
        repository: String,
        number: i64,
    },
    Reopen {
        repository: String,
        number: i64,
    },
    /// A queued run on PR `number`'s head, or on the commit `head_sha`.
    CreateCheckRun {
        repository: String,
        #[serde(default)]
        number: Option<i64>,
        #[serde(default)]
        head_sha: Option<String>,
        name: String,
    },
    /// In progress; GitHub sends no webhook for this.
    StartCheckRun {
        id: i64,
    },
    /// `check_run` `completed` (and `check_suite` `completed` with the suite's last run).
    CompleteCheckRun {
        id: i64,
        conclusion: String,
    },
}

impl Operation {
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenPr { .. } => "open_pr",
            Self::EditPr { .. } => "edit_pr",
            Self::Label { .. } => "label",
            Self::Unlabel { .. } => "unlabel",
            Self::SetDraft { .. } => "set_draft",
            Self::Push { .. } => "push",
            Self::Close { .. } => "close",
            Self::Merge { .. } => "merge",
            Self::Reopen { .. } => "reopen",
            Self::CreateCheckRun { .. } => "create_check_run",
            Self::StartCheckRun { .. } => "start_check_run",
            Self::CompleteCheckRun { .. } => "complete_check_run",
        }
    }

    /// The repository the operation changes.
    fn repo_id(&self, world: &World) -> Result<i64, ModelError> {
        match self {
            Self::OpenPr { repository, .. }
            | Self::EditPr { repository, .. }
            | Self::Label { repository, .. }
            | Self::Unlabel { repository, .. }
            | Self::SetDraft { repository, .. }
            | Self::Push { repository, .. }
            | Self::Close { repository, .. }
            | Self::Merge { repository, .. }
            | Self::Reopen { repository, .. }
            | Self::CreateCheckRun { repository, .. } => world.repo_id(repository),
            Self::StartCheckRun { id } | Self::CompleteCheckRun { id, .. } => world.repo_of_check_run(*id),
        }
    }
}

/// What one call did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActivityReport {
    /// The seed random changes were drawn with (none for operations).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// One entry per change, in the order they were made.
    pub changes: Vec<Change>,
    pub totals: Totals,
}

/// One change made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub op: &'static str,
    /// `owner/name`.
    pub repository: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<i64>,
    /// The check run started, completed or created by `create_check_run`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_run_id: Option<i64>,
    /// The check runs `open_pr` and `push` created on the new head.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub check_runs: Vec<i64>,
    /// The PR's head after `open_pr` and `push`; the run's commit for check runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_sha: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conclusion: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The webhooks the change causes, in order (also when they were not sent).
    pub webhooks: Vec<Webhook>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    pub event: &'static str,
    pub action: &'static str,
    /// `X-GitHub-Delivery`, when it was sent: not with `webhooks: false`
    /// or without a webhook target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub changes: usize,
    /// Webhooks the changes caused.
    pub webhooks: usize,
    /// Of those, handed to the sender.
    pub webhooks_sent: usize,
    /// Changes by `op`.
    pub by_op: BTreeMap<&'static str, usize>,
    /// Webhooks by `event.action`.
    pub by_event: BTreeMap<String, usize>,
}

impl ActivityReport {
    fn new(seed: Option<u64>, changes: Vec<Change>) -> Self {
        let mut totals = Totals { changes: changes.len(), ..Totals::default() };
        for change in &changes {
            *totals.by_op.entry(change.op).or_default() += 1;
            for webhook in &change.webhooks {
                totals.webhooks += 1;
                totals.webhooks_sent += usize::from(webhook.delivery_id.is_some());
                *totals.by_event.entry(format!("{}.{}", webhook.event, webhook.action)).or_default() += 1;
            }
        }
        Self { seed, changes, totals }
    }
}

/// Makes `activity` in the simulator behind `shared`.
pub(crate) async fn run(shared: &Shared, activity: &Activity) -> Result<ActivityReport, ModelError> {
    // One activity at a time: a list validated on a copy of the world is
    // then made on the world itself, and must find it as the copy was.
    let count = match &activity.changes {
        Changes::Operations(operations) => operations.len(),
        Changes::Random { count, .. } => *count,
    };
    if count > MAX_CHANGES {
        return Err(ModelError::Invalid(format!("at most {MAX_CHANGES} changes at once, not {count}")));
    }
    let _one_at_a_time = shared.activity.lock().await;
    // Without a target nothing is rendered: that costs more than the changes.
    let send = activity.webhooks && lock(&shared.webhook).is_some();
    let mut sender = Sender { shared, send, outgoing: Vec::new() };
    match &activity.changes {
        Changes::Operations(operations) => operations_all_or_none(&mut sender, operations).await,
        Changes::Random { count, repositories, seed } => {
            random(&mut sender, *count, repositories, *seed).await
        }
    }
}

/// Renders the webhooks of each change right after it (a payload shows the
/// world as it was then) and hands them to the dispatcher chunk by chunk.
struct Sender<'a> {
    shared: &'a Shared,
    send: bool,
    outgoing: Vec<Outgoing>,
}

impl Sender<'_> {
    fn webhooks(&mut self, world: &World, events: &[Event]) -> Result<Vec<Webhook>, ModelError> {
        let mut webhooks = Vec::with_capacity(events.len());
        for event in events {
            let delivery_id = if self.send && world.is_installed(event.repo_id) {
                let payload = webhooks::payload(world, &self.shared.urls, event)?;
                let delivery_id = webhooks::delivery_id(&self.shared.rng);
                self.outgoing.push(Outgoing {
                    delivery_id: delivery_id.clone(),
                    event: event.name,
                    action: event.action,
                    body: serde_json::to_vec(&payload).unwrap_or_default(),
                    redelivery: false,
                });
                Some(delivery_id)
            } else {
                None
            };
            webhooks.push(Webhook { event: event.name, action: event.action, delivery_id });
        }
        Ok(webhooks)
    }

    /// Hands the rendered webhooks over, then waits while too many are
    /// still unsent: a payload is some 15 KB, and 100,000 changes would
    /// otherwise queue gigabytes for a slow receiver.
    async fn flush(&mut self) {
        for outgoing in self.outgoing.drain(..) {
            self.shared.dispatcher.enqueue(outgoing);
        }
        self.shared.dispatcher.wait_below(UNSENT_LIMIT).await;
    }
}

/// Makes `count` changes, `step` making each, holding the world's lock for
/// at most about [`LOCK_HOLD`] at a time so that API requests are served
/// in between.
async fn in_chunks(
    sender: &mut Sender<'_>,
    count: usize,
    mut step: impl FnMut(&mut World, &mut Sender<'_>, usize) -> Result<Change, ModelError>,
) -> Result<Vec<Change>, ModelError> {
    let mut changes = Vec::with_capacity(count);
    while changes.len() < count {
        {
            let mut world = lock(&sender.shared.world);
            let started = Instant::now();
            while changes.len() < count && started.elapsed() < LOCK_HOLD {
                let change = step(&mut world, sender, changes.len())?;
                changes.push(change);
            }
        }
        sender.flush().await;
        tokio::task::yield_now().await;
    }
    Ok(changes)
}

/// Tries every operation on a copy of the repositories they touch; when all
/// succeed, makes them on the world, rendering each one's webhooks as it goes.
async fn operations_all_or_none(
    sender: &mut Sender<'_>,
    operations: &[Operation],
) -> Result<ActivityReport, ModelError> {
    let entry = |i: usize, op: &Operation| format!("operations[{i}] ({})", op.name());
    let repo_ids = {
        let world = lock(&sender.shared.world);
        let repo_ids = operations
            .iter()
            .enumerate()
            .map(|(i, op)| op.repo_id(&world).map_err(|e| e.at(entry(i, op))))
            .collect::<Result<Vec<i64>, _>>()?;
        let mut sandbox = world.sandbox(&repo_ids.iter().copied().collect());
        drop(world);
        for (i, (op, repo_id)) in operations.iter().zip(&repo_ids).enumerate() {
            apply(&mut sandbox, *repo_id, op).map_err(|e| e.at(entry(i, op)))?;
        }
        repo_ids
    };
    // The copy succeeded: the world, as the copy was, takes the same changes
    // (an error now means something else changed the world meanwhile).
    let changes = in_chunks(sender, operations.len(), |world, sender, i| {
        let op = &operations[i];
        let (mut change, events) = apply(world, repo_ids[i], op).map_err(|e| e.at(entry(i, op)))?;
        change.webhooks = sender.webhooks(world, &events)?;
        Ok(change)
    })
    .await?;
    Ok(ActivityReport::new(None, changes))
}

/// Makes `op` in `world` (in repository `repo_id`); returns the change
/// (without its webhooks) and the events it causes.
fn apply(world: &mut World, repo_id: i64, op: &Operation) -> Result<(Change, Vec<Event>), ModelError> {
    let mut change = Change {
        op: op.name(),
        repository: world.repo(repo_id)?.full_name(),
        number: None,
        check_run_id: None,
        check_runs: Vec::new(),
        head_sha: None,
        conclusion: None,
        label: None,
        webhooks: Vec::new(),
    };
    let mut events = Vec::new();
    match op {
        Operation::OpenPr { title, author, body, draft, labels, checks, .. } => {
            let mut pr = NewPr::new(title, author);
            pr.body.clone_from(body);
            pr.draft = *draft;
            pr.labels.clone_from(labels);
            let (number, event) = world.open_pr(repo_id, pr)?;
            events.push(event);
            let head = head_of(world, repo_id, number)?;
            change.check_runs = create_runs(world, repo_id, &head, checks, &mut events)?;
            change.number = Some(number);
            change.head_sha = Some(head);
        }
        Operation::EditPr { number, title, body, .. } => {
            events.push(world.edit_pr(repo_id, *number, title.clone(), body.clone())?);
            change.number = Some(*number);
        }
        Operation::Label { number, label, .. } => {
            events.push(world.add_label(repo_id, *number, label)?);
            change.number = Some(*number);
            change.label = Some(label.clone());
        }
        Operation::Unlabel { number, label, .. } => {
            events.push(world.remove_label(repo_id, *number, label)?);
            change.number = Some(*number);
            change.label = Some(label.clone());
        }
        Operation::SetDraft { number, draft, .. } => {
            events.push(world.set_draft(repo_id, *number, *draft)?);
            change.number = Some(*number);
        }
        Operation::Push { number, checks, .. } => {
            let (head, event) = world.push(repo_id, *number)?;
            events.push(event);
            change.check_runs = create_runs(world, repo_id, &head, checks, &mut events)?;
            change.number = Some(*number);
            change.head_sha = Some(head);
        }
        Operation::Close { number, .. } | Operation::Merge { number, .. } => {
            let merge = matches!(op, Operation::Merge { .. });
            events.push(world.close_pr(repo_id, *number, merge)?);
            change.number = Some(*number);
        }
        Operation::Reopen { number, .. } => {
            events.push(world.reopen_pr(repo_id, *number)?);
            change.number = Some(*number);
        }
        Operation::CreateCheckRun { number, head_sha, name, .. } => {
            let head = match (number, head_sha) {
                (Some(number), None) => head_of(world, repo_id, *number)?,
                (None, Some(sha)) => sha.clone(),
                _ => {
                    return Err(ModelError::Invalid("give the PR's number or a head_sha, one of them".into()))
                }
            };
            let (id, event) = world.create_check_run(repo_id, &head, name)?;
            events.push(event);
            change.number = *number;
            change.check_run_id = Some(id);
            change.head_sha = Some(head);
        }
        Operation::StartCheckRun { id } => {
            world.start_check_run(*id)?;
            change.check_run_id = Some(*id);
            change.head_sha = Some(run_head(world, repo_id, *id)?);
        }
        Operation::CompleteCheckRun { id, conclusion } => {
            events.extend(world.complete_check_run(*id, conclusion)?);
            change.check_run_id = Some(*id);
            change.head_sha = Some(run_head(world, repo_id, *id)?);
            change.conclusion = Some(conclusion.clone());
        }
    }
    Ok((change, events))
}

fn head_of(world: &World, repo_id: i64, number: i64) -> Result<String, ModelError> {
    let repo = world.repo(repo_id)?;
    repo.pulls
        .get(&number)
        .map(|pr| pr.head_sha.clone())
        .ok_or_else(|| ModelError::NoPullRequest(repo.full_name(), number))
}

fn run_head(world: &World, repo_id: i64, run_id: i64) -> Result<String, ModelError> {
    world
        .repo(repo_id)?
        .check_runs
        .get(&run_id)
        .map(|run| run.head_sha.clone())
        .ok_or(ModelError::NoCheckRun(run_id))
}

fn create_runs(
    world: &mut World,
    repo_id: i64,
    head: &str,
    names: &[String],
    events: &mut Vec<Event>,
) -> Result<Vec<i64>, ModelError> {
    let mut ids = Vec::with_capacity(names.len());
    for name in names {
        let (id, event) = world.create_check_run(repo_id, head, name)?;
        ids.push(id);
        events.push(event);
    }
    Ok(ids)
}

// ---- random activity --------------------------------------------------------

/// The mix of random changes: how often each kind is drawn. Check runs
/// change most, as in a busy organisation's CI.
const MIX: [(Kind, u64); 10] = [
    (Kind::OpenPr, 8),
    (Kind::Push, 12),
    (Kind::StartCheckRun, 10),
    (Kind::CompleteCheckRun, 22),
    (Kind::EditTitle, 8),
    (Kind::Label, 8),
    (Kind::ToggleDraft, 4),
    (Kind::Close, 4),
    (Kind::Merge, 5),
    (Kind::Reopen, 2),
];
const VERBS: [&str; 6] = ["Fix", "Add", "Refactor", "Speed up", "Document", "Remove"];
const SUBJECTS: [&str; 8] =
    ["the cache", "flaky tests", "login flow", "the parser", "retries", "metrics", "the build", "logging"];
/// Conclusions as CI hands them out: mostly green.
const CONCLUSIONS: [(&str, u64); 6] =
    [("success", 60), ("failure", 24), ("neutral", 4), ("cancelled", 5), ("timed_out", 3), ("skipped", 4)];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    OpenPr,
    Push,
    StartCheckRun,
    CompleteCheckRun,
    EditTitle,
    Label,
    ToggleDraft,
    Close,
    Merge,
    Reopen,
}

fn weighted<T: Copy>(rng: &SplitMix64, choices: &[(T, u64)]) -> T {
    let total: u64 = choices.iter().map(|(_, w)| w).sum();
    let mut roll = rng.below(total);
    for (choice, weight) in choices {
        if roll < *weight {
            return *choice;
        }
        roll -= weight;
    }
    choices[0].0
}

fn any<'a>(rng: &SplitMix64, items: &[&'a str]) -> &'a str {
    items[rng.below(items.len() as u64) as usize]
}

/// What random changes may pick in one repository. Entries go stale as the
/// world changes (a PR closed, a run completed); each pick checks its entry
/// against the world and drops a stale one, so a pick costs O(1) on average
/// however large the world is.
struct Candidates {
    repo_id: i64,
    name: String,
    open: Vec<i64>,
    closed: Vec<i64>,
    queued: Vec<i64>,
    unfinished: Vec<i64>,
}

impl Candidates {
    fn of(world: &World, repo_id: i64) -> Result<Self, ModelError> {
        let repo = world.repo(repo_id)?;
        let mut candidates = Self {
            repo_id,
            name: repo.full_name(),
            open: Vec::new(),
            closed: Vec::new(),
            queued: Vec::new(),
            unfinished: Vec::new(),
        };
        for pr in repo.pulls.values() {
            match pr.state {
                PrState::Open => candidates.open.push(pr.number),
                PrState::Closed => candidates.closed.push(pr.number),
                PrState::Merged => {}
            }
        }
        for run in repo.check_runs.values() {
            match run.status.as_str() {
                "queued" => {
                    candidates.queued.push(run.id);
                    candidates.unfinished.push(run.id);
                }
                "in_progress" => candidates.unfinished.push(run.id),
                _ => {}
            }
        }
        Ok(candidates)
    }
}

/// A random entry of `list` for which `fits` holds, dropping those for which it does not.
fn pick(rng: &SplitMix64, list: &mut Vec<i64>, fits: impl Fn(i64) -> bool) -> Option<i64> {
    while !list.is_empty() {
        let i = rng.below(list.len() as u64) as usize;
        if fits(list[i]) {
            return Some(list[i]);
        }
        list.swap_remove(i);
    }
    None
}

async fn random(
    sender: &mut Sender<'_>,
    count: usize,
    repositories: &[String],
    seed: Option<u64>,
) -> Result<ActivityReport, ModelError> {
    let (mut pool, seed) = {
        let world = lock(&sender.shared.world);
        let repo_ids: Vec<i64> = if repositories.is_empty() {
            world.repos.keys().copied().collect()
        } else {
            let mut ids = Vec::with_capacity(repositories.len());
            for (i, name) in repositories.iter().enumerate() {
                let id = world.repo_id(name).map_err(|e| e.at(format!("repositories[{i}]")))?;
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
            ids
        };
        if repo_ids.is_empty() && count > 0 {
            return Err(ModelError::Invalid("the simulator has no repositories to change".into()));
        }
        let pool = repo_ids.iter().map(|id| Candidates::of(&world, *id)).collect::<Result<Vec<_>, _>>()?;
        // Without a seed: one from the world's generator, reported so that the run can be repeated.
        (pool, seed.unwrap_or_else(|| world.rng().next_u64()))
    };
    let rng = SplitMix64::new(seed);
    let changes = in_chunks(sender, count, |world, sender, _| {
        let at = rng.below(pool.len() as u64) as usize;
        let candidates = &mut pool[at];
        let op = draw(world, &rng, candidates);
        let (mut change, events) = apply(world, candidates.repo_id, &op)?;
        remember(candidates, &change);
        change.webhooks = sender.webhooks(world, &events)?;
        Ok(change)
    })
    .await?;
    Ok(ActivityReport::new(Some(seed), changes))
}

/// A change that can be made now in `candidates`' repository: the kind
/// drawn from the mix, or opening a PR when nothing fits that kind.
fn draw(world: &World, rng: &SplitMix64, candidates: &mut Candidates) -> Operation {
    let repository = candidates.name.clone();
    let Ok(repo) = world.repo(candidates.repo_id) else {
        return open_pr(rng, repository);
    };
    let is_open = |n: i64| repo.pulls.get(&n).is_some_and(|pr| pr.state == PrState::Open);
    let run_status = |id: i64| repo.check_runs.get(&id).map(|run| run.status.as_str());
    let checks =
        |rng: &SplitMix64| CHECKS[..1 + rng.below(2) as usize].iter().map(|c| (*c).to_owned()).collect();
    let drawn = match weighted(rng, &MIX) {
        Kind::OpenPr => None,
        Kind::Push => pick(rng, &mut candidates.open, is_open).map(|number| Operation::Push {
            repository: repository.clone(),
            number,
            checks: checks(rng),
        }),
        Kind::StartCheckRun => pick(rng, &mut candidates.queued, |id| run_status(id) == Some("queued"))
            .map(|id| Operation::StartCheckRun { id }),
        Kind::CompleteCheckRun => {
            pick(rng, &mut candidates.unfinished, |id| run_status(id).is_some_and(|s| s != "completed")).map(
                |id| Operation::CompleteCheckRun { id, conclusion: weighted(rng, &CONCLUSIONS).to_owned() },
            )
        }
        Kind::EditTitle => pick(rng, &mut candidates.open, is_open).map(|number| Operation::EditPr {
            repository: repository.clone(),
            number,
            title: Some(format!("{} {}", any(rng, &VERBS), any(rng, &SUBJECTS))),
            body: None,
        }),
        Kind::Label => pick(rng, &mut candidates.open, is_open).map(|number| {
            let labels = repo.pulls.get(&number).map(|pr| pr.labels.as_slice()).unwrap_or_default();
            let label = any(rng, &LABELS).to_owned();
            if labels.contains(&label) {
                Operation::Unlabel { repository: repository.clone(), number, label }
            } else {
                Operation::Label { repository: repository.clone(), number, label }
            }
        }),
        Kind::ToggleDraft => pick(rng, &mut candidates.open, is_open).map(|number| {
            let draft = repo.pulls.get(&number).is_some_and(|pr| pr.draft);
            Operation::SetDraft { repository: repository.clone(), number, draft: !draft }
        }),
        Kind::Close => pick(rng, &mut candidates.open, is_open)
            .map(|number| Operation::Close { repository: repository.clone(), number }),
        Kind::Merge => pick(rng, &mut candidates.open, is_open).map(|number| {
            // A draft cannot be merged: it is marked ready for review first.
            if repo.pulls.get(&number).is_some_and(|pr| pr.draft) {
                Operation::SetDraft { repository: repository.clone(), number, draft: false }
            } else {
                Operation::Merge { repository: repository.clone(), number }
            }
        }),
        Kind::Reopen => pick(rng, &mut candidates.closed, |n| {
            repo.pulls.get(&n).is_some_and(|pr| pr.state == PrState::Closed)
        })
        .map(|number| Operation::Reopen { repository: repository.clone(), number }),
    };
    drawn.unwrap_or_else(|| open_pr(rng, repository))
}

fn open_pr(rng: &SplitMix64, repository: String) -> Operation {
    Operation::OpenPr {
        repository,
        title: format!("{} {}", any(rng, &VERBS), any(rng, &SUBJECTS)),
        author: any(rng, &AUTHORS).to_owned(),
        body: rng.chance(0.7).then(|| "What changes and why.".to_owned()),
        draft: rng.chance(0.15),
        labels: Vec::new(),
        // A check run or two, as CI queues them on a new head.
        checks: CHECKS[..1 + rng.below(2) as usize].iter().map(|c| (*c).to_owned()).collect(),
    }
}

/// What a change made available to the next ones.
fn remember(candidates: &mut Candidates, change: &Change) {
    match change.op {
        "open_pr" | "reopen" => candidates.open.extend(change.number),
        "close" => candidates.closed.extend(change.number),
        _ => {}
    }
    candidates.queued.extend(&change.check_runs);
    candidates.unfinished.extend(&change.check_runs);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(body: &str) -> Result<Activity, ActivityError> {
        Activity::from_json(body.as_bytes())
    }

    #[test]
    fn random_activity_reads_with_its_defaults() {
        let activity = parse(r#"{"changes": 30}"#).expect("valid");
        assert_eq!(activity, Activity::random(30));
        let activity =
            parse(r#"{"changes": 5, "repositories": ["o/a"], "seed": 7, "webhooks": false}"#).expect("valid");
        assert_eq!(activity, Activity::random(5).in_repositories(&["o/a"]).seed(7).silent());
    }

    #[test]
    fn operations_read_with_their_defaults() {
        let activity = parse(
            r#"{"operations": [{"op": "open_pr", "repository": "o/r", "title": "T"},
                               {"op": "complete_check_run", "id": 12, "conclusion": "failure"}]}"#,
        )
        .expect("valid");
        let Changes::Operations(ops) = activity.changes else { panic!("operations expected") };
        assert_eq!(
            ops,
            [
                Operation::OpenPr {
                    repository: "o/r".into(),
                    title: "T".into(),
                    author: "octocat".into(),
                    body: None,
                    draft: false,
                    labels: Vec::new(),
                    checks: Vec::new(),
                },
                Operation::CompleteCheckRun { id: 12, conclusion: "failure".into() },
            ]
        );
    }

    #[test]
    fn bodies_that_are_not_json_objects_are_malformed() {
        for body in ["", "{", "[]", "\"changes\"", "42", "{\"changes\": 1} trailing"] {
            assert!(matches!(parse(body), Err(ActivityError::Malformed(_))), "{body:?}");
        }
        let deep = format!("{{\"operations\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(matches!(parse(&deep), Err(ActivityError::Malformed(_))));
    }

    #[test]
    fn invalid_requests_name_what_is_wrong() {
        let invalid = |body: &str| match parse(body) {
            Err(ActivityError::Invalid(error)) => error.to_string(),
            other => panic!("{body}: {other:?}"),
        };
        assert!(invalid("{}").contains("give changes"));
        assert!(invalid(r#"{"changes": 1, "operations": []}"#).contains("not both"));
        assert!(invalid(r#"{"changes": 100001}"#).contains("at most 100000"));
        assert!(invalid(r#"{"changes": -1}"#).contains("invalid request"));
        assert!(invalid(r#"{"changes": "lots"}"#).contains("invalid request"));
        assert!(invalid(r#"{"changes": 1, "colour": "red"}"#).contains("colour"));
        assert!(invalid(r#"{"operations": [], "seed": 3}"#).contains("random changes"));
        let unknown = invalid(
            r#"{"operations": [{"op": "push", "repository": "o/r", "number": 1}, {"op": "frobnicate"}]}"#,
        );
        assert!(unknown.starts_with("operations[1]: ") && unknown.contains("frobnicate"), "{unknown}");
        let extra =
            invalid(r#"{"operations": [{"op": "close", "repository": "o/r", "number": 1, "force": true}]}"#);
        assert!(extra.starts_with("operations[0]: ") && extra.contains("force"), "{extra}");
        let missing = invalid(r#"{"operations": [{"op": "label", "repository": "o/r", "number": 1}]}"#);
        assert!(missing.contains("label"), "{missing}");
    }

    #[test]
    fn weighted_draws_follow_their_weights() {
        let rng = SplitMix64::new(3);
        let draws: Vec<&str> = (0..10_000).map(|_| weighted(&rng, &[("a", 1), ("b", 3)])).collect();
        let a = draws.iter().filter(|d| **d == "a").count();
        assert!((2_200..2_800).contains(&a), "{a}");
    }
}
