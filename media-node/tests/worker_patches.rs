//! Throng's patches to the mediasoup worker (third_party/mediasoup-patches),
//! tested in C++ against the worker library this build linked
//! (`scripts/test-worker-patches.py`): upstream mediasoup's own unit tests of
//! the code they touch (the BWE suite, the RTP send stream and retransmission
//! buffer, the rate calculator, the transport tuple), and a differential test
//! of each patch that changes a data structure against upstream's original
//! code (same random calls, every answer compared). The end-to-end checks with
//! real receivers are in `loadgen/tests/worker_path.rs`.

use std::path::Path;
use std::process::Command;

#[test]
fn upstream_unit_tests_and_differential_tests_pass_on_the_patched_worker() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new("python3")
        .arg(root.join("scripts/test-worker-patches.py"))
        .output()
        .expect("python3 runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "scripts/test-worker-patches.py failed:\n{stderr}"
    );
    // It ran both kinds, and every differential test there is compared something.
    assert!(
        stderr.contains("upstream unit tests: All tests passed"),
        "{stderr}"
    );
    let tests = root.join("third_party/mediasoup-patches/tests");
    let mut diffs = 0;
    for entry in std::fs::read_dir(&tests).expect("the differential tests' directory") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        if let Some(test) = name.strip_suffix("_diff.cpp") {
            diffs += 1;
            assert!(
                stderr
                    .lines()
                    .any(|l| l.contains(&format!("{test}_diff: ")) && l.ends_with("all the same")),
                "{name} did not run or did not compare everything:\n{stderr}"
            );
        }
    }
    assert!(
        diffs >= 2,
        "{diffs} differential tests in {}",
        tests.display()
    );
}
