//! A JSON Schema (draft-07) checker for the subset GitHub's webhook schemas
//! use: type, enum, const, properties, required, additionalProperties, items,
//! oneOf, anyOf, allOf, $ref to sibling files, min/max items and length,
//! minimum/maximum, and the date-time, uri, int32 and int64 formats. With
//! `$ref` within a document (`#/components/...`) and OpenAPI 3.1's null
//! (`type: [..., "null"]`, `oneOf` with `{"type": "null"}`), it also checks
//! the service's answers against the OpenAPI document the service generates
//! ([`prmonitor::http::openapi_document`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

pub struct Schemas {
    root: PathBuf,
    cache: HashMap<PathBuf, Value>,
}

impl Schemas {
    pub fn new() -> Self {
        Self {
            root: Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github/schemas"),
            cache: HashMap::new(),
        }
    }

    fn load(&mut self, path: &Path) -> Value {
        if let Some(schema) = self.cache.get(path) {
            return schema.clone();
        }
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let schema: Value = serde_json::from_str(&text).expect("schema JSON");
        self.cache.insert(path.to_owned(), schema.clone());
        schema
    }

    /// Every violation of `event/action.schema.json` by `value`, as "path: problem".
    pub fn validate(&mut self, event: &str, action: &str, value: &Value) -> Vec<String> {
        let path = self.root.join(event).join(format!("{action}.schema.json"));
        let schema = self.load(&path);
        let mut errors = Vec::new();
        self.check(&schema, &path, value, "$", &mut errors);
        errors
    }

    /// Every violation by `value` of the schema the service's OpenAPI
    /// document gives the JSON answer `status` of `method route`.
    pub fn validate_response(
        &mut self,
        method: &str,
        route: &str,
        status: &str,
        value: &Value,
    ) -> Vec<String> {
        // Cached under a name no file has: `$ref`s within it resolve against it.
        let path = PathBuf::from("<generated openapi.json>");
        let document = match self.cache.get(&path) {
            Some(document) => document.clone(),
            None => {
                let document: Value =
                    serde_json::from_str(prmonitor::http::openapi_document()).expect("the document is JSON");
                self.cache.insert(path.clone(), document.clone());
                document
            }
        };
        let schema = document["paths"][route][method]["responses"][status]["content"]["application/json"]
            ["schema"]
            .clone();
        assert!(schema.is_object(), "the OpenAPI document has no schema for {method} {route} {status}");
        let mut errors = Vec::new();
        self.check(&schema, &path, value, "$", &mut errors);
        errors
    }

    fn resolve(&self, reference: &str, from: &Path) -> PathBuf {
        let sibling = from.parent().map(|dir| dir.join(reference));
        match sibling {
            Some(path) if path.exists() => path,
            _ => self.root.join(reference),
        }
    }

