//! GitHub's GraphQL API, the part a pull-request and CI monitor needs:
//! `POST /graphql` (`POST /api/graphql` beside Enterprise's `/api/v3`).
//!
//! A request goes through GitHub's steps in GitHub's order: authentication
//! (installation or static token; 401 otherwise), JSON body (400), syntax,
//! validation against the schema, GitHub's static limits (pagination bounds,
//! 500,000 nodes: [`cost`]), the caller's `graphql` budget (charged the
//! query's cost before it runs), then execution. Every refusal after
//! authentication is HTTP 200 with GitHub's `errors` ([`errors`]), and every
//! answer carries `x-ratelimit-*` headers for the `graphql` resource.

mod cost;
mod errors;
mod nulls;
mod page;
mod schema;

#[cfg(test)]
mod conformance;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextValidation};
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ServerError, ValidationResult, Variables};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::World;
use crate::server::{epoch_now, lock, Bucket, Caller, LoggedRequest, Shared};
use cost::{Analysis, SchemaTypes};

/// The route name GraphQL requests are counted under in [`crate::Stats`].
pub(crate) const ROUTE: &str = "POST /graphql";

/// Where GraphQL lives for a REST prefix: GitHub Enterprise Server serves
/// REST at `/api/v3` and GraphQL at `/api/graphql`; github.com serves both at
/// the root (`/graphql`).
pub(crate) fn path(prefix: &str) -> String {
    match prefix.trim_end_matches('/').strip_suffix("/v3") {
        Some(base) => format!("{base}/graphql"),
        None => format!("{}/graphql", prefix.trim_end_matches('/')),
    }
}

/// The `graphql` budgets, one per caller (installation id; 0 for the static
/// token), apart from REST's `core` budgets as on GitHub.
pub(crate) struct Budgets {
    buckets: Mutex<HashMap<i64, Bucket>>,
    limit: u64,
    window: Duration,
}

impl Budgets {
    pub(crate) fn new(limit: u64, window: Duration) -> Self {
        Self { buckets: Mutex::new(HashMap::new()), limit, window }
    }

    fn fresh(&self, now: u64) -> Bucket {
        Bucket { limit: self.limit, remaining: self.limit, reset: now + self.window.as_secs() }
    }

    /// The caller's bucket, renewed when its window has passed.
    fn current(&self, key: i64) -> Bucket {
        let now = epoch_now();
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(key).or_insert_with(|| self.fresh(now));
        if bucket.reset <= now {
            bucket.remaining = bucket.limit;
            bucket.reset = now + self.window.as_secs();
        }
        *bucket
    }

    /// Takes `cost` points if the bucket has them (`Err` with the bucket untouched otherwise).
    /// A dry run charges nothing but is refused the same way.
    fn charge(&self, key: i64, cost: u64, dry_run: bool) -> Result<Bucket, Bucket> {
        self.current(key);
        let mut buckets = lock(&self.buckets);
        let now = epoch_now();
        let bucket = buckets.entry(key).or_insert_with(|| self.fresh(now));
        if bucket.remaining < cost {
            return Err(*bucket);
        }
        if !dry_run {
            bucket.remaining -= cost;
        }
        Ok(*bucket)
    }

    pub(crate) fn set(
        &self,
        key: i64,
        limit: Option<u64>,
        remaining: Option<u64>,
        reset_in: Option<Duration>,
    ) -> Bucket {
        let now = epoch_now();
        let mut buckets = lock(&self.buckets);
        let bucket = buckets.entry(key).or_insert_with(|| self.fresh(now));
        if let Some(limit) = limit {
            bucket.limit = limit;
        }
        if let Some(remaining) = remaining {
            bucket.remaining = remaining.min(bucket.limit);
        }
        if let Some(reset_in) = reset_in {
            bucket.reset = now + reset_in.as_secs();
        }
        *bucket
    }

    pub(crate) fn get(&self, key: i64) -> Option<Bucket> {
        lock(&self.buckets).get(&key).copied()
    }
}

/// What the static analysis and the budget decided for one request.
#[derive(Debug, Clone)]
enum Admission {
    Admitted {
        analysis: Analysis,
        bucket: Bucket,
    },
    /// Refused before running, with GitHub's errors.
    Refused {
        errors: Vec<Value>,
        bucket: Bucket,
    },
}

