//! Installations: repositories the App is installed on are registered and
//! backfilled from GitHub, with nothing but the installation webhook to go on.

use prmonitor_testkit::TestWorld;

#[tokio::test]
async fn an_installation_is_registered_and_backfilled() {
    let world = TestWorld::builder(2).prs(3, 2).unregistered().start().await;
    assert_eq!(world.count("SELECT count(*) FROM repositories").await, 0);
    world.install().await;
    world.settle().await;
    assert_eq!(world.count("SELECT count(*) FROM pull_requests").await, 6);
    assert_eq!(world.count("SELECT count(*) FROM check_runs").await, 12);
    // finish() compares every stored row with the simulator's world.
    world.finish().await;
}
