//! GraphQL's handling of field errors (spec §6.4.4), which GitHub's
//! graphql-ruby follows and async-graphql does not: a field whose resolver
//! failed is `null` in the answer, and when the field may not be null, its
//! parent is `null` instead, up to the nearest position that may be.
//! async-graphql leaves the failed field out of its object; this puts the
//! nulls where GitHub puts them, so that a client sees GitHub's data shape
//! beside GitHub's errors (e.g. a `StatusContext` node without
//! `isRequired`'s argument is a `null` node, not a node missing the field).

use std::collections::HashMap;

use async_graphql::parser::types::{BaseType, ExecutableDocument, Field, Selection, SelectionSet, Type};
use async_graphql::PathSegment;
use serde_json::Value;

/// The declared type of every field of the served schema, by parent type.
#[derive(Debug, Default)]
pub(crate) struct FieldTypes {
    fields: HashMap<String, HashMap<String, Type>>,
}

impl FieldTypes {
    pub(crate) fn from_sdl(sdl: &str) -> Result<Self, async_graphql::parser::Error> {
        use async_graphql::parser::types::{TypeKind, TypeSystemDefinition};
        let document = async_graphql::parser::parse_schema(sdl)?;
        let mut fields: HashMap<String, HashMap<String, Type>> = HashMap::new();
        for definition in document.definitions {
            let TypeSystemDefinition::Type(ty) = definition else { continue };
            let ty = ty.node;
            let defined = match ty.kind {
                TypeKind::Object(object) => object.fields,
                TypeKind::Interface(interface) => interface.fields,
                _ => continue,
            };
            let entry = fields.entry(ty.name.node.to_string()).or_default();
            for field in defined {
                entry.insert(field.node.name.node.to_string(), field.node.ty.node);
            }
        }
        Ok(Self { fields })
    }

    fn get(&self, parent: &str, field: &str) -> Option<&Type> {
        self.fields.get(parent)?.get(field)
    }
}

fn named(ty: &Type) -> &str {
    match &ty.base {
        BaseType::Named(name) => name.as_str(),
        BaseType::List(inner) => named(inner),
    }
}

