//! A leave surge on a real media node (real workers, real gRPC on
//! 127.0.0.1): 500 participants with transports, producers and consumers
//! leave one router at once, and every count is back to zero. Prints the
//! removal time (BENCHMARKS.md has the release-build figures).

use loadgen::leave::{leave_surge, LeaveArgs};
use throng_test_support::Node;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_participants_leave_one_node_at_once_and_every_count_returns_to_zero() {
    let node = Node::start(Node::env("leave-node", 1, None)).await;
    let report = leave_surge(&LeaveArgs {
        node: node.grpc.to_string(),
        participants: 500,
        consumers: 4,
    })
    .await
    .unwrap();
    eprintln!("{report:?}");
    assert_eq!(report.before, (1000, 500, 2000), "{report:?}");
    assert_eq!(report.after, (0, 0, 0), "{report:?}");
    assert!(report.removal_secs > 0.0 && report.to_zero_secs >= report.removal_secs);
    node.stop().await.expect("clean stop");
}
