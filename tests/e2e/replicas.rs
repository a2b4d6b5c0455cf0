//! Control-plane replicas on one PostgreSQL database, as an edge sees them: the real
//! binaries, a throwaway cluster started by the test.

use std::time::Duration;

use edge_e2e::upstream::Upstream;
use edge_testkit::postgres::PgCluster;

use crate::common::*;
use crate::cp::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_written_on_one_replica_is_enforced_by_an_edge_polling_only_the_other() {
    let cluster = PgCluster::start().unwrap();
    let db = cluster.create_database().unwrap();
    let a = ControlPlane::start_on(temp_dir("cp"), db).await;
    let b = a.replica();
    let (_up, up_srv) = Upstream::start().await;
    let edge = a.edge_via(&b.url, &up_srv.url(), "edge-b", &a.edge_token.clone(), 2);
    eventually("the edge has a policy", Duration::from_secs(15), || {
        let n = edge.proc.count_lines("enforcing policy version");
        async move { n >= 2 }
    })
    .await;
    assert_eq!(status_as(&edge, "198.51.100.9").await, 200);

    let inc = a.incident().await;
    let action = a.block(inc, "198.51.100.9").await;
    wait_status(&edge, "198.51.100.9", 403, "a block made on replica A").await;
    assert_eq!(status_as(&edge, "198.51.100.10").await, 200);
    a.lift(action).await;
    wait_status(&edge, "198.51.100.9", 200, "a lift made on replica A").await;
}
