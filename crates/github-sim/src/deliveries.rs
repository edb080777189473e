//! GitHub's App webhook deliveries API (FACTS §1 and §4): every attempt the
//! simulator made to deliver a webhook, newest first with cursor paging, one
//! attempt's request and response, and redelivery. App JWT only; attempts
//! older than GitHub's 3-day retention are neither listed nor found.

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::server::{lock, points, Caller, GhError, InFlight, Shared};
use crate::webhooks::HookDelivery;

/// How long GitHub keeps deliveries (the current github.com documentation).
pub(crate) const RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    pub per_page: Option<usize>,
    pub cursor: Option<String>,
    /// `success` (status code 200–399) or `failure`.
    pub status: Option<String>,
}

/// One page of the listing, and the cursor of the next one.
#[derive(Debug, PartialEq)]
pub(crate) struct Page<'a> {
    pub items: Vec<&'a HookDelivery>,
    pub next: Option<String>,
}

fn retained(attempt: &HookDelivery, now: SystemTime) -> bool {
    now.duration_since(attempt.delivered_at).map_or(true, |age| age < RETENTION)
}

fn cursor(id: u64) -> String {
    format!("v1_{id}")
}

/// The page `query` asks for out of `attempts` (oldest first, ids increasing,
/// as recorded): newest first, only those within the retention at `now`,
/// filtered by `status`, 30 a page by default and at most 100. A cursor
/// names the first attempt of its page.
pub(crate) fn page<'a>(
    attempts: &'a [HookDelivery],
    now: SystemTime,
    query: &ListQuery,
) -> Result<Page<'a>, GhError> {
    let per_page = query.per_page.unwrap_or(30).clamp(1, 100);
    let wanted: Option<bool> = match query.status.as_deref() {
        None => None,
        Some("success") => Some(true),
        Some("failure") => Some(false),
        Some(other) => {
            return Err(GhError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("Invalid value for status: {other:?}; expected success or failure"),
            ))
        }
    };
    let start = match query.cursor.as_deref() {
        None => u64::MAX,
        Some(text) => text
            .strip_prefix("v1_")
            .and_then(|id| id.parse::<u64>().ok())
            .ok_or_else(|| GhError::new(StatusCode::BAD_REQUEST, "Invalid cursor"))?,
    };
    let mut matching = attempts
        .iter()
        .rev()
        .filter(|a| a.id <= start && retained(a, now) && wanted.is_none_or(|ok| a.succeeded() == ok));
    let items: Vec<&HookDelivery> = matching.by_ref().take(per_page).collect();
    let next = matching.next().map(|a| cursor(a.id));
    Ok(Page { items, next })
}

/// The attempt `id`, if it is still within the retention.
pub(crate) fn find(attempts: &[HookDelivery], now: SystemTime, id: u64) -> Option<&HookDelivery> {
    attempts.iter().find(|a| a.id == id).filter(|a| retained(a, now))
}

fn timestamp(at: SystemTime) -> String {
    let at: chrono::DateTime<chrono::Utc> = at.into();
    at.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// A list item: what the listing shows of an attempt.
pub(crate) fn summary(attempt: &HookDelivery) -> Value {
    json!({
        "id": attempt.id,
        "guid": attempt.guid,
        "delivered_at": timestamp(attempt.delivered_at),
        "redelivery": attempt.redelivery,
        "duration": attempt.duration,
        "status": attempt.status,
        "status_code": attempt.status_code,
        "event": attempt.event,
        // Events without an action (`status`, `push`) show null, as on GitHub.
        "action": (!attempt.action.is_empty()).then_some(attempt.action),
        "installation_id": attempt.installation_id,
        "repository_id": attempt.repository_id,
        "throttled_at": null,
    })
}

/// The detail: the summary plus the target, the request and the response.
pub(crate) fn detail_json(attempt: &HookDelivery) -> Value {
    let mut value = summary(attempt);
    let payload: Value = serde_json::from_slice(&attempt.body).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("url".into(), json!(attempt.url));
        map.insert("request".into(), json!({ "headers": attempt.request_headers, "payload": payload }));
        map.insert(
            "response".into(),
            json!({ "headers": attempt.response_headers, "payload": attempt.response_body }),
        );
    }
    value
}

type Data = web::Data<Shared>;

