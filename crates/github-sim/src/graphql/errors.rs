//! GitHub's error shapes for GraphQL answers. Every refusal after
//! authentication is HTTP 200 with an `errors` array; each error has a
//! `message`, and where GitHub gives them `type`, `path`, `locations` and
//! `extensions`. Validation errors follow graphql-ruby, which GitHub runs:
//! `Field 'foo' doesn't exist on type 'Repository'` with `extensions.code`.

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::parser::Pos;
use async_graphql::{ErrorExtensions, PathSegment, ServerError};
use serde_json::{json, Map, Value};

use super::cost::{Refusal, MAX_IDS, MAX_NODES, MAX_PAGE};
use crate::server::Caller;

/// Where GitHub's GraphQL error bodies point.
pub(crate) const DOCS: &str = "https://docs.github.com/graphql";

/// A resolver error carrying GitHub's `type` (lifted to the top of the error when rendered).
pub(crate) fn typed(kind: &'static str, message: impl Into<String>) -> async_graphql::Error {
    async_graphql::Error::new(message).extend_with(|_, extensions| extensions.set("type", kind))
}

pub(crate) fn not_found(message: impl Into<String>) -> async_graphql::Error {
    typed("NOT_FOUND", message)
}

fn locations(positions: impl IntoIterator<Item = Pos>) -> Value {
    Value::Array(positions.into_iter().map(|p| json!({ "line": p.line, "column": p.column })).collect())
}

/// `1020100` → `1,020,100`, as GitHub writes counts in messages.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A refusal of the static analysis.
pub(crate) fn refusal(refusal: &Refusal) -> Value {
    match refusal {
        Refusal::MissingBoundaries { connection, path, pos } => json!({
            "type": "MISSING_PAGINATION_BOUNDARIES",
            "path": path,
            "locations": locations([*pos]),
            "message": format!("You must provide a `first` or `last` value to properly paginate the `{connection}` connection."),
        }),
        Refusal::Excessive { connection, argument, value, path, pos } => json!({
            "type": "EXCESSIVE_PAGINATION",
            "path": path,
            "locations": locations([*pos]),
            "message": format!(
                "Requesting {value} records on the `{connection}` connection exceeds the `{argument}` limit of {MAX_PAGE} records."
            ),
        }),
        // GitHub's wording for this case is not documented; the type is the one
        // GitHub gives connections it cannot page (a bound of 0 bounds nothing).
        Refusal::NotPositive { connection, argument, value, path, pos } => json!({
            "type": "MISSING_PAGINATION_BOUNDARIES",
            "path": path,
            "locations": locations([*pos]),
            "message": format!(
                "`{argument}` on the `{connection}` connection must be a positive number of records (1 to {MAX_PAGE}), not {value}."
            ),
        }),
        Refusal::TooManyNodes { connection, nodes } => json!({
            "type": "MAX_NODE_LIMIT_EXCEEDED",
            "message": format!(
                "By the time this query traverses to the {connection} connection, it is requesting up to {} possible nodes which exceeds the maximum limit of {}.",
                thousands(*nodes),
                thousands(MAX_NODES),
            ),
        }),
        Refusal::TooManyIds { count, path, pos } => json!({
            "type": "EXCESSIVE_PAGINATION",
            "path": path,
            "locations": locations([*pos]),
            "message": format!("You may not request more than {MAX_IDS} nodes at once; this query asks for {count}."),
        }),
    }
}

/// The primary limit is spent: GitHub answers 200 with `RATE_LIMITED`.
pub(crate) fn rate_limited(caller: Caller) -> Value {
    let who = match caller.installation() {
        Some(id) => format!("installation ID {id}"),
        None => format!("user ID {}", caller.bucket()),
    };
    json!({ "type": "RATE_LIMITED", "message": format!("API rate limit already exceeded for {who}.") })
}

/// A syntax error, as graphql-ruby words it: `Parse error on "}" (RCURLY) at [1, 10]`.
pub(crate) fn syntax(error: &async_graphql::parser::Error, query: &str) -> Value {
    let Some(pos) = error.positions().next() else {
        return json!({ "message": error.to_string(), "locations": [] });
    };
    match token_at(query, pos) {
        Some((text, kind, at)) => json!({
            "message": format!("Parse error on {} ({kind}) at [{}, {}]", Value::String(text), at.line, at.column),
            "locations": locations([at]),
        }),
        None => json!({ "message": "Unexpected end of document", "locations": [] }),
    }
}

