//! Identifiers that are easy to confuse, as types of their own (bors does the
//! same): a pull request's number, a repository's row id, GitHub's ids of a
//! repository and of an installation, a commit SHA. A number of one kind
//! cannot be passed where another is wanted, and a PR number has one width
//! everywhere (GitHub's numbers are stored as PostgreSQL `integer`).
//!
//! Each maps to its column's SQL type, so rows and bound values use the type
//! directly; JSON sees the bare value (`#[serde(transparent)]`), and so does
//! the OpenAPI document.

use std::fmt;
use std::io::Write as _;

use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::pg::{Pg, PgValue};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Integer, Text};
use serde::{Deserialize, Serialize};

macro_rules! integer_id {
    ($(#[$doc:meta])* $name:ident($inner:ty) as $sql:ty) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, AsExpression,
            FromSqlRow, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[diesel(sql_type = $sql)]
        pub struct $name(pub $inner);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl From<$name> for $inner {
            fn from(id: $name) -> $inner {
                id.0
            }
        }

        impl ToSql<$sql, Pg> for $name {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
                <$inner as ToSql<$sql, Pg>>::to_sql(&self.0, out)
            }
        }

        impl FromSql<$sql, Pg> for $name {
            fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
                <$inner as FromSql<$sql, Pg>>::from_sql(value).map(Self)
            }
        }
    };
}

integer_id!(
    /// A pull request's number within its repository (`#42`).
    PullRequestNumber(i32) as Integer
);
integer_id!(
    /// `repositories.id`: prmonitor's own row id of a repository.
    RepositoryId(i64) as BigInt
);
integer_id!(
    /// GitHub's id of a repository (`repository.id` in payloads).
    GithubRepoId(i64) as BigInt
);
integer_id!(
    /// GitHub's id of an App installation.
    InstallationId(i64) as BigInt
);

impl PullRequestNumber {
    /// GitHub sends numbers as JSON integers of any width; ours are `integer`.
    pub fn from_github(number: i64) -> Option<Self> {
        i32::try_from(number).ok().filter(|n| *n > 0).map(Self)
    }
}

/// A commit's SHA, as GitHub spells it (40 lowercase hex digits).
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    AsExpression,
    FromSqlRow,
    utoipa::ToSchema,
)]
#[serde(transparent)]
#[diesel(sql_type = Text)]
pub struct CommitSha(pub String);

impl CommitSha {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CommitSha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<String> for CommitSha {
    fn from(sha: String) -> Self {
        Self(sha)
    }
}

impl From<&str> for CommitSha {
    fn from(sha: &str) -> Self {
        Self(sha.to_owned())
    }
}

impl AsRef<str> for CommitSha {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl ToSql<Text, Pg> for CommitSha {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Pg>) -> serialize::Result {
        out.write_all(self.0.as_bytes())?;
        Ok(IsNull::No)
    }
}

impl FromSql<Text, Pg> for CommitSha {
    fn from_sql(value: PgValue<'_>) -> deserialize::Result<Self> {
        <String as FromSql<Text, Pg>>::from_sql(value).map(Self)
    }
}

/// Whether `full_name` is a plain `owner/name` repository name, safe to put
/// in a URL path (no empty, `.` or `..` part, no other characters).
pub fn is_repository_full_name(full_name: &str) -> bool {
    let valid_part = |part: &str| {
        !part.is_empty()
            && part != "."
            && part != ".."
            && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    full_name.split_once('/').is_some_and(|(owner, name)| valid_part(owner) && valid_part(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_github_number_outside_integer_or_not_positive_is_no_pr_number() {
        assert_eq!(PullRequestNumber::from_github(42), Some(PullRequestNumber(42)));
        assert_eq!(PullRequestNumber::from_github(i64::from(i32::MAX) + 1), None);
        assert_eq!(PullRequestNumber::from_github(0), None);
        assert_eq!(PullRequestNumber::from_github(-3), None);
    }

    #[test]
    fn identifiers_are_bare_values_in_json() {
        let json = serde_json::json!({
            "number": PullRequestNumber(7),
            "repository": RepositoryId(3),
            "sha": CommitSha::from("abc"),
        });
        assert_eq!(json.to_string(), r#"{"number":7,"repository":3,"sha":"abc"}"#);
        let back: PullRequestNumber = serde_json::from_value(serde_json::json!(9)).unwrap();
        assert_eq!(back, PullRequestNumber(9));
    }
}