/// App JWT, then admission under the secondary limits; the refusal
/// otherwise (already logged).
fn admit_app<'a>(
    shared: &'a Shared,
    req: &HttpRequest,
    route: &'static str,
) -> Result<InFlight<'a>, GhError> {
    let app_id = lock(&shared.world).app_id;
    if let Err(refusal) = shared.authenticate_app(req, app_id) {
        shared.log(route, req, refusal.status.as_u16(), None);
        return Err(refusal);
    }
    shared.admit(Caller::App.bucket(), route, points(req.method())).inspect_err(|refusal| {
        shared.log_limited(route, req, refusal.status.as_u16(), Some(Caller::App), refusal.limited());
    })
}

fn answer(shared: &Shared, req: &HttpRequest, route: &'static str, response: HttpResponse) -> HttpResponse {
    shared.log(route, req, response.status().as_u16(), Some(Caller::App));
    response
}

fn not_found() -> HttpResponse {
    GhError::new(StatusCode::NOT_FOUND, "Not Found").response()
}

pub(crate) async fn list(req: HttpRequest, query: web::Query<ListQuery>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "GET /app/hook/deliveries";
    let _in_flight = match admit_app(&shared, &req, ROUTE) {
        Ok(in_flight) => in_flight,
        Err(refusal) => return refusal.response(),
    };
    let listed = {
        let hooks = lock(&shared.dispatcher.hooks);
        page(&hooks.attempts, SystemTime::now(), &query)
            .map(|page| (page.items.into_iter().map(summary).collect::<Vec<Value>>(), page.next))
    };
    let response = match listed {
        Err(refusal) => refusal.response(),
        Ok((items, next)) => {
            let mut response = HttpResponse::Ok().json(items);
            let link = next.map(|next| next_link(&shared, &req, &next));
            if let Some(value) = link.and_then(|l| actix_web::http::header::HeaderValue::from_str(&l).ok()) {
                response.headers_mut().insert(actix_web::http::header::LINK, value);
            }
            response
        }
    };
    answer(&shared, &req, ROUTE, response)
}

/// `<…/app/hook/deliveries?per_page=N&cursor=C>; rel="next"`, the other parameters kept.
fn next_link(shared: &Shared, req: &HttpRequest, next: &str) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        if key != "cursor" {
            serializer.append_pair(&key, &value);
        }
    }
    serializer.append_pair("cursor", next);
    format!("<{}{}?{}>; rel=\"next\"", crate::server::origin(&shared.urls), req.path(), serializer.finish())
}

pub(crate) async fn detail(req: HttpRequest, path: web::Path<String>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "GET /app/hook/deliveries/{delivery_id}";
    let _in_flight = match admit_app(&shared, &req, ROUTE) {
        Ok(in_flight) => in_flight,
        Err(refusal) => return refusal.response(),
    };
    let found = path.parse::<u64>().ok().and_then(|id| {
        let hooks = lock(&shared.dispatcher.hooks);
        find(&hooks.attempts, SystemTime::now(), id).map(detail_json)
    });
    let response = match found {
        Some(value) => HttpResponse::Ok().json(value),
        None => not_found(),
    };
    answer(&shared, &req, ROUTE, response)
}

