//! The Rust toolchain the from-source images build with is one every locked
//! crate accepts. The Dockerfile's `build` stage runs `cargo build --locked`
//! `FROM rust:<version>-bookworm`; a crate in Cargo.lock whose `rust-version` is
//! newer than that image stops the build for every user of `docker compose
//! build` (it did: parking_lot 0.13, through mediasoup's event-listener-primitives,
//! needs 1.95 while the image was 1.88). The workspace's `rust-version`, the
//! Dockerfile's image and deploy/rust-image's toolchain must be one version, and
//! no locked crate may ask for more.

use std::path::PathBuf;

use throng_deploy_tests::root;

/// `major.minor` of a version string such as "1.95" or "1.95.0".
fn minor_version(v: &str) -> (u32, u32) {
    let mut parts = v.split('.').map(|p| p.parse::<u32>().expect(v));
    (parts.next().expect(v), parts.next().unwrap_or(0))
}

/// The `rust-version` a manifest's `[package]` (or `[workspace.package]`) declares.
fn declared_rust_version(manifest: &str) -> Option<String> {
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[package]" || line == "[workspace.package]";
        } else if in_package {
            if let Some(rest) = line.strip_prefix("rust-version") {
                let value = rest.trim_start().strip_prefix('=')?.trim();
                return Some(value.trim_matches('"').to_string());
            }
        }
    }
    None
}

/// (name, version) of every crates.io package in Cargo.lock.
fn locked_registry_packages() -> Vec<(String, String)> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).unwrap();
    let mut out = Vec::new();
    for block in lock.split("[[package]]") {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix(" = \""))
                    .and_then(|r| r.strip_suffix('"'))
                    .map(str::to_string)
            })
        };
        if let (Some(name), Some(version), Some(source)) =
            (field("name"), field("version"), field("source"))
        {
            if source.starts_with("registry+") {
                out.push((name, version));
            }
        }
    }
    out
}

fn registry_sources() -> Vec<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    std::fs::read_dir(home.join("registry/src"))
        .map(|dirs| dirs.filter_map(|d| d.ok()).map(|d| d.path()).collect())
        .unwrap_or_default()
}

#[test]
fn the_image_toolchain_is_the_workspace_rust_version_and_every_locked_crate_accepts_it() {
    let workspace = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let ours = declared_rust_version(&workspace).expect("workspace rust-version");
    let ours_v = minor_version(&ours);

    let dockerfile = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("ARG RUST_IMAGE=rust:{ours}-bookworm\n")),
        "Dockerfile must build FROM rust:{ours}-bookworm (the workspace's rust-version)"
    );
    let recipe = std::fs::read_to_string(root().join("deploy/rust-image/Dockerfile")).unwrap();
    assert!(
        recipe.contains(&format!("RUST_VERSION={ours}.0")),
        "deploy/rust-image/Dockerfile must install Rust {ours}.0"
    );

    // Sources of every crate this machine's build downloaded (all but the
    // other platforms' ones, which no Linux image compiles).
    let sources = registry_sources();
    assert!(
        !sources.is_empty(),
        "no cargo registry sources: the workspace is not built"
    );
    let locked = locked_registry_packages();
    let mut read = 0;
    let mut too_new = Vec::new();
    for (name, version) in &locked {
        let Some(manifest) = sources
            .iter()
            .map(|s| s.join(format!("{name}-{version}/Cargo.toml")))
            .find(|p| p.exists())
        else {
            continue;
        };
        read += 1;
        if let Some(needs) = declared_rust_version(&std::fs::read_to_string(manifest).unwrap()) {
            if minor_version(&needs) > ours_v {
                too_new.push(format!("{name} {version} needs {needs}"));
            }
        }
    }
    assert!(
        read * 10 >= locked.len() * 8,
        "only {read} of {} locked crates found in the registry sources",
        locked.len()
    );
    assert!(
        too_new.is_empty(),
        "locked crates need a newer Rust than {ours} (raise rust-version, the Dockerfile's \
         RUST_IMAGE and deploy/rust-image together, or pin older crates): {too_new:?}"
    );
}

#[test]
fn rust_version_parsing_reads_the_package_table_only() {
    let m =
        "[package]\nname = \"x\"\nrust-version = \"1.71\"\n[dependencies]\nrust-version = \"9\"\n";
    assert_eq!(declared_rust_version(m).as_deref(), Some("1.71"));
    assert_eq!(
        declared_rust_version("[dependencies]\nrust-version = \"1.2\"\n"),
        None
    );
    assert!(minor_version("1.95") > minor_version("1.88.0"));
    assert!(minor_version("1.100") > minor_version("1.95"));
}