/// One request, as its resolvers and the rules extension see it.
pub(crate) struct QueryContext {
    shared: web::Data<Shared>,
    budgets: web::Data<Budgets>,
    caller: Caller,
    document: ExecutableDocument,
    operation_name: Option<String>,
    variables: Variables,
    admission: Mutex<Option<Admission>>,
}

impl QueryContext {
    /// Reads the world under its lock (briefly: resolvers copy what they return).
    fn world<T>(&self, read: impl FnOnce(&World) -> T) -> T {
        read(&lock(&self.shared.world))
    }

    fn admitted(&self) -> Option<(Analysis, Bucket)> {
        match &*lock(&self.admission) {
            Some(Admission::Admitted { analysis, bucket }) => Some((*analysis, *bucket)),
            _ => None,
        }
    }

    /// GitHub's rules before execution: static limits, then the budget.
    fn admit(&self) -> Admission {
        let Some(result) =
            cost::analyse(&self.document, self.operation_name.as_deref(), &self.variables, schema_types())
        else {
            // No such operation: execution reports it, and nothing runs, so nothing is
            // charged (the analysis is marked a dry run for that).
            return Admission::Admitted {
                analysis: Analysis { dry_run: true, ..Analysis::default() },
                bucket: self.budgets.current(self.caller.bucket()),
            };
        };
        match result {
            Err(refusals) => Admission::Refused {
                errors: refusals.iter().map(errors::refusal).collect(),
                bucket: self.budgets.current(self.caller.bucket()),
            },
            Ok(analysis) => {
                match self.budgets.charge(self.caller.bucket(), analysis.cost(), analysis.dry_run) {
                    Ok(bucket) => Admission::Admitted { analysis, bucket },
                    Err(bucket) => {
                        Admission::Refused { errors: vec![errors::rate_limited(self.caller)], bucket }
                    }
                }
            }
        }
    }
}

/// The served schema's field types, for the analysis to recognise connections by type.
fn schema_types() -> &'static SchemaTypes {
    static TYPES: OnceLock<SchemaTypes> = OnceLock::new();
    TYPES.get_or_init(|| SchemaTypes::from_sdl(&schema::schema().sdl()).unwrap_or_default())
}

/// The served schema's field types with their nullability, for GitHub's nulls after field errors.
fn field_types() -> &'static nulls::FieldTypes {
    static TYPES: OnceLock<nulls::FieldTypes> = OnceLock::new();
    TYPES.get_or_init(|| nulls::FieldTypes::from_sdl(&schema::schema().sdl()).unwrap_or_default())
}

/// Runs GitHub's static rules and charges the budget once async-graphql has
/// validated the document, so that an invalid query is reported as invalid
/// (and costs nothing) before any limit is looked at.
pub(crate) struct GithubRules;

impl ExtensionFactory for GithubRules {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GithubRules)
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for GithubRules {
    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let result = next.run(ctx).await?;
        let Some(query) = ctx.data_opt::<Arc<QueryContext>>() else {
            return Ok(result);
        };
        let admission = query.admit();
        let refused = matches!(admission, Admission::Refused { .. });
        *lock(&query.admission) = Some(admission);
        if refused {
            // The handler answers with the errors kept in the admission.
            return Err(vec![ServerError::new("refused before execution", None)]);
        }
        Ok(result)
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct BudgetChange {
    limit: Option<u64>,
    remaining: Option<u64>,
    reset_in_secs: Option<u64>,
}

/// `POST /_sim/graphql-budget/{bucket}`: sets a caller's `graphql` budget.
pub(crate) async fn admin_budget(
    path: web::Path<i64>,
    change: web::Json<BudgetChange>,
    budgets: web::Data<Budgets>,
) -> HttpResponse {
    let bucket = budgets.set(
        path.into_inner(),
        change.limit,
        change.remaining,
        change.reset_in_secs.map(Duration::from_secs),
    );
    HttpResponse::Ok().json(bucket)
}

fn unauthorized(message: &str, documentation_url: &str) -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({ "message": message, "documentation_url": documentation_url }))
}

