//! src/db/schema.rs must describe exactly what migrations/ creates: every
//! table, column, type, nullability and primary key.

use std::collections::BTreeMap;

use diesel::sql_types::{Integer, Text};
use diesel::QueryableByName;
use diesel_async::RunQueryDsl;

use prmonitor_testkit::{connect, TestDatabase};

/// table → (column → diesel type), and table → primary key columns.
type Columns = BTreeMap<String, BTreeMap<String, String>>;
type Keys = BTreeMap<String, Vec<String>>;

fn parse_schema_rs() -> (Columns, Keys) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/db/schema.rs");
    let text = std::fs::read_to_string(path).expect("schema.rs");
    let mut columns = Columns::new();
    let mut keys = Keys::new();
    let mut lines = text.lines().map(str::trim);
    while let Some(line) = lines.next() {
        if line != "diesel::table! {" {
            continue;
        }
        // A table of a type diesel has no name for brings its own `use` lines.
        let header =
            lines.by_ref().find(|line| !line.is_empty() && !line.starts_with("use ")).expect("table header");
        let (table, rest) = header.split_once(" (").expect("name (keys) {");
        let pk = rest.trim_end_matches(" {").trim_end_matches(')');
        keys.insert(table.to_owned(), pk.split(", ").map(str::to_owned).collect());
        let entry = columns.entry(table.to_owned()).or_default();
        for line in lines.by_ref() {
            if line == "}" {
                break;
            }
            let (name, ty) = line.trim_end_matches(',').split_once(" -> ").expect("column -> Type,");
            entry.insert(name.to_owned(), ty.to_owned());
        }
    }
    (columns, keys)
}

#[derive(QueryableByName)]
struct ColumnRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Text)]
    udt_name: String,
    #[diesel(sql_type = Text)]
    is_nullable: String,
}

#[derive(QueryableByName)]
struct KeyRow {
    #[diesel(sql_type = Text)]
    table_name: String,
    #[diesel(sql_type = Text)]
    column_name: String,
    #[diesel(sql_type = Integer)]
    position: i32,
}

fn diesel_type(udt_name: &str) -> String {
    match udt_name {
        "int8" => "Int8".into(),
        "int4" => "Int4".into(),
        "int2" => "Int2".into(),
        "text" => "Text".into(),
        "bool" => "Bool".into(),
        "timestamptz" => "Timestamptz".into(),
        "jsonb" => "Jsonb".into(),
        "bytea" => "Bytea".into(),
        "xid8" => "Xid8".into(),
        array if array.starts_with('_') => format!("Array<{}>", diesel_type(&array[1..])),
        other => format!("unmapped PostgreSQL type {other}"),
    }
}

#[tokio::test]
async fn schema_rs_matches_the_migrated_database() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let rows: Vec<ColumnRow> = diesel::sql_query(
        "SELECT table_name::TEXT, column_name::TEXT, udt_name::TEXT, is_nullable::TEXT \
         FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .await
    .expect("columns");
    let mut database = Columns::new();
    for row in rows {
        let ty = diesel_type(&row.udt_name);
        let ty = if row.is_nullable == "YES" { format!("Nullable<{ty}>") } else { ty };
        database.entry(row.table_name).or_default().insert(row.column_name, ty);
    }

    let mut key_rows: Vec<KeyRow> = diesel::sql_query(
        "SELECT k.table_name::TEXT, k.column_name::TEXT, k.ordinal_position::INT AS position \
         FROM information_schema.table_constraints c \
         JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) \
         WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = 'public' \
           AND c.table_name <> '__diesel_schema_migrations'",
    )
    .load(&mut conn)
    .await
    .expect("keys");
    key_rows.sort_by_key(|k| (k.table_name.clone(), k.position));
    let mut database_keys = Keys::new();
    for row in key_rows {
        database_keys.entry(row.table_name).or_default().push(row.column_name);
    }

    let (declared, declared_keys) = parse_schema_rs();
    for table in [
        "repositories",
        "pull_requests",
        "check_runs",
        "pr_state_history",
        "jobs",
        "webhook_deliveries",
        "http_cache",
        "sweep_repairs",
        "delivery_recovery",
        "delivery_redelivery_requests",
        "change_events",
    ] {
        assert!(declared.contains_key(table), "schema.rs declares {table} ");
    }
    assert_eq!(declared, database, "src/db/schema.rs (left) and migrations/ (right) disagree");
    assert_eq!(declared_keys, database_keys, "primary keys disagree");
}

#[test]
fn the_parser_sees_every_table_and_column() {
    let (columns, _) = parse_schema_rs();
    assert_eq!(columns["pull_requests"]["labels"], "Array<Text>");
    assert_eq!(columns["check_runs"]["github_id"], "Int8");
    assert_eq!(columns["webhook_deliveries"]["payload"], "Nullable<Bytea>");
    assert_eq!(columns["sweep_repairs"]["rows"], "Int4");
    assert_eq!(columns["change_events"]["xid"], "Xid8");
}