pub(crate) async fn redeliver(req: HttpRequest, path: web::Path<String>, shared: Data) -> HttpResponse {
    const ROUTE: &str = "POST /app/hook/deliveries/{delivery_id}/attempts";
    let _in_flight = match admit_app(&shared, &req, ROUTE) {
        Ok(in_flight) => in_flight,
        Err(refusal) => return refusal.response(),
    };
    let configured = lock(&shared.webhook).is_some();
    let known = path.parse::<u64>().ok().filter(|id| {
        let hooks = lock(&shared.dispatcher.hooks);
        find(&hooks.attempts, SystemTime::now(), *id).is_some()
    });
    let response = match known {
        Some(id) if configured && shared.dispatcher.redeliver(id) => HttpResponse::Accepted().json(json!({})),
        _ => not_found(),
    };
    answer(&shared, &req, ROUTE, response)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;

    fn attempt(id: u64, status_code: u16, age: Duration, now: SystemTime) -> HookDelivery {
        HookDelivery {
            id,
            guid: format!("guid-{id}"),
            delivered_at: now - age,
            redelivery: false,
            duration: 0.01,
            status: if status_code == 200 {
                "OK".into()
            } else {
                format!("Invalid HTTP Response: {status_code}")
            },
            status_code,
            event: "pull_request",
            action: "opened",
            installation_id: Some(1),
            repository_id: Some(2),
            url: "http://127.0.0.1:1/hook".into(),
            request_headers: BTreeMap::new(),
            body: Arc::new(b"{\"a\":1}".to_vec()),
            response_headers: BTreeMap::new(),
            response_body: None,
        }
    }

    fn ids(page: &Page<'_>) -> Vec<u64> {
        page.items.iter().map(|a| a.id).collect()
    }

    fn query(per_page: Option<usize>, cursor: Option<&str>, status: Option<&str>) -> ListQuery {
        ListQuery { per_page, cursor: cursor.map(str::to_owned), status: status.map(str::to_owned) }
    }

    #[test]
    fn pages_run_newest_first_and_a_cursor_leads_to_the_next() {
        let now = SystemTime::now();
        let attempts: Vec<HookDelivery> = (1..=12).map(|id| attempt(id, 200, Duration::ZERO, now)).collect();
        let first = page(&attempts, now, &query(Some(5), None, None)).unwrap();
        assert_eq!(ids(&first), [12, 11, 10, 9, 8]);
        assert_eq!(first.next.as_deref(), Some("v1_7"));
        let second = page(&attempts, now, &query(Some(5), first.next.as_deref(), None)).unwrap();
        assert_eq!(ids(&second), [7, 6, 5, 4, 3]);
        let third = page(&attempts, now, &query(Some(5), second.next.as_deref(), None)).unwrap();
        assert_eq!(ids(&third), [2, 1]);
        assert_eq!(third.next, None, "the last page has no next");
        // GitHub's defaults and bound: 30 a page, at most 100.
        let many: Vec<HookDelivery> = (1..=250).map(|id| attempt(id, 200, Duration::ZERO, now)).collect();
        assert_eq!(page(&many, now, &ListQuery::default()).unwrap().items.len(), 30);
        assert_eq!(page(&many, now, &query(Some(1000), None, None)).unwrap().items.len(), 100);
        assert!(page(&many, now, &query(None, Some("garbage"), None)).is_err());
    }

    #[test]
    fn deliveries_older_than_three_days_are_gone_and_status_filters() {
        let now = SystemTime::now();
        let day = Duration::from_secs(24 * 3600);
        let attempts = vec![
            attempt(1, 200, 4 * day, now),
            attempt(2, 503, 3 * day, now),
            attempt(3, 0, 2 * day, now),
            attempt(4, 302, day, now),
            attempt(5, 200, Duration::ZERO, now),
            attempt(6, 404, Duration::ZERO, now),
        ];
        assert_eq!(ids(&page(&attempts, now, &ListQuery::default()).unwrap()), [6, 5, 4, 3]);
        assert_eq!(ids(&page(&attempts, now, &query(None, None, Some("success"))).unwrap()), [5, 4]);
        assert_eq!(ids(&page(&attempts, now, &query(None, None, Some("failure"))).unwrap()), [6, 3]);
        assert!(page(&attempts, now, &query(None, None, Some("nope"))).is_err());
        assert!(find(&attempts, now, 1).is_none(), "expired");
        assert!(find(&attempts, now, 2).is_none(), "exactly three days: expired");
        assert_eq!(find(&attempts, now, 3).map(|a| a.id), Some(3));
        assert!(find(&attempts, now, 99).is_none());
        // A filtered page's cursor skips the others too.
        let first = page(&attempts, now, &query(Some(1), None, Some("failure"))).unwrap();
        assert_eq!((ids(&first), first.next.as_deref()), (vec![6], Some("v1_3")));
    }

    #[test]
    fn items_carry_githubs_fields_and_the_detail_the_request_and_response() {
        let now = SystemTime::now();
        let item = summary(&attempt(3, 503, Duration::ZERO, now));
        for field in [
            "id",
            "guid",
            "delivered_at",
            "redelivery",
            "duration",
            "status",
            "status_code",
            "event",
            "action",
            "installation_id",
            "repository_id",
            "throttled_at",
        ] {
            assert!(item.get(field).is_some(), "{field}");
        }
        assert!(item.get("request").is_none());
        let detail = detail_json(&attempt(3, 503, Duration::ZERO, now));
        assert_eq!(detail["request"]["payload"], json!({ "a": 1 }));
        assert_eq!(detail["response"]["payload"], Value::Null);
        assert_eq!(detail["url"], "http://127.0.0.1:1/hook");
    }
}
