//! The served schema checked against GitHub's published one
//! (fixtures/github/graphql/schema.graphql): every type the simulator serves
//! exists there with the same kind; every field with the same type
//! (nullability and lists included) and arguments GitHub has, of the same
//! types; GitHub's required arguments are accepted; enums and unions have
//! GitHub's values and members. A query that works against the simulator
//! therefore validates against GitHub.

use std::collections::{BTreeMap, BTreeSet};

use async_graphql::parser::types::{
    FieldDefinition, InputValueDefinition, TypeDefinition, TypeKind, TypeSystemDefinition,
};

const GITHUB_SCHEMA: &str = include_str!("../../../../fixtures/github/graphql/schema.graphql");
const BUILT_IN_SCALARS: [&str; 5] = ["String", "Int", "Float", "Boolean", "ID"];

fn types(sdl: &str) -> BTreeMap<String, TypeDefinition> {
    let document = async_graphql::parser::parse_schema(sdl).expect("the schema parses");
    document
        .definitions
        .into_iter()
        .filter_map(|definition| match definition {
            TypeSystemDefinition::Type(ty) => Some((ty.node.name.node.to_string(), ty.node)),
            _ => None,
        })
        .collect()
}

fn kind(ty: &TypeKind) -> &'static str {
    match ty {
        TypeKind::Scalar => "scalar",
        TypeKind::Object(_) => "type",
        TypeKind::Interface(_) => "interface",
        TypeKind::Union(_) => "union",
        TypeKind::Enum(_) => "enum",
        TypeKind::InputObject(_) => "input",
    }
}

fn fields(ty: &TypeKind) -> (&[async_graphql::Positioned<FieldDefinition>], Vec<String>) {
    match ty {
        TypeKind::Object(object) => {
            (&object.fields, object.implements.iter().map(|n| n.node.to_string()).collect())
        }
        TypeKind::Interface(interface) => {
            (&interface.fields, interface.implements.iter().map(|n| n.node.to_string()).collect())
        }
        _ => (&[], Vec::new()),
    }
}

fn required(value: &InputValueDefinition) -> bool {
    !value.ty.node.nullable && value.default_value.is_none()
}

/// Compares served input values (arguments or input fields) with GitHub's.
fn compare_inputs(
    place: &str,
    served: &[async_graphql::Positioned<InputValueDefinition>],
    github: &[async_graphql::Positioned<InputValueDefinition>],
    problems: &mut Vec<String>,
) {
    let github: BTreeMap<String, &InputValueDefinition> =
        github.iter().map(|v| (v.node.name.node.to_string(), &v.node)).collect();
    let served_names: BTreeSet<String> = served.iter().map(|v| v.node.name.node.to_string()).collect();
    for value in served {
        let name = value.node.name.node.as_str();
        let Some(theirs) = github.get(name) else {
            problems.push(format!("{place}({name}:): GitHub has no such argument"));
            continue;
        };
        let (ours, their_ty) = (value.node.ty.node.to_string(), theirs.ty.node.to_string());
        if ours != their_ty {
            problems.push(format!("{place}({name}:): served as {ours}, GitHub's is {their_ty}"));
        }
        if let (Some(ours), Some(theirs)) = (&value.node.default_value, &theirs.default_value) {
            if ours.node.to_string() != theirs.node.to_string() {
                problems
                    .push(format!("{place}({name}:): default {} , GitHub's is {}", ours.node, theirs.node));
            }
        }
    }
    for (name, theirs) in &github {
        if required(theirs) && !served_names.contains(name) {
            problems.push(format!("{place}({name}:): GitHub requires it, the simulator does not accept it"));
        }
    }
}

