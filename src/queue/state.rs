//! Where a job is in its lifecycle, as stored in `jobs.state`.

use std::fmt;
use std::str::FromStr;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::{Deserialize, Serialize};

/// `pending` → `running` → `done`, or back to `pending` to retry, or `dead`
/// when out of attempts (until an operator retries it). The column is text
/// with a CHECK constraint listing exactly these four values.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
    utoipa::ToSchema,
)]
#[diesel(sql_type = Text)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for its `run_at`; the only state in which requests coalesce.
    Pending,
    /// Leased by a worker until `lease_expires_at`.
    Running,
    /// Finished, or folded into a newer job of the same key.
    Done,
    /// A dead letter: out of attempts, kept for inspection and retry.
    Dead,
}

impl JobState {
    pub const ALL: [Self; 4] = [Self::Pending, Self::Running, Self::Done, Self::Dead];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Done => "done",
            Self::Dead => "dead",
        }
    }

    /// The state as a quoted SQL literal. Statements that select by state
    /// name it as a constant, not a bound parameter: PostgreSQL uses a
    /// partial index (`WHERE state = 'pending'`) and infers the
    /// `ON CONFLICT` arbiter only when the query's predicate is that same
    /// constant, and a prepared statement's generic plan knows no parameter
    /// values.
    pub(crate) fn sql(self) -> &'static str {
        match self {
            Self::Pending => "'pending'",
            Self::Running => "'running'",
            Self::Done => "'done'",
            Self::Dead => "'dead'",
        }
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: the CLI lays states out in columns.
        f.pad(self.as_str())
    }
}

/// A `jobs.state` value this build does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown job state {0:?}")]
pub struct UnknownJobState(pub String);

impl FromStr for JobState {
    type Err = UnknownJobState;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| UnknownJobState(text.to_owned()))
    }
}

impl ToSql<Text, Pg> for JobState {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        <str as ToSql<Text, Pg>>::to_sql(self.as_str(), &mut out.reborrow())
    }
}

impl FromSql<Text, Pg> for JobState {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(value)?;
        Ok(text.parse()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_text() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>(), Ok(state));
            assert_eq!(state.to_string(), state.as_str());
            assert_eq!(state.sql(), format!("'{}'", state.as_str()), "the SQL literal names the same value");
            let json = serde_json::to_value(state).expect("serializes");
            assert_eq!(json, state.as_str(), "the admin API shows the column's value");
            assert_eq!(serde_json::from_value::<JobState>(json).expect("deserializes"), state);
        }
    }

    #[test]
    fn an_unknown_state_is_an_error() {
        for text in ["", "Pending", "PENDING", " pending", "retrying", "failed"] {
            assert_eq!(text.parse::<JobState>(), Err(UnknownJobState(text.to_owned())), "{text:?}");
        }
    }

    #[test]
    fn states_pad_like_strings_in_columns() {
        assert_eq!(format!("[{:<8}]", JobState::Dead), "[dead    ]");
    }
}
