//! What the deployment tests share: where the repository, its tools
//! (`.tools/`, installed by `scripts/install-deps.sh`) and the built binaries
//! are; rendering the Helm chart into objects; turning a rendered container's
//! environment into one a binary can check on this machine; and a private
//! Docker engine that a test starts and always stops again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_yaml::Value;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("deploy/ is in the repository")
        .to_path_buf()
}

/// A tool installed into `.tools/bin` by `scripts/install-deps.sh`.
pub fn tool(name: &str) -> PathBuf {
    let path = root().join(".tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deps.sh (make test does)",
        path.display()
    );
    path
}

/// `kubernetes-validate` from `.tools/venv`.
pub fn kubernetes_validate() -> PathBuf {
    let path = root().join(".tools/venv/bin/kubernetes-validate");
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-deps.sh",
        path.display()
    );
    path
}

/// A workspace binary as `make build` left it.
pub fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let path = dir.join("debug").join(name);
    assert!(
        path.exists(),
        "{} is missing: run make build",
        path.display()
    );
    path
}

/// The chart's directory.
pub fn chart() -> PathBuf {
    root().join("helm/throng")
}

/// A directory of the test's own under the system temp dir, removed on drop
/// (a failing test included).
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// `<tmp>/throng-<tag>-<pid>`, created empty.
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("throng-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command, returning (success, stdout, stderr).
pub fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `helm template` of the chart with `values` files and `--set`s: the
/// rendered text, or helm's error.
pub fn helm_template(values: &[PathBuf], sets: &[&str]) -> Result<String, String> {
    let mut cmd = Command::new(tool("helm"));
    cmd.args(["template", "t", "--namespace", "events"])
        .arg(chart());
    for v in values {
        cmd.arg("-f").arg(v);
    }
    for s in sets {
        cmd.args(["--set", s]);
    }
    let (ok, stdout, stderr) = output(&mut cmd);
    if ok {
        Ok(stdout)
    } else {
        Err(stderr)
    }
}

/// The objects of a rendered multi-document YAML stream.
pub fn objects(rendered: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(rendered) {
        let v = Value::deserialize(doc).expect("rendered YAML parses");
        if !v.is_null() {
            out.push(v);
        }
    }
    out
}

use serde::Deserialize;

/// The object of `kind` whose name ends with `suffix`.
pub fn find<'a>(objects: &'a [Value], kind: &str, suffix: &str) -> Option<&'a Value> {
    objects.iter().find(|o| {
        o["kind"].as_str() == Some(kind)
            && o["metadata"]["name"]
                .as_str()
                .is_some_and(|n| n.ends_with(suffix))
    })
}

/// A string field, panicking with the path when absent.
pub fn str_at<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what} is not a string: {v:?}"))
}

/// The first container of a workload.
pub fn container(workload: &Value) -> &Value {
    &workload["spec"]["template"]["spec"]["containers"][0]
}

/// A rendered container's `env` as name -> value, with `valueFrom.fieldRef`
/// resolved from `fields` and `$(VAR)` references expanded as the kubelet
/// does (earlier entries only).
pub fn container_env(container: &Value, fields: &BTreeMap<&str, &str>) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for entry in container["env"].as_sequence().expect("env list") {
        let name = str_at(&entry["name"], "env name").to_string();
        let value = if let Some(v) = entry["value"].as_str() {
            let mut v = v.to_string();
            for (k, val) in &env {
                v = v.replace(&format!("$({k})"), val.as_str());
            }
            v
        } else if let Some(path) = entry["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            (*fields
                .get(path)
                .unwrap_or_else(|| panic!("no test value for fieldRef {path}")))
            .to_string()
        } else if entry["valueFrom"]["secretKeyRef"].is_mapping() {
            "secret-from-a-key-ref-secret-from-a-key-ref".to_string()
        } else {
            panic!("unsupported env entry {entry:?}");
        };
        env.insert(name, value);
    }
    env
}

/// The data of a rendered Secret, decoded.
pub fn secret_data(secret: &Value) -> BTreeMap<String, String> {
    use base64::Engine as _;
    secret["data"]
        .as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(str_at(v, "secret value"))
                        .expect("base64 secret");
                    (
                        str_at(k, "secret key").to_string(),
                        String::from_utf8(bytes).expect("utf-8 secret"),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ----- a private Docker engine ---------------------------------------------

/// Debian's dockerd on the images' data root (`target/docker/data`, filled by
/// `scripts/images.sh`), with its own exec root and socket, started in the
/// test's network namespace. Dropping it removes what the given compose
/// project left and stops the engine.
pub struct Engine {
    child: Child,
    exec: PathBuf,
    socket: String,
    project: Option<String>,
    _lock: std::fs::File,
}

impl Engine {
    /// Starts the engine (waits until it answers).
    pub fn start() -> Self {
        let data = root().join("target/docker/data");
        assert!(
            data.exists(),
            "{} is missing: run scripts/images.sh (make test does)",
            data.display()
        );
        // One engine on the data root at a time (scripts/images.sh takes the same lock).
        let lock = std::fs::File::create(root().join("target/docker/.lock")).expect("lock file");
        // SAFETY: flock on an open descriptor we own.
        assert_eq!(
            unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) },
            0
        );
        let exec = PathBuf::from(format!("/tmp/throng-docker-test-{}", std::process::id()));
        std::fs::create_dir_all(&exec).unwrap();
        let socket = format!("unix://{}/docker.sock", exec.display());
        let log = std::fs::File::create(exec.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(&data)
            .arg("--exec-root")
            .arg(exec.join("exec"))
            .arg("--pidfile")
            .arg(exec.join("dockerd.pid"))
            .args(["-H", &socket])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd (Debian's docker.io)");
        let engine = Self {
            child,
            exec,
            socket,
            project: None,
            _lock: lock,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !engine.docker(&["info"]).0 {
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer:\n{}",
                engine.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        engine
    }

    /// The engine's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.exec.join("dockerd.log")).unwrap_or_default()
    }

    /// `DOCKER_HOST` of this engine.
    pub fn host(&self) -> &str {
        &self.socket
    }

    /// Runs the docker client against this engine.
    pub fn docker(&self, args: &[&str]) -> (bool, String, String) {
        output(
            Command::new("/usr/bin/docker")
                .args(["-H", &self.socket])
                .args(args),
        )
    }

    /// Compose project `name` is removed (containers, networks, volumes) when
    /// the engine is dropped, whatever the test did.
    pub fn owns_project(&mut self, name: &str) {
        self.project = Some(name.to_string());
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(p) = self.project.take() {
            let label = format!("label=com.docker.compose.project={p}");
            let (_, ids, _) = self.docker(&["ps", "-aq", "--filter", &label]);
            for id in ids.split_whitespace() {
                self.docker(&["rm", "-f", "-v", id]);
            }
            let (_, nets, _) = self.docker(&["network", "ls", "-q", "--filter", &label]);
            for id in nets.split_whitespace() {
                self.docker(&["network", "rm", id]);
            }
            let (_, vols, _) = self.docker(&["volume", "ls", "-q", "--filter", &label]);
            for id in vols.split_whitespace() {
                self.docker(&["volume", "rm", "-f", id]);
            }
        }
        // SAFETY: signalling our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.exec);
    }
}
