//! The identifier types go through PostgreSQL as their columns' types: bound
//! as parameters, loaded from rows, and kept apart by the compiler.

use diesel::dsl::sql;
use diesel::sql_types::{BigInt, Integer, Text};
use diesel::IntoSql;
use diesel_async::RunQueryDsl;
use prmonitor::db::repositories::{self, NewRepository};
use prmonitor::ids::{CommitSha, GithubRepoId, InstallationId, PullRequestNumber, RepositoryId};
use prmonitor_testkit::{connect, TestDatabase};

#[tokio::test]
async fn each_identifier_is_bound_and_loaded_as_its_column_type() {
    let db = TestDatabase::migrated().await;
    let mut conn = connect(&db.url).await;
    let number: PullRequestNumber = diesel::select(PullRequestNumber(42).into_sql::<Integer>())
        .get_result(&mut conn)
        .await
        .expect("int4");
    assert_eq!(number, PullRequestNumber(42));
    let sha: CommitSha =
        diesel::select(CommitSha::from("ab12").into_sql::<Text>()).get_result(&mut conn).await.expect("text");
    assert_eq!(sha.as_str(), "ab12");
    let typed: String =
        diesel::select(sql::<Text>("pg_typeof(").bind::<BigInt, _>(RepositoryId(1)).sql(")::text"))
            .get_result(&mut conn)
            .await
            .expect("typeof");
    assert_eq!(typed, "bigint");

    let stored = repositories::upsert(
        &mut conn,
        &NewRepository {
            github_id: GithubRepoId(9_000_000_001),
            owner: "acme",
            name: "ids",
            installation_id: Some(InstallationId(77)),
        },
    )
    .await
    .expect("insert");
    let found = repositories::find(&mut conn, stored.id).await.expect("by RepositoryId");
    assert_eq!(
        (found.github_id, found.installation_id),
        (GithubRepoId(9_000_000_001), Some(InstallationId(77)))
    );
    let by_github =
        repositories::find_by_github_id(&mut conn, GithubRepoId(9_000_000_001)).await.expect("query");
    assert_eq!(by_github.map(|r| r.id), Some(stored.id));
}
