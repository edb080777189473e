//! Filling the simulated GitHub: a seeded generator and a JSON fixture format.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use crate::model::{ModelError, NewPr, World};

/// N repositories × M pull requests × K check runs on each head, in one installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generate {
    pub repositories: usize,
    pub pull_requests: usize,
    pub check_runs: usize,
}

pub const GENERATED_INSTALLATION: i64 = 1001;
pub const GENERATED_OWNER: &str = "acme";
pub(crate) const AUTHORS: [&str; 5] = ["alice", "bob", "carol", "dave", "erin"];
pub(crate) const LABELS: [&str; 4] = ["bug", "enhancement", "docs", "wip"];
pub(crate) const CHECKS: [&str; 6] = ["build", "test", "lint", "coverage", "e2e", "security"];
const CONCLUSIONS: [&str; 4] = ["success", "success", "failure", "neutral"];

/// Repository `i` of a generated world.
pub fn generated_repo_name(i: usize) -> String {
    format!("{GENERATED_OWNER}/repo-{i}")
}

/// Adds a generated installation to `world`: a mix of open, closed and merged
/// PRs, drafts, labels and assignees, and check runs in every state.
pub fn generate(world: &mut World, spec: Generate) -> Result<(), ModelError> {
    world.add_installation(GENERATED_INSTALLATION, GENERATED_OWNER);
    let start = crate::model::now() - Duration::days(30);
    for r in 0..spec.repositories {
        let repo_id = 500_000 + r as i64;
        world.add_repo(GENERATED_INSTALLATION, repo_id, GENERATED_OWNER, &format!("repo-{r}"))?;
        for p in 0..spec.pull_requests {
            let rng = world.rng();
            let mut pr = NewPr::new(&format!("Change {p} in repo-{r}"), AUTHORS[rng.below(5) as usize]);
            pr.body = (!rng.chance(0.2)).then(|| format!("Body of change {p}.\n\nDetails follow."));
            pr.draft = rng.chance(0.15);
            pr.labels = LABELS.iter().filter(|_| rng.chance(0.3)).map(|l| (*l).to_owned()).collect();
            pr.assignees = AUTHORS.iter().filter(|_| rng.chance(0.2)).map(|a| (*a).to_owned()).collect();
            // Distinct creation times, one minute apart, so listing order is stable.
            let created = start + Duration::minutes(p as i64);
            pr.created_at = Some(created);
            let (number, _) = world.open_pr(repo_id, pr)?;
            let roll = world.rng().below(10);
            let sha = world.repo(repo_id)?.pulls[&number].head_sha.clone();
            for c in 0..spec.check_runs {
                let (run, _) = world.create_check_run(repo_id, &sha, CHECKS[c % CHECKS.len()])?;
                match world.rng().below(4) {
                    0 => {}
                    1 => world.start_check_run(run)?,
                    _ => {
                        let conclusion = CONCLUSIONS[world.rng().below(4) as usize];
                        world.complete_check_run(run, conclusion)?;
                    }
                }
            }
            match roll {
                0 | 1 => {
                    world.set_draft(repo_id, number, false)?;
                    world.close_pr(repo_id, number, true)?;
                }
                2 => {
                    world.close_pr(repo_id, number, false)?;
                }
                _ => {}
            }
            // Closing stamped "now"; generated history ends a few hours after creation.
            let closed_roll = world.rng().below(48) as i64;
            world.backdate(repo_id, number, created + Duration::hours(1 + closed_roll))?;
        }
    }
    Ok(())
}

/// The fixture format (`fixtures/sim/*.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fixture {
    #[serde(default)]
    pub installations: Vec<FixtureInstallation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureInstallation {
    pub id: i64,
    pub account: String,
    #[serde(default)]
    pub repositories: Vec<FixtureRepository>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureRepository {
    pub id: i64,
    pub name: String,
    #[serde(default)]
    pub pull_requests: Vec<FixturePullRequest>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixturePullRequest {
    #[serde(flatten)]
    pub pr: NewPr,
    /// `open` (default), `closed` or `merged`.
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub check_runs: Vec<FixtureCheckRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FixtureCheckRun {
    pub name: String,
    /// `queued` (default), `in_progress` or `completed`.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// Loads a fixture into `world`.
pub fn load_fixture(world: &mut World, fixture: &Fixture) -> Result<(), ModelError> {
    for installation in &fixture.installations {
        world.add_installation(installation.id, &installation.account);
        for repo in &installation.repositories {
            world.add_repo(installation.id, repo.id, &installation.account, &repo.name)?;
            for pr in &repo.pull_requests {
                let (number, _) = world.open_pr(repo.id, pr.pr.clone())?;
                let sha = world.repo(repo.id)?.pulls[&number].head_sha.clone();
                for run in &pr.check_runs {
                    let (id, _) = world.create_check_run(repo.id, &sha, &run.name)?;
                    match run.status.as_deref().unwrap_or("queued") {
                        "queued" => {}
                        "in_progress" => world.start_check_run(id)?,
                        "completed" => {
                            world.complete_check_run(id, run.conclusion.as_deref().unwrap_or("success"))?;
                        }
                        other => return Err(ModelError::Invalid(format!("check run status '{other}'"))),
                    }
                }
                match pr.state.as_deref().unwrap_or("open") {
                    "open" => {}
                    "closed" => {
                        world.close_pr(repo.id, number, false)?;
                    }
                    "merged" => {
                        world.close_pr(repo.id, number, true)?;
                    }
                    other => return Err(ModelError::Invalid(format!("pull request state '{other}'"))),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PrState;

    #[test]
    fn a_seed_generates_the_same_world_twice() {
        let spec = Generate { repositories: 2, pull_requests: 20, check_runs: 3 };
        let mut a = World::new(1, 9);
        let mut b = World::new(1, 9);
        generate(&mut a, spec).expect("generate");
        generate(&mut b, spec).expect("generate");
        let repo = |w: &World| w.repo(500_001).expect("repo").clone();
        let (ra, rb) = (repo(&a), repo(&b));
        assert_eq!(ra.pulls.len(), 20);
        assert_eq!(ra.check_runs.len(), 60);
        assert_eq!(
            ra.pulls.values().map(|p| (&p.title, &p.head_sha, &p.state)).collect::<Vec<_>>(),
            rb.pulls.values().map(|p| (&p.title, &p.head_sha, &p.state)).collect::<Vec<_>>()
        );
        let states: std::collections::BTreeSet<String> =
            a.repos.values().flat_map(|r| r.pulls.values().map(|p| format!("{:?}", p.state))).collect();
        assert!(states.len() >= 2, "a mix of states: {states:?}");
        assert!(a.repos.values().flat_map(|r| r.pulls.values()).any(|p| p.state == PrState::Open));
    }

    #[test]
    fn the_shipped_fixture_loads() {
        let text = include_str!("../../../fixtures/sim/small.json");
        let fixture: Fixture = serde_json::from_str(text).expect("fixture JSON");
        let mut world = World::new(1, 1);
        load_fixture(&mut world, &fixture).expect("load");
        assert!(!world.repos.is_empty());
    }
}