fn problems(served_sdl: &str) -> Vec<String> {
    let github = types(GITHUB_SCHEMA);
    let served = types(served_sdl);
    let mut problems = Vec::new();
    for (name, ours) in &served {
        if name.starts_with("__") || BUILT_IN_SCALARS.contains(&name.as_str()) {
            continue;
        }
        let Some(theirs) = github.get(name) else {
            problems.push(format!("{name}: GitHub has no such type"));
            continue;
        };
        if kind(&ours.kind) != kind(&theirs.kind) {
            problems.push(format!(
                "{name}: served as {}, GitHub's is {}",
                kind(&ours.kind),
                kind(&theirs.kind)
            ));
            continue;
        }
        match (&ours.kind, &theirs.kind) {
            (TypeKind::Object(_) | TypeKind::Interface(_), _) => {
                let (our_fields, our_interfaces) = fields(&ours.kind);
                let (their_fields, their_interfaces) = fields(&theirs.kind);
                for interface in our_interfaces {
                    if !their_interfaces.contains(&interface) {
                        problems.push(format!("{name} implements {interface}: GitHub's does not"));
                    }
                }
                let their_fields: BTreeMap<String, &FieldDefinition> =
                    their_fields.iter().map(|f| (f.node.name.node.to_string(), &f.node)).collect();
                for field in our_fields {
                    let field_name = field.node.name.node.as_str();
                    let place = format!("{name}.{field_name}");
                    let Some(theirs) = their_fields.get(field_name) else {
                        problems.push(format!("{place}: GitHub has no such field"));
                        continue;
                    };
                    let (ours_ty, theirs_ty) = (field.node.ty.node.to_string(), theirs.ty.node.to_string());
                    if ours_ty != theirs_ty {
                        problems.push(format!("{place}: served as {ours_ty}, GitHub's is {theirs_ty}"));
                    }
                    compare_inputs(&place, &field.node.arguments, &theirs.arguments, &mut problems);
                }
            }
            (TypeKind::Union(ours), TypeKind::Union(theirs)) => {
                let ours: BTreeSet<String> = ours.members.iter().map(|m| m.node.to_string()).collect();
                let theirs: BTreeSet<String> = theirs.members.iter().map(|m| m.node.to_string()).collect();
                if ours != theirs {
                    problems.push(format!("union {name}: members {ours:?}, GitHub's are {theirs:?}"));
                }
            }
            (TypeKind::Enum(ours), TypeKind::Enum(theirs)) => {
                let ours: BTreeSet<String> =
                    ours.values.iter().map(|v| v.node.value.node.to_string()).collect();
                let theirs: BTreeSet<String> =
                    theirs.values.iter().map(|v| v.node.value.node.to_string()).collect();
                for value in ours.difference(&theirs) {
                    problems.push(format!("enum {name}.{value}: GitHub has no such value"));
                }
                for value in theirs.difference(&ours) {
                    problems.push(format!("enum {name}.{value}: GitHub's value is not served"));
                }
            }
            (TypeKind::InputObject(ours), TypeKind::InputObject(theirs)) => {
                compare_inputs(&format!("input {name}"), &ours.fields, &theirs.fields, &mut problems);
            }
            _ => {}
        }
    }
    problems
}

#[test]
fn every_served_type_field_and_argument_is_githubs_with_githubs_types() {
    let sdl = super::schema::schema().sdl();
    let problems = problems(&sdl);
    assert!(problems.is_empty(), "the served schema differs from GitHub's:\n{}", problems.join("\n"));
    // The subset a PR and CI monitor needs is really there.
    let served = types(&sdl);
    for name in [
        "Query",
        "Repository",
        "PullRequest",
        "Commit",
        "CheckSuite",
        "CheckRun",
        "StatusCheckRollup",
        "Status",
        "StatusContext",
        "MergeQueueEntry",
        "RateLimit",
    ] {
        assert!(served.contains_key(name), "{name} is served");
    }
}

#[test]
fn the_check_finds_what_github_does_not_have() {
    let sdl = "type Query { repository(owner: String!, name: String!, shoeSize: Int): Repository }
        type Repository { id: ID name: String! pullRequests(first: String): PullRequestConnection! shoe: Int }
        type PullRequestConnection { totalCount: Int! }
        enum PullRequestState { OPEN CLOSED MERGED DRAFT }
        union StatusCheckRollupContext = CheckRun
        type CheckRun { id: ID! }";
    let problems = problems(sdl);
    let expect = [
        "Query.repository(shoeSize:): GitHub has no such argument",
        "Repository.id: served as ID, GitHub's is ID!",
        "Repository.pullRequests(first:): served as String, GitHub's is Int",
        "Repository.shoe: GitHub has no such field",
        "enum PullRequestState.DRAFT: GitHub has no such value",
        "union StatusCheckRollupContext: members {\"CheckRun\"}, GitHub's are {\"CheckRun\", \"StatusContext\"}",
    ];
    for line in expect {
        assert!(problems.iter().any(|p| p == line), "missing {line:?} in {problems:#?}");
    }
    assert_eq!(problems.len(), expect.len(), "{problems:#?}");
}