    fn check(&mut self, schema: &Value, file: &Path, value: &Value, at: &str, errors: &mut Vec<String>) {
        let Some(schema) = schema.as_object() else { return };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            if let Some(pointer) = reference.strip_prefix('#') {
                let target = self.load(file).pointer(pointer).cloned();
                let target = target.unwrap_or_else(|| panic!("{}: no {reference}", file.display()));
                self.check(&target, file, value, at, errors);
            } else {
                let path = self.resolve(reference, file);
                let target = self.load(&path);
                self.check(&target, &path, value, at, errors);
            }
        }
        if let Some(types) = schema.get("type") {
            let allowed: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            if !allowed.iter().any(|t| type_matches(t, value)) {
                errors.push(format!("{at}: expected {allowed:?}, got {}", short(value)));
                return;
            }
        }
        if let Some(options) = schema.get("enum").and_then(Value::as_array) {
            if !options.contains(value) {
                errors.push(format!("{at}: {} is not one of {options:?}", short(value)));
            }
        }
        if let Some(constant) = schema.get("const") {
            if constant != value {
                errors.push(format!("{at}: {} is not {constant}", short(value)));
            }
        }
        if let (Some(format), Some(text)) = (schema.get("format").and_then(Value::as_str), value.as_str()) {
            let ok = match format {
                "date-time" => chrono::DateTime::parse_from_rfc3339(text).is_ok(),
                "uri" => url::Url::parse(text).is_ok(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: '{text}' is not a {format}"));
            }
        }
        if let (Some(format), Some(_)) = (schema.get("format").and_then(Value::as_str), value.as_number()) {
            let ok = match format {
                "int32" => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                "int64" => value.as_i64().is_some(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: {} is not an {format}", short(value)));
            }
        }
        if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
            for sub in all {
                self.check(sub, file, value, at, errors);
            }
        }
        for (keyword, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            if let Some(options) = schema.get(keyword).and_then(Value::as_array) {
                let passing = options
                    .iter()
                    .filter(|sub| {
                        let mut sub_errors = Vec::new();
                        self.check(sub, file, value, at, &mut sub_errors);
                        sub_errors.is_empty()
                    })
                    .count();
                if passing == 0 || (exactly_one && passing > 1) {
                    errors.push(format!("{at}: {passing} of the {keyword} options match {}", short(value)));
                }
            }
        }
        if let Some(object) = value.as_object() {
            let properties = schema.get("properties").and_then(Value::as_object);
            if let Some(required) = schema.get("required").and_then(Value::as_array) {
                for key in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(key) {
                        errors.push(format!("{at}: missing required '{key}'"));
                    }
                }
            }
            for (key, item) in object {
                let child = format!("{at}.{key}");
                match properties.and_then(|p| p.get(key)) {
                    Some(sub) => self.check(sub, file, item, &child, errors),
                    None => match schema.get("additionalProperties") {
                        Some(Value::Bool(false)) if properties.is_some() => {
                            errors.push(format!("{at}: '{key}' is not allowed"))
                        }
                        Some(sub @ Value::Object(_)) => self.check(sub, file, item, &child, errors),
                        _ => {}
                    },
                }
            }
        }
        if let Some(items) = value.as_array() {
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    self.check(sub, file, item, &format!("{at}[{i}]"), errors);
                }
            }
            let len = items.len() as u64;
            if schema.get("minItems").and_then(Value::as_u64).is_some_and(|min| len < min) {
                errors.push(format!("{at}: too few items"));
            }
            if schema.get("maxItems").and_then(Value::as_u64).is_some_and(|max| len > max) {
                errors.push(format!("{at}: too many items"));
            }
        }
        if let (Some(text), Some(max)) = (value.as_str(), schema.get("maxLength").and_then(Value::as_u64)) {
            if text.chars().count() as u64 > max {
                errors.push(format!("{at}: longer than {max}"));
            }
        }
        if let Some(number) = value.as_f64() {
            if schema.get("minimum").and_then(Value::as_f64).is_some_and(|min| number < min) {
                errors.push(format!("{at}: below the minimum"));
            }
            if schema.get("maximum").and_then(Value::as_f64).is_some_and(|max| number > max) {
                errors.push(format!("{at}: above the maximum"));
            }
        }
    }
}

fn type_matches(name: &str, value: &Value) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => false,
    }
}

fn short(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        format!("{}…", &text[..text.char_indices().nth(77).map_or(text.len(), |(i, _)| i)])
    } else {
        text
    }
}

#[test]
fn githubs_own_examples_pass_and_broken_ones_fail() {
    let mut schemas = Schemas::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/github/payloads");
    for (event, action) in
        [("pull_request", "opened"), ("pull_request", "closed"), ("check_run", "completed")]
    {
        let text = std::fs::read_to_string(root.join(event).join(format!("{action}.json"))).expect("example");
        let mut example: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(schemas.validate(event, action, &example), Vec::<String>::new(), "{event}/{action}");
        // The checker is not a rubber stamp: breaking the example breaks validation.
        example["action"] = Value::String("bogus".into());
        example.as_object_mut().expect("object").remove("repository");
        example["sender"]["id"] = Value::String("1".into());
        let errors = schemas.validate(event, action, &example);
        assert!(errors.iter().any(|e| e.contains("bogus")), "{errors:?}");
        assert!(errors.iter().any(|e| e.contains("missing required 'repository'")), "{errors:?}");
        assert!(errors.iter().any(|e| e.starts_with("$.sender.id")), "{errors:?}");
    }
}

