//! The read API's errors: one enum, each variant one status, every body
//! `{"error": "<message>"}`, so handlers return them with `?`.

use crate::ids::PullRequestNumber;
use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

/// The OpenAPI description of a 503 for a database that does not answer,
/// shared by every route that reads it.
pub(super) const UNAVAILABLE: &str = "the database is unavailable";

/// The body of every JSON error answer of the service, whichever part
/// refuses: the read and admin APIs, intake, unknown routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person; never a secret.
    pub error: String,
}

impl ErrorBody {
    pub fn new(message: impl Into<String>) -> Self {
        Self { error: message.into() }
    }
}

/// Why a read API request gets no data. The `Display` text is the body's message.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// No valid bearer token, or the read API has no token configured.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A query string that does not deserialize; the detail is the
    /// deserializer's, which names the field without echoing values.
    #[error("unknown or malformed query parameters: {0}")]
    MalformedQuery(String),
    /// A parameter out of range or of the wrong form; the message names it.
    #[error("{0}")]
    InvalidParameter(String),
    /// `owner/name` is not a watched repository.
    #[error("{0} is not a watched repository")]
    UnknownRepository(String),
    #[error("no pull request #{number} in {repository}")]
    UnknownPullRequest { repository: String, number: PullRequestNumber },
    /// The instance serves as many change feed streams as it may.
    #[error("{0}")]
    Busy(String),
    /// No connection, or a query that failed.
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ReadError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidParameter(message.into())
    }

    /// The 400 for the query extractor's error: at most 200 characters of its
    /// message, without control characters, as it goes back to the caller.
    pub fn malformed_query(error: &actix_web::Error) -> Self {
        Self::MalformedQuery(error.to_string().chars().filter(|c| !c.is_control()).take(200).collect())
    }
}

impl From<diesel::result::Error> for ReadError {
    fn from(error: diesel::result::Error) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

impl From<diesel_async::pooled_connection::deadpool::PoolError> for ReadError {
    fn from(error: diesel_async::pooled_connection::deadpool::PoolError) -> Self {
        Self::Unavailable(Box::new(error))
    }
}

impl ResponseError for ReadError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::MalformedQuery(_) | Self::InvalidParameter(_) => StatusCode::BAD_REQUEST,
            Self::UnknownRepository(_) | Self::UnknownPullRequest { .. } => StatusCode::NOT_FOUND,
            Self::Busy(_) | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if matches!(self, Self::Busy(_)) {
            // Streams end when their clients go; a slot frees up soon.
            response.insert_header(("retry-after", "5"));
        }
        response.json(ErrorBody::new(self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;
    use serde_json::json;

    fn rendered(error: &ReadError) -> (u16, serde_json::Value) {
        let response = error.error_response();
        let status = response.status().as_u16();
        let bytes = response.into_body().try_into_bytes().expect("a complete body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[test]
    fn each_error_is_its_status_and_a_json_message() {
        let cases = [
            (
                ReadError::Unauthorized("a valid bearer token is required"),
                401,
                "a valid bearer token is required",
            ),
            (
                ReadError::invalid("page must be a whole number from 1 to 1000000"),
                400,
                "page must be a whole number from 1 to 1000000",
            ),
            (
                ReadError::MalformedQuery("unknown field `colour`".into()),
                400,
                "unknown or malformed query parameters: unknown field `colour`",
            ),
            (ReadError::UnknownRepository("octo/nope".into()), 404, "octo/nope is not a watched repository"),
            (
                ReadError::UnknownPullRequest { repository: "octo/api".into(), number: PullRequestNumber(7) },
                404,
                "no pull request #7 in octo/api",
            ),
            (
                ReadError::Unavailable("reading checks and history failed".into()),
                503,
                "the database is unavailable: reading checks and history failed",
            ),
            (ReadError::Busy("too many streams".into()), 503, "too many streams"),
            (
                ReadError::from(diesel::result::Error::NotFound),
                503,
                "the database is unavailable: Record not found",
            ),
        ];
        for (error, status, message) in cases {
            assert_eq!(rendered(&error), (status, json!({ "error": message })), "{error:?}");
        }
    }

    #[test]
    fn a_malformed_query_message_is_one_bounded_line() {
        let error = actix_web::error::ErrorBadRequest(format!("line\none\r\t{}", "x".repeat(300)));
        let ReadError::MalformedQuery(detail) = ReadError::malformed_query(&error) else {
            panic!("a malformed query");
        };
        assert!(detail.starts_with("lineone"), "{detail}");
        assert_eq!(detail.chars().count(), 200);
    }
}
