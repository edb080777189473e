//! GitHub's static analysis of a query, before anything runs: every connection
//! bounded by `first` or `last` (1 to 100), at most 500,000 nodes, and the
//! point cost (GitHub's "rate limits and node limits" page, FACTS §3).
//!
//! The analysis works from the parsed document, with variables substituted.
//! A field is a connection when the query passes it `first` or `last`, or when
//! the schema says its type's name ends in `Connection` (GitHub's naming rule:
//! every paginated field returns a `…Connection`). Without a schema
//! (`NoSchema`) only the first rule applies, which is enough to price queries
//! over types the simulator does not serve. `nodes(ids:)`, `repository`,
//! `object`, `headRef` and every other field are not connections: they
//! multiply by 1.
//!
//! - Requests: a connection needs as many requests as the product of the
//!   `first`/`last` of the connections around it (1 at the top level).
//!   Cost = sum of requests / 100, rounded half up, at least 1.
//! - Nodes: a connection can return the product of the `first`/`last` of the
//!   connections around it times its own; the sum over all connections must not
//!   exceed 500,000.

use std::collections::HashMap;

use async_graphql::parser::types::{
    Directive, ExecutableDocument, Field, OperationDefinition, Selection, SelectionSet, TypeKind,
};
use async_graphql::parser::{Pos, Positioned};
use async_graphql::{Name, Value, Variables};

/// GitHub's bound on `first` and `last`.
pub(crate) const MAX_PAGE: i64 = 100;
/// GitHub's bound on the nodes one query may request.
pub(crate) const MAX_NODES: u64 = 500_000;
/// GitHub's bound on `nodes(ids:)`.
pub(crate) const MAX_IDS: usize = 100;

/// What a field returns, for the analysis to follow types through the query.
pub(crate) trait FieldTypes {
    /// The named type (without list or non-null wrappers) that `field` of
    /// `parent` returns, if known.
    fn field_type(&self, parent: &str, field: &str) -> Option<&str>;
}

/// No schema: connections are known by their `first`/`last` arguments alone
/// (the tests price GitHub's examples over types the simulator does not serve).
#[cfg(test)]
pub(crate) struct NoSchema;

#[cfg(test)]
impl FieldTypes for NoSchema {
    fn field_type(&self, _parent: &str, _field: &str) -> Option<&str> {
        None
    }
}

/// The field types of a schema, read from its SDL.
#[derive(Debug, Default)]
pub(crate) struct SchemaTypes {
    fields: HashMap<String, HashMap<String, String>>,
}

impl SchemaTypes {
    pub(crate) fn from_sdl(sdl: &str) -> Result<Self, async_graphql::parser::Error> {
        let document = async_graphql::parser::parse_schema(sdl)?;
        let mut fields: HashMap<String, HashMap<String, String>> = HashMap::new();
        for definition in document.definitions {
            let async_graphql::parser::types::TypeSystemDefinition::Type(ty) = definition else {
                continue;
            };
            let ty = ty.node;
            let defined = match ty.kind {
                TypeKind::Object(object) => object.fields,
                TypeKind::Interface(interface) => interface.fields,
                _ => continue,
            };
            let entry = fields.entry(ty.name.node.to_string()).or_default();
            for field in defined {
                entry.insert(field.node.name.node.to_string(), named_type(&field.node.ty.node));
            }
        }
        Ok(Self { fields })
    }
}

fn named_type(ty: &async_graphql::parser::types::Type) -> String {
    match &ty.base {
        async_graphql::parser::types::BaseType::Named(name) => name.to_string(),
        async_graphql::parser::types::BaseType::List(inner) => named_type(inner),
    }
}

impl FieldTypes for SchemaTypes {
    fn field_type(&self, parent: &str, field: &str) -> Option<&str> {
        self.fields.get(parent)?.get(field).map(String::as_str)
    }
}

/// The outcome of a query that passed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Analysis {
    /// Requests needed to fill every connection.
    pub requests: u64,
    /// Nodes the query may return.
    pub nodes: u64,
    /// `rateLimit(dryRun: true)` was asked: report the cost, charge nothing.
    pub dry_run: bool,
}