#[test]
fn the_openapi_repository_schema_is_not_a_rubber_stamp() {
    let mut schemas = Schemas::new();
    let zeros = serde_json::json!({
        "total": 0, "pr_new": 0, "pr_updated": 0, "pr_gone": 0, "check_run_new": 0, "check_run_updated": 0,
        "merge_group": 0, "status_new": 0, "status_updated": 0, "required_checks": 0
    });
    let repository = serde_json::json!({
        "full_name": "o/r", "github_id": 5, "installation_id": null, "active": true,
        "last_synced_at": "2026-01-02T03:04:05Z", "last_swept_at": null, "consecutive_failures": 0,
        "last_failure_reason": null, "last_failure_at": null, "repairs_last_24h": zeros,
    });
    let page = |item: Value| serde_json::json!({ "items": [item], "page": 1, "per_page": 30, "total": 1 });
    let validate = |schemas: &mut Schemas, value: &Value| {
        schemas.validate_response("get", "/api/v1/repositories", "200", value)
    };
    assert_eq!(validate(&mut schemas, &page(repository.clone())), Vec::<String>::new());
    let mut without_repairs = repository.clone();
    without_repairs.as_object_mut().expect("object").remove("repairs_last_24h");
    let errors = validate(&mut schemas, &page(without_repairs));
    assert!(errors.iter().any(|e| e.contains("missing required 'repairs_last_24h'")), "{errors:?}");
    let mut partial = repository.clone();
    partial["repairs_last_24h"].as_object_mut().expect("object").remove("pr_gone");
    partial["repairs_last_24h"]["total"] = Value::from(-1);
    partial["last_swept_at"] = Value::from("yesterday");
    let errors = validate(&mut schemas, &page(partial));
    assert!(errors.iter().any(|e| e.contains("missing required 'pr_gone'")), "{errors:?}");
    assert!(errors.iter().any(|e| e.starts_with("$.items[0].repairs_last_24h.total")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("'yesterday' is not a date-time")), "{errors:?}");
    let mut wide = repository.clone();
    wide["consecutive_failures"] = Value::from(3_000_000_000_u64);
    wide["github_id"] = Value::from(u64::MAX);
    wide["installation_id"] = Value::from("2001");
    wide["repairs_last_24h"]["pr_new"] = Value::Null;
    let errors = validate(&mut schemas, &page(wide));
    assert!(
        errors.iter().any(|e| e == "$.items[0].consecutive_failures: 3000000000 is not an int32"),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.starts_with("$.items[0].github_id: 18446744073709551615 is not an int64")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("0 of the oneOf options match \"2001\"")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.starts_with("$.items[0].repairs_last_24h.pr_new: expected")),
        "{errors:?}"
    );
    let mut extra = repository;
    extra["secret"] = Value::from("x");
    assert!(validate(&mut schemas, &page(extra)).iter().any(|e| e.contains("'secret' is not allowed")));
}

/// Answers of the routes that need no data, checked against the generated
/// document: health, readiness, the errors of the admin and read APIs.
#[tokio::test]
async fn operations_and_error_answers_are_what_the_document_says() {
    let app = prmonitor_testkit::spawn_app_with(&[("PRMONITOR_ADMIN_TOKEN", "admin-token")]).await;
    let mut schemas = Schemas::new();
    let cases: [(&str, &str, Option<&str>, &str, &str); 7] = [
        ("/healthz", "/healthz", None, "200", "get"),
        ("/readyz", "/readyz", None, "200", "get"),
        ("/api/v1/jobs/1", "/api/v1/jobs/{id}", None, "401", "get"),
        ("/api/v1/jobs/x", "/api/v1/jobs/{id}", Some("admin-token"), "400", "get"),
        ("/api/v1/jobs/999999", "/api/v1/jobs/{id}", Some("admin-token"), "404", "get"),
        ("/api/v1/repositories?colour=red", "/api/v1/repositories", Some("admin-token"), "400", "get"),
        ("/api/v1/repositories?page=1", "/api/v1/repositories", Some("admin-token"), "200", "get"),
    ];
    for (url, route, token, status, method) in cases {
        let mut request = app.client.get(app.url(url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        assert_eq!(response.status().as_str(), status, "{url}");
        let body: Value = response.json().await.expect("JSON");
        assert_eq!(
            schemas.validate_response(method, route, status, &body),
            Vec::<String>::new(),
            "{url}: {body}"
        );
    }
    let served: Value = app.get("/api/v1/openapi.json").await.json().await.expect("JSON");
    let generated: Value = serde_json::from_str(prmonitor::http::openapi_document()).expect("JSON");
    assert_eq!(served, generated, "the route serves the generated document");
}