/// The token at `pos` (after insignificant whitespace and commas), its
/// graphql-ruby token name and where it starts; `None` at the end of the document.
fn token_at(query: &str, pos: Pos) -> Option<(String, &'static str, Pos)> {
    let line_text = query.lines().nth(pos.line.checked_sub(1)?)?;
    let mut at = pos;
    let mut rest: String = line_text.chars().skip(pos.column.saturating_sub(1)).collect();
    // Later lines, for when the error points at the end of a line.
    let mut later = query.lines().skip(pos.line);
    loop {
        let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ',');
        at.column += rest.chars().count() - trimmed.chars().count();
        if !trimmed.is_empty() && !trimmed.starts_with('#') {
            rest = trimmed.to_owned();
            break;
        }
        rest = later.next()?.to_owned();
        at = Pos { line: at.line + 1, column: 1 };
    }
    let first = rest.chars().next()?;
    let punctuator = |text: &str, kind| Some((text.to_owned(), kind, at));
    match first {
        '{' => punctuator("{", "LCURLY"),
        '}' => punctuator("}", "RCURLY"),
        '(' => punctuator("(", "LPAREN"),
        ')' => punctuator(")", "RPAREN"),
        '[' => punctuator("[", "LBRACKET"),
        ']' => punctuator("]", "RBRACKET"),
        ':' => punctuator(":", "COLON"),
        '!' => punctuator("!", "BANG"),
        '=' => punctuator("=", "EQUALS"),
        '@' => punctuator("@", "DIR_SIGN"),
        '$' => punctuator("$", "VAR_SIGN"),
        '|' => punctuator("|", "PIPE"),
        '&' => punctuator("&", "AMP"),
        '.' if rest.starts_with("...") => punctuator("...", "ELLIPSIS"),
        '"' => {
            let body: String = rest.chars().skip(1).take_while(|&c| c != '"').collect();
            Some((body, "STRING", at))
        }
        c if c.is_ascii_digit() || c == '-' => {
            let number: String = rest
                .chars()
                .take_while(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.' | 'e' | 'E'))
                .collect();
            let kind = if number.contains(['.', 'e', 'E']) { "FLOAT" } else { "INT" };
            Some((number, kind, at))
        }
        c if c.is_ascii_alphabetic() || c == '_' => {
            let word: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let kind = match word.as_str() {
                "query" => "QUERY",
                "mutation" => "MUTATION",
                "subscription" => "SUBSCRIPTION",
                "fragment" => "FRAGMENT",
                "on" => "ON",
                "true" => "TRUE",
                "false" => "FALSE",
                "null" => "NULL",
                "schema" => "SCHEMA",
                "type" => "TYPE",
                "interface" => "INTERFACE",
                "union" => "UNION",
                "enum" => "ENUM",
                "input" => "INPUT",
                "scalar" => "SCALAR",
                "extend" => "EXTEND",
                "directive" => "DIRECTIVE",
                "implements" => "IMPLEMENTS",
                _ => "IDENTIFIER",
            };
            Some((word, kind, at))
        }
        other => Some((other.to_string(), "UNKNOWN_CHAR", at)),
    }
}

/// The strings between double quotes in an async-graphql message, in order.
fn quoted(message: &str) -> Vec<&str> {
    message.split('"').skip(1).step_by(2).collect()
}

/// A validation error in graphql-ruby's words where GitHub's are known
/// (unknown field, unknown argument, missing argument); otherwise
/// async-graphql's message in GitHub's shape.
pub(crate) fn validation(error: &ServerError, document: &ExecutableDocument) -> Value {
    let message = error.message.as_str();
    let parts = quoted(message);
    let path = error.locations.first().and_then(|pos| path_at(document, *pos));
    let (message, extensions) = if message.starts_with("Unknown field \"") && parts.len() >= 2 {
        (
            format!("Field '{}' doesn't exist on type '{}'", parts[0], parts[1]),
            Some(json!({ "code": "undefinedField", "typeName": parts[1], "fieldName": parts[0] })),
        )
    } else if message.starts_with("Unknown argument \"")
        && message.contains("\" on field \"")
        && parts.len() >= 2
    {
        (
            format!("Field '{}' doesn't accept argument '{}'", parts[1], parts[0]),
            Some(
                json!({ "code": "argumentNotAccepted", "name": parts[1], "typeName": "Field", "argumentName": parts[0] }),
            ),
        )
    } else if message.starts_with("Field \"")
        && message.ends_with("is required but not provided")
        && parts.len() >= 2
    {
        (
            format!("Field '{}' is missing required arguments: {}", parts[0], parts[1]),
            Some(
                json!({ "code": "missingRequiredArguments", "className": "Field", "name": parts[0], "arguments": parts[1] }),
            ),
        )
    } else {
        (message.to_owned(), None)
    };
    let mut object = Map::new();
    if let Some(path) = path {
        object.insert("path".into(), json!(path));
    }
    if let Some(extensions) = extensions {
        object.insert("extensions".into(), extensions);
    }
    object.insert("locations".into(), locations(error.locations.iter().copied()));
    object.insert("message".into(), Value::String(message));
    Value::Object(object)
}