impl Analysis {
    /// GitHub's points: requests / 100, rounded (half up), at least 1.
    pub(crate) fn cost(&self) -> u64 {
        (self.requests.saturating_add(50) / 100).max(1)
    }
}

/// Why GitHub refuses a query before running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A connection without `first` or `last`.
    MissingBoundaries { connection: String, path: Vec<String>, pos: Pos },
    /// `first` or `last` above 100.
    Excessive { connection: String, argument: &'static str, value: i64, path: Vec<String>, pos: Pos },
    /// `first` or `last` below 1.
    NotPositive { connection: String, argument: &'static str, value: i64, path: Vec<String>, pos: Pos },
    /// More than 500,000 nodes, first reached at `connection`.
    TooManyNodes { connection: String, nodes: u64 },
    /// `nodes(ids:)` with more than 100 ids.
    TooManyIds { count: usize, path: Vec<String>, pos: Pos },
}

/// The operation a request runs: the named one, or the only one.
pub(crate) fn operation<'d>(
    document: &'d ExecutableDocument,
    name: Option<&str>,
) -> Option<&'d Positioned<OperationDefinition>> {
    let mut operations = document.operations.iter();
    match name {
        Some(name) => operations.find(|(n, _)| n.map(Name::as_str) == Some(name)).map(|(_, op)| op),
        None => {
            let (_, only) = operations.next()?;
            operations.next().is_none().then_some(only)
        }
    }
}

/// Analyses `operation` of `document` under GitHub's rules. `None` when the
/// document has no such operation (execution reports that).
pub(crate) fn analyse(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    variables: &Variables,
    types: &dyn FieldTypes,
) -> Option<Result<Analysis, Vec<Refusal>>> {
    let operation = operation(document, operation_name)?;
    let root = match operation.node.ty {
        async_graphql::parser::types::OperationType::Query => "Query",
        async_graphql::parser::types::OperationType::Mutation => "Mutation",
        async_graphql::parser::types::OperationType::Subscription => "Subscription",
    };
    let mut walk = Walk {
        document,
        variables,
        defaults: operation
            .node
            .variable_definitions
            .iter()
            .filter_map(|d| d.node.default_value().map(|v| (d.node.name.node.clone(), v.clone())))
            .collect(),
        types,
        analysis: Analysis::default(),
        refusals: Vec::new(),
        over_limit: None,
        fragments: Vec::new(),
        path: Vec::new(),
    };
    walk.selection_set(&operation.node.selection_set.node, Some(root), 1, true);
    if !walk.refusals.is_empty() {
        return Some(Err(walk.refusals));
    }
    if let Some((connection, nodes)) = walk.over_limit {
        return Some(Err(vec![Refusal::TooManyNodes { connection, nodes }]));
    }
    Some(Ok(walk.analysis))
}

struct Walk<'a> {
    document: &'a ExecutableDocument,
    variables: &'a Variables,
    defaults: HashMap<Name, Value>,
    types: &'a dyn FieldTypes,
    analysis: Analysis,
    refusals: Vec<Refusal>,
    /// The first connection at which the running node count passed the limit.
    over_limit: Option<(String, u64)>,
    /// Fragments being expanded (validation forbids cycles; this guards the
    /// analysis when it runs on an unvalidated document, as in tests).
    fragments: Vec<Name>,
    path: Vec<String>,
}