fn with_limits(mut response: HttpResponse, bucket: Bucket) -> HttpResponse {
    let pairs = [
        ("x-ratelimit-limit", bucket.limit.to_string()),
        ("x-ratelimit-remaining", bucket.remaining.to_string()),
        ("x-ratelimit-used", bucket.limit.saturating_sub(bucket.remaining).to_string()),
        ("x-ratelimit-reset", bucket.reset.to_string()),
        ("x-ratelimit-resource", "graphql".to_owned()),
    ];
    for (name, value) in pairs {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(HeaderName::from_static(name), value);
        }
    }
    response
}

fn log(shared: &Shared, req: &HttpRequest, status: StatusCode, caller: Option<Caller>, cost: u64) {
    log_limited(shared, req, status, caller, cost, None);
}

fn log_limited(
    shared: &Shared,
    req: &HttpRequest,
    status: StatusCode,
    caller: Option<Caller>,
    cost: u64,
    limited: Option<&'static str>,
) {
    let at = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    lock(&shared.stats).requests.push(LoggedRequest {
        at,
        route: ROUTE,
        path: req.uri().to_string(),
        status: status.as_u16(),
        installation: caller.and_then(Caller::installation),
        cost,
        limited,
    });
}

/// What one request was answered, before headers.
struct Answer {
    status: StatusCode,
    body: Value,
    bucket: Bucket,
    cost: u64,
}

/// `POST /graphql`.
pub(crate) async fn serve(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
    budgets: web::Data<Budgets>,
) -> HttpResponse {
    let caller = match shared.authenticate_token(&req) {
        // GitHub Apps query GraphQL with installation tokens; a JWT is not a token.
        Ok((caller, _)) => caller,
        Err(_) => {
            let missing = req
                .headers()
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_none_or(|v| !v.starts_with("Bearer ") && !v.starts_with("token "));
            let response = if missing {
                unauthorized(
                    "This endpoint requires you to be authenticated.",
                    "https://docs.github.com/graphql/guides/forming-calls-with-graphql#authenticating-with-graphql",
                )
            } else {
                unauthorized("Bad credentials", errors::DOCS)
            };
            log(&shared, &req, response.status(), None, 0);
            return response;
        }
    };
    // GitHub's secondary limits: a query is 1 point of GraphQL's 2,000 a
    // minute, and it counts among the caller's requests in flight, which
    // REST and GraphQL share. Held until the answer is built.
    let _in_flight = match shared.admit(caller.bucket(), crate::server::GRAPHQL_ENDPOINT, 1) {
        Ok(in_flight) => in_flight,
        Err(refusal) => {
            let response = refusal.response();
            log_limited(&shared, &req, response.status(), Some(caller), 0, refusal.limited());
            return response;
        }
    };
    let answer = answer(&body, &shared, &budgets, caller).await;
    let response = HttpResponse::build(answer.status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(&answer.body).unwrap_or_default());
    let response = with_limits(response, answer.bucket);
    log(&shared, &req, answer.status, Some(caller), answer.cost);
    response
}