/// The field answered under `key` in `set` (through inline fragments and
/// fragment spreads), with the type it is selected on.
fn find<'d>(
    document: &'d ExecutableDocument,
    set: &'d SelectionSet,
    parent: &str,
    key: &str,
) -> Option<(String, &'d Field)> {
    for selection in &set.items {
        let found = match &selection.node {
            Selection::Field(field) if field.node.response_key().node == key => {
                Some((parent.to_owned(), &field.node))
            }
            Selection::Field(_) => None,
            Selection::InlineFragment(fragment) => {
                let on = fragment.node.type_condition.as_ref().map_or(parent, |c| c.node.on.node.as_str());
                find(document, &fragment.node.selection_set.node, on, key)
            }
            Selection::FragmentSpread(spread) => {
                document.fragments.get(&spread.node.fragment_name.node).and_then(|fragment| {
                    let on = fragment.node.type_condition.node.on.node.as_str();
                    find(document, &fragment.node.selection_set.node, on, key)
                })
            }
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// Whether each position along `path` may be null, from the operation's
/// selections and the schema; `None` when the path cannot be followed.
fn nullable_positions(
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    path: &[PathSegment],
    types: &FieldTypes,
) -> Option<Vec<bool>> {
    let operation = document
        .operations
        .iter()
        .find(|(name, _)| operation_name.is_none() || name.map(|n| n.as_str()) == operation_name)
        .map(|(_, operation)| operation)?;
    let mut set = &operation.node.selection_set.node;
    let mut parent = "Query".to_owned();
    let mut current: Option<&Type> = None;
    let mut nullable = Vec::with_capacity(path.len());
    for segment in path {
        match segment {
            PathSegment::Field(key) => {
                let (on, field) = find(document, set, &parent, key)?;
                let ty = types.get(&on, field.name.node.as_str())?;
                nullable.push(ty.nullable);
                parent = named(ty).to_owned();
                set = &field.selection_set.node;
                current = Some(ty);
            }
            PathSegment::Index(_) => {
                let BaseType::List(item) = &current?.base else { return None };
                nullable.push(item.nullable);
                current = Some(item);
            }
        }
    }
    Some(nullable)
}

/// Sets the position `path` of `data` to null; `false` when an ancestor is
/// already null (another error took it) or the path is not in the data.
fn set_null(data: &mut Value, path: &[PathSegment]) -> bool {
    let Some((last, ancestors)) = path.split_last() else {
        *data = Value::Null;
        return true;
    };
    let mut at = data;
    for segment in ancestors {
        let next = match (segment, at) {
            (PathSegment::Field(key), Value::Object(map)) => map.get_mut(key.as_str()),
            (PathSegment::Index(i), Value::Array(items)) => items.get_mut(*i),
            _ => None,
        };
        match next {
            Some(value) => at = value,
            None => return false,
        }
    }
    match (last, at) {
        (PathSegment::Field(key), Value::Object(map)) => {
            map.insert(key.clone(), Value::Null);
            true
        }
        (PathSegment::Index(i), Value::Array(items)) if *i < items.len() => {
            items[*i] = Value::Null;
            true
        }
        _ => false,
    }
}

/// Puts the null of a field error at `path` where the GraphQL spec puts it.
pub(crate) fn propagate(
    data: &mut Value,
    path: &[PathSegment],
    document: &ExecutableDocument,
    operation_name: Option<&str>,
    types: &FieldTypes,
) {
    let Some(nullable) = nullable_positions(document, operation_name, path, types) else { return };
    let mut depth = path.len();
    while depth > 0 {
        if !set_null(data, &path[..depth]) || nullable[depth - 1] {
            return;
        }
        depth -= 1;
    }
    // No position up to the root may be null: the whole `data` is.
    *data = Value::Null;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SDL: &str = "type Query { repository(name: String!): Repository }
        type Repository { name: String! pullRequest: PullRequest items: [Item] strict: [Item!]! }
        type PullRequest { number: Int! required: Boolean! }
        type Item { id: ID! flag: Boolean! }";

    fn run(query: &str, mut data: Value, path: &[PathSegment]) -> Value {
        let types = FieldTypes::from_sdl(SDL).expect("sdl");
        let document = async_graphql::parser::parse_query(query).expect("query");
        propagate(&mut data, path, &document, None, &types);
        data
    }

    fn field(name: &str) -> PathSegment {
        PathSegment::Field(name.to_owned())
    }

    #[test]
    fn a_failed_non_null_field_nulls_its_nearest_nullable_ancestor() {
        // Nullable field: null in place.
        let data = run("{ r: repository(name: \"x\") { name } }", json!({}), &[field("r")]);
        assert_eq!(data, json!({ "r": null }));
        // Non-null field under a nullable object: the object is null.
        let data = run(
            "{ repository(name: \"x\") { pullRequest { number required } } }",
            json!({ "repository": { "pullRequest": { "number": 1 } } }),
            &[field("repository"), field("pullRequest"), field("required")],
        );
        assert_eq!(data, json!({ "repository": { "pullRequest": null } }));
        // In a list of nullable items, through a fragment: the item is null.
        let data = run(
            "{ repository(name: \"x\") { items { ... on Item { id flag } } } }",
            json!({ "repository": { "items": [{ "id": "a" }, { "id": "b", "flag": true }] } }),
            &[field("repository"), field("items"), PathSegment::Index(0), field("flag")],
        );
        assert_eq!(data, json!({ "repository": { "items": [null, { "id": "b", "flag": true }] } }));
        // Non-null items of a non-null list: up to the nullable repository.
        let data = run(
            "fragment F on Item { flag } { repository(name: \"x\") { name strict { ...F } } }",
            json!({ "repository": { "name": "x", "strict": [{}] } }),
            &[field("repository"), field("strict"), PathSegment::Index(0), field("flag")],
        );
        assert_eq!(data, json!({ "repository": null }));
    }
}