/// graphql-ruby's static path to the field (or argument) at `pos`:
/// `["query", "repository", "foo"]`, with the operation (`query Name`),
/// fragment (`fragment Name`) or inline fragment (`... on Commit`) as a step.
fn path_at(document: &ExecutableDocument, pos: Pos) -> Option<Vec<String>> {
    for (name, operation) in document.operations.iter() {
        let kind = match operation.node.ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        let root = match name {
            Some(name) => format!("{kind} {name}"),
            None => kind.to_owned(),
        };
        if let Some(path) = search(&operation.node.selection_set.node, pos, &mut vec![root]) {
            return Some(path);
        }
    }
    for (name, fragment) in &document.fragments {
        if let Some(path) =
            search(&fragment.node.selection_set.node, pos, &mut vec![format!("fragment {name}")])
        {
            return Some(path);
        }
    }
    None
}

fn search(set: &SelectionSet, pos: Pos, path: &mut Vec<String>) -> Option<Vec<String>> {
    for selection in &set.items {
        let found = match &selection.node {
            Selection::Field(field) => {
                path.push(field.node.response_key().node.to_string());
                let found = if field.pos == pos {
                    Some(path.clone())
                } else if let Some((argument, _)) =
                    field.node.arguments.iter().find(|(name, _)| name.pos == pos)
                {
                    let mut path = path.clone();
                    path.push(argument.node.to_string());
                    Some(path)
                } else {
                    search(&field.node.selection_set.node, pos, path)
                };
                path.pop();
                found
            }
            Selection::InlineFragment(fragment) => {
                path.push(match &fragment.node.type_condition {
                    Some(condition) => format!("... on {}", condition.node.on.node),
                    None => "...".to_owned(),
                });
                let found = search(&fragment.node.selection_set.node, pos, path);
                path.pop();
                found
            }
            Selection::FragmentSpread(_) => None,
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// An error raised while the query ran (e.g. `NOT_FOUND`), with its `type` lifted out of the extensions.
pub(crate) fn execution(error: &ServerError) -> Value {
    let mut object = Map::new();
    if let Some(kind) = error.extensions.as_ref().and_then(|e| e.get("type")) {
        object.insert("type".into(), serde_json::to_value(kind).unwrap_or(Value::Null));
    }
    if !error.path.is_empty() {
        let path: Vec<Value> = error
            .path
            .iter()
            .map(|segment| match segment {
                PathSegment::Field(name) => json!(name),
                PathSegment::Index(index) => json!(index),
            })
            .collect();
        object.insert("path".into(), Value::Array(path));
    }
    if !error.locations.is_empty() {
        object.insert("locations".into(), locations(error.locations.iter().copied()));
    }
    object.insert("message".into(), Value::String(error.message.clone()));
    Value::Object(object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax_of(query: &str) -> Value {
        let error = async_graphql::parser::parse_query(query).expect_err("a syntax error");
        syntax(&error, query)
    }

    #[test]
    fn syntax_errors_name_the_token_as_graphql_ruby_does() {
        let error = syntax_of("{ viewer }}");
        assert_eq!(error["message"], "Parse error on \"}\" (RCURLY) at [1, 11]", "{error}");
        assert_eq!(error["locations"], json!([{ "line": 1, "column": 11 }]));
        let error = syntax_of("query {\n  repository(owner: \"a\" name: ) { id }\n}");
        assert_eq!(error["message"], "Parse error on \")\" (RPAREN) at [2, 31]", "{error}");
        let error = syntax_of("{ repository(owner: \"a\", name: \"b\") { id }");
        assert_eq!(error["message"], "Unexpected end of document", "{error}");
    }

    #[test]
    fn counts_are_written_with_thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(500_000), "500,000");
        assert_eq!(thousands(1_020_100), "1,020,100");
    }

    #[test]
    fn static_paths_start_at_the_operation_and_use_aliases() {
        let document = async_graphql::parser::parse_query(
            "query Sweep {\n  r0: repository(owner: \"a\", name: \"b\") {\n    ... on Repository { foo }\n  }\n}",
        )
        .expect("parses");
        let path = path_at(&document, Pos { line: 3, column: 25 });
        assert_eq!(
            path,
            Some(vec!["query Sweep".to_owned(), "r0".into(), "... on Repository".into(), "foo".into()])
        );
    }
}