impl Walk<'_> {
    /// Resolves the variables of an argument's value (their values, else their
    /// defaults, else null). The parser's value type is not exported by
    /// async-graphql, so callers apply this to it in place:
    /// `value.clone().into_const_with(self.variable())`.
    fn variable(&self) -> impl FnMut(Name) -> Result<Value, std::convert::Infallible> + '_ {
        |name| {
            Ok(self.variables.get(&name).or_else(|| self.defaults.get(&name)).cloned().unwrap_or(Value::Null))
        }
    }

    /// `@skip(if: true)` or `@include(if: false)` leave a selection out.
    fn skipped(&self, directives: &[Positioned<Directive>]) -> bool {
        directives.iter().any(|directive| {
            let condition = directive
                .node
                .get_argument("if")
                .and_then(|v| v.node.clone().into_const_with(self.variable()).ok());
            match directive.node.name.node.as_str() {
                "skip" => condition == Some(Value::Boolean(true)),
                "include" => condition == Some(Value::Boolean(false)),
                _ => false,
            }
        })
    }

    fn selection_set(&mut self, set: &SelectionSet, parent: Option<&str>, multiplier: u64, root: bool) {
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    if !self.skipped(&field.node.directives) {
                        self.field(field, parent, multiplier, root);
                    }
                }
                Selection::InlineFragment(fragment) => {
                    if self.skipped(&fragment.node.directives) {
                        continue;
                    }
                    let condition = fragment.node.type_condition.as_ref().map(|c| c.node.on.node.to_string());
                    let parent = condition.as_deref().or(parent);
                    self.selection_set(&fragment.node.selection_set.node, parent, multiplier, root);
                }
                Selection::FragmentSpread(spread) => {
                    let name = &spread.node.fragment_name.node;
                    if self.skipped(&spread.node.directives) || self.fragments.contains(name) {
                        continue;
                    }
                    let Some(fragment) = self.document.fragments.get(name) else { continue };
                    let condition = fragment.node.type_condition.node.on.node.to_string();
                    self.fragments.push(name.clone());
                    self.selection_set(&fragment.node.selection_set.node, Some(&condition), multiplier, root);
                    self.fragments.pop();
                }
            }
        }
    }

    fn int_argument(&self, field: &Field, name: &str) -> Option<Option<i64>> {
        let value = field.get_argument(name)?;
        Some(match value.node.clone().into_const_with(self.variable()).unwrap_or(Value::Null) {
            Value::Number(n) => n.as_i64(),
            _ => None,
        })
    }

    fn field(&mut self, field: &Positioned<Field>, parent: Option<&str>, multiplier: u64, root: bool) {
        let name = field.node.name.node.as_str();
        // Introspection (`__typename`, `__schema`, `__type`) has no connections.
        if name.starts_with("__") {
            return;
        }
        let ty = parent.and_then(|parent| self.types.field_type(parent, name)).map(str::to_owned);
        self.path.push(field.node.response_key().node.to_string());
        if root && name == "rateLimit" {
            let dry_run = field
                .node
                .get_argument("dryRun")
                .and_then(|v| v.node.clone().into_const_with(self.variable()).ok());
            if dry_run == Some(Value::Boolean(true)) {
                self.analysis.dry_run = true;
            }
        }
        if root && name == "nodes" {
            let ids = field
                .node
                .get_argument("ids")
                .and_then(|v| v.node.clone().into_const_with(self.variable()).ok());
            if let Some(Value::List(ids)) = ids {
                if ids.len() > MAX_IDS {
                    self.refusals.push(Refusal::TooManyIds {
                        count: ids.len(),
                        path: self.path.clone(),
                        pos: field.pos,
                    });
                }
            }
        }
        let first = self.int_argument(&field.node, "first");
        let last = self.int_argument(&field.node, "last");
        let is_connection =
            first.is_some() || last.is_some() || ty.as_deref().is_some_and(|t| t.ends_with("Connection"));
        let mut inner = multiplier;
        if is_connection {
            inner = self.connection(field, name, first.flatten(), last.flatten(), multiplier);
        }
        self.selection_set(&field.node.selection_set.node, ty.as_deref(), inner, false);
        self.path.pop();
    }

    /// Checks one connection's bounds, counts it, and returns the multiplier for what it holds.
    fn connection(
        &mut self,
        field: &Positioned<Field>,
        name: &str,
        first: Option<i64>,
        last: Option<i64>,
        multiplier: u64,
    ) -> u64 {
        let mut valid = true;
        if first.is_none() && last.is_none() {
            self.refusals.push(Refusal::MissingBoundaries {
                connection: name.to_owned(),
                path: self.path.clone(),
                pos: field.pos,
            });
            valid = false;
        }
        for (argument, value) in [("first", first), ("last", last)] {
            let Some(value) = value else { continue };
            let refusal = if value > MAX_PAGE {
                Refusal::Excessive {
                    connection: name.to_owned(),
                    argument,
                    value,
                    path: self.path.clone(),
                    pos: field.pos,
                }
            } else if value < 1 {
                Refusal::NotPositive {
                    connection: name.to_owned(),
                    argument,
                    value,
                    path: self.path.clone(),
                    pos: field.pos,
                }
            } else {
                continue;
            };
            self.refusals.push(refusal);
            valid = false;
        }
        // Both given: GitHub fills up to the larger; a refused one counts as 1 so the walk goes on.
        let size = if valid { first.into_iter().chain(last).max().unwrap_or(1).unsigned_abs() } else { 1 };
        self.analysis.requests = self.analysis.requests.saturating_add(multiplier);
        self.analysis.nodes = self.analysis.nodes.saturating_add(multiplier.saturating_mul(size));
        if self.analysis.nodes > MAX_NODES && self.over_limit.is_none() {
            self.over_limit = Some((name.to_owned(), self.analysis.nodes));
        }
        multiplier.saturating_mul(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse_text(query: &str, variables: serde_json::Value) -> Result<Analysis, Vec<Refusal>> {
        let document = async_graphql::parser::parse_query(query).expect("query parses");
        analyse(&document, None, &Variables::from_json(variables), &NoSchema).expect("one operation")
    }

    fn cost(query: &str) -> (u64, u64, u64) {
        let analysis = analyse_text(query, serde_json::json!({})).expect("passes");
        (analysis.requests, analysis.cost(), analysis.nodes)
    }

    #[test]
    fn githubs_documented_example_costs_51_points() {
        // FACTS §3: 1 + 100 + 5,000 = 5,101 requests → 51 points.
        let query = "query { viewer { login repositories(first: 100) { edges { node { name \
                     issues(first: 50) { edges { node { title labels(first: 60) { edges { node { name } } } } } } } } } } }";
        assert_eq!(cost(query), (5_101, 51, 100 + 5_000 + 300_000));
    }

    /// 100 PRs of one repository, each head commit's check suites and runs (FACTS §4).
    const HUNDRED_PRS_WITH_CHECKS: &str = "query($owner: String!, $name: String!) {
        repository(owner: $owner, name: $name) {
          pullRequests(first: 100) { nodes { number
            commits(last: 1) { nodes { commit { oid
              checkSuites(first: 10) { nodes { databaseId
                checkRuns(first: 50) { nodes { databaseId name status conclusion } } } } } } } } } } }";

    #[test]
    fn a_hundred_prs_with_their_head_checks_cost_12_points_and_51_200_nodes() {
        assert_eq!(cost(HUNDRED_PRS_WITH_CHECKS), (1_201, 12, 51_200));
    }

    /// Open PRs of 100 repositories (aliases), each head's rollup through `headRef` or `commits(last: 1)`.
    fn hundred_repositories(owner: &str, names: &[String], through_commits: bool) -> String {
        let rollup = "statusCheckRollup { state }";
        let head = if through_commits {
            format!("commits(last: 1) {{ nodes {{ commit {{ {rollup} }} }} }}")
        } else {
            format!("headRef {{ target {{ ... on Commit {{ {rollup} }} }} }}")
        };
        let mut query = String::from("query {\n");
        for (i, name) in names.iter().enumerate() {
            query.push_str(&format!(
                "  r{i}: repository(owner: \"{owner}\", name: \"{name}\") {{ pullRequests(states: OPEN, first: 100) {{ nodes {{ number headRefOid {head} }} }} }}\n"
            ));
        }
        query.push_str("  rateLimit { cost remaining limit used nodeCount resetAt }\n}");
        query
    }

    #[test]
    fn open_prs_of_a_hundred_repositories_cost_1_point_through_head_ref_and_101_through_commits() {
        let names: Vec<String> = (0..100).map(|i| format!("repo-{i}")).collect();
        assert_eq!(cost(&hundred_repositories("acme", &names, false)), (100, 1, 10_000));
        assert_eq!(cost(&hundred_repositories("acme", &names, true)), (10_100, 101, 20_000));
    }

    #[test]
    fn rounding_is_half_up_with_a_minimum_of_one() {
        assert_eq!(Analysis { requests: 0, ..Analysis::default() }.cost(), 1);
        assert_eq!(Analysis { requests: 149, ..Analysis::default() }.cost(), 1);
        assert_eq!(Analysis { requests: 150, ..Analysis::default() }.cost(), 2);
        assert_eq!(Analysis { requests: 5_101, ..Analysis::default() }.cost(), 51);
        assert_eq!(cost("{ rateLimit { cost } }"), (0, 1, 0));
    }

    #[test]
    fn variables_defaults_and_fragments_are_followed() {
        let query = "query($n: Int = 30, $m: Int) {
            repository(owner: \"a\", name: \"b\") { ...prs }
          }
          fragment prs on Repository { pullRequests(first: $n) { nodes { labels(first: $m) { totalCount } } } }";
        let analysis = analyse_text(query, serde_json::json!({ "m": 20 })).expect("passes");
        assert_eq!((analysis.requests, analysis.nodes), (31, 30 + 600));
        let analysis = analyse_text(query, serde_json::json!({ "n": 100, "m": 5 })).expect("passes");
        assert_eq!((analysis.requests, analysis.nodes), (101, 600));
        // A skipped field is not counted.
        let skipped = "query($s: Boolean!) { a: repository(owner: \"a\", name: \"b\") { pullRequests(first: 100) @skip(if: $s) { totalCount } } }";
        let analysis = analyse_text(skipped, serde_json::json!({ "s": true })).expect("passes");
        assert_eq!(analysis.requests, 0);
    }

    #[test]
    fn unbounded_oversized_and_non_positive_connections_are_refused_with_their_paths() {
        let schema = SchemaTypes::from_sdl(
            "type Query { repository(owner: String!, name: String!): Repository }
             type Repository { pullRequests(first: Int, last: Int): PullRequestConnection! }
             type PullRequestConnection { totalCount: Int! }",
        )
        .expect("sdl");
        let document = async_graphql::parser::parse_query(
            "{ repository(owner: \"a\", name: \"b\") {\n  open: pullRequests { totalCount }\n  big: pullRequests(first: 101) { totalCount }\n  zero: pullRequests(last: 0) { totalCount } } }",
        )
        .expect("parses");
        let refusals = analyse(&document, None, &Variables::default(), &schema)
            .expect("operation")
            .expect_err("refused");
        assert_eq!(refusals.len(), 3, "{refusals:?}");
        assert!(matches!(&refusals[0], Refusal::MissingBoundaries { connection, path, pos }
            if connection == "pullRequests" && path == &["repository", "open"] && pos.line == 2 && pos.column == 3));
        assert!(matches!(&refusals[1], Refusal::Excessive { argument: "first", value: 101, .. }));
        assert!(matches!(&refusals[2], Refusal::NotPositive { argument: "last", value: 0, .. }));
        // Without a schema, a field with no first/last is not known to be a connection.
        let refusals =
            analyse(&document, None, &Variables::default(), &NoSchema).expect("op").expect_err("refused");
        assert_eq!(refusals.len(), 2, "{refusals:?}");
    }

    #[test]
    fn the_node_limit_names_the_connection_where_it_is_passed() {
        let query = "{ repository(owner: \"a\", name: \"b\") { pullRequests(first: 100) { nodes {
            commits(last: 100) { nodes { commit { checkSuites(first: 1) { nodes { checkRuns(first: 100) { totalCount } } } } } } } } } }";
        // 100 + 10,000 + 10,000 + 1,000,000 nodes: over the limit at checkRuns.
        let refusals = analyse_text(query, serde_json::json!({})).expect_err("refused");
        assert_eq!(refusals, [Refusal::TooManyNodes { connection: "checkRuns".into(), nodes: 1_020_100 }]);
    }

    #[test]
    fn dry_run_and_too_many_ids_are_seen() {
        let analysis =
            analyse_text("{ rateLimit(dryRun: true) { cost } }", serde_json::json!({})).expect("passes");
        assert!(analysis.dry_run);
        let ids: Vec<String> = (0..101).map(|i| format!("PR_sim{i}")).collect();
        let refusals = analyse_text(
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            serde_json::json!({ "ids": ids }),
        )
        .expect_err("refused");
        assert!(matches!(&refusals[..], [Refusal::TooManyIds { count: 101, .. }]));
    }
}