async fn answer(
    body: &[u8],
    shared: &web::Data<Shared>,
    budgets: &web::Data<Budgets>,
    caller: Caller,
) -> Answer {
    let current = || budgets.current(caller.bucket());
    let refuse = |errors: Vec<Value>| Answer {
        status: StatusCode::OK,
        body: json!({ "errors": errors }),
        bucket: current(),
        cost: 0,
    };
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Answer {
            status: StatusCode::BAD_REQUEST,
            body: json!({ "message": "Problems parsing JSON", "documentation_url": errors::DOCS }),
            bucket: current(),
            cost: 0,
        };
    };
    let Some(query) = request.get("query").and_then(Value::as_str).map(str::to_owned) else {
        return refuse(vec![
            json!({ "message": "A query attribute must be specified and must be a string." }),
        ]);
    };
    let variables = match request.get("variables") {
        None | Some(Value::Null) => Variables::default(),
        Some(object @ Value::Object(_)) => Variables::from_json(object.clone()),
        // Some clients send the variables as a JSON string; GitHub accepts it.
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => Variables::from_json(object),
            _ => return refuse(vec![json!({ "message": "Variables are invalid JSON." })]),
        },
        Some(_) => return refuse(vec![json!({ "message": "Variables are invalid JSON." })]),
    };
    let operation_name = request.get("operationName").and_then(Value::as_str).map(str::to_owned);
    let document = match async_graphql::parser::parse_query(&query) {
        Ok(document) => document,
        Err(error) => return refuse(vec![errors::syntax(&error, &query)]),
    };

    let context = Arc::new(QueryContext {
        shared: shared.clone(),
        budgets: budgets.clone(),
        caller,
        document: document.clone(),
        operation_name: operation_name.clone(),
        variables: variables.clone(),
        admission: Mutex::new(None),
    });
    let mut request = async_graphql::Request::new(query).variables(variables).data(context.clone());
    if let Some(name) = operation_name {
        request = request.operation_name(name);
    }
    request.set_parsed_query(document);
    let response = schema::schema().execute(request).await;

    let admission = lock(&context.admission).clone();
    match admission {
        Some(Admission::Refused { errors, bucket }) => {
            Answer { status: StatusCode::OK, body: json!({ "errors": errors }), bucket, cost: 0 }
        }
        // Not admitted and no data: async-graphql refused the document (validation).
        None => {
            let errors: Vec<Value> =
                response.errors.iter().map(|e| errors::validation(e, &context.document)).collect();
            refuse(errors)
        }
        Some(Admission::Admitted { analysis, bucket }) => {
            let mut body = serde_json::Map::new();
            // Errors raised by resolvers carry a path; the others (an unknown
            // operation) stopped the request before anything ran.
            let executed = response.data != async_graphql::Value::Null
                || response.errors.is_empty()
                || response.errors.iter().any(|e| !e.path.is_empty());
            if executed {
                let mut data = match serde_json::to_value(&response.data).unwrap_or(Value::Null) {
                    // Every field asked failed: async-graphql answers null, GitHub an object of nulls.
                    Value::Null if !response.errors.is_empty() => Value::Object(serde_json::Map::new()),
                    data => data,
                };
                let operation = context.operation_name.as_deref();
                for error in response.errors.iter().filter(|e| !e.path.is_empty()) {
                    nulls::propagate(&mut data, &error.path, &context.document, operation, field_types());
                }
                body.insert("data".into(), data);
            }
            if !response.errors.is_empty() {
                let errors: Vec<Value> = if executed {
                    response.errors.iter().map(errors::execution).collect()
                } else {
                    response.errors.iter().map(|e| errors::validation(e, &context.document)).collect()
                };
                body.insert("errors".into(), Value::Array(errors));
            }
            let cost = if analysis.dry_run { 0 } else { analysis.cost() };
            Answer { status: StatusCode::OK, body: Value::Object(body), bucket, cost }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graphql_sits_beside_rest_as_on_github_and_enterprise() {
        assert_eq!(path(""), "/graphql");
        assert_eq!(path("/api/v3"), "/api/graphql");
        assert_eq!(path("/api/v3/"), "/api/graphql");
        assert_eq!(path("/github"), "/github/graphql");
    }

    #[test]
    fn a_budget_is_charged_only_what_it_has_and_dry_runs_are_free() {
        let budgets = Budgets::new(10, Duration::from_secs(3600));
        assert_eq!(budgets.charge(7, 4, false).map(|b| b.remaining), Ok(6));
        assert_eq!(budgets.charge(7, 4, true).map(|b| b.remaining), Ok(6));
        assert_eq!(budgets.charge(7, 7, false).map_err(|b| b.remaining).err(), Some(6));
        assert_eq!(budgets.charge(8, 10, false).map(|b| b.remaining), Ok(0), "buckets are per caller");
        let set = budgets.set(7, Some(100), Some(50), Some(Duration::from_secs(60)));
        assert_eq!((set.limit, set.remaining), (100, 50));
        assert_eq!(budgets.get(7), Some(set));
    }

    #[test]
    fn the_served_schema_is_readable_by_the_analysis() {
        let types = schema_types();
        use cost::FieldTypes;
        assert_eq!(types.field_type("Repository", "pullRequests"), Some("PullRequestConnection"));
        assert_eq!(types.field_type("Commit", "checkSuites"), Some("CheckSuiteConnection"));
        assert_eq!(types.field_type("Query", "nodes"), Some("Node"));
    }
}
