//! Running real Redis client programs against a router: redis-py in the venv that
//! `scripts/install-deps.sh` makes under `.tools/py`, ioredis installed by `npm ci` in
//! `e2e/clients/node`, and `redis-cli` / `redis-benchmark` from redis-tools.
//!
//! A missing tool is a test failure that says how to install it, never a silent skip: the
//! point of these tests is that the clients people use work.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("e2e lives in the workspace")
        .to_path_buf()
}

/// The folder of the client scripts (`e2e/clients`).
pub fn scripts_dir() -> PathBuf {
    repo_root().join("e2e/clients")
}

/// The Python interpreter of the venv holding the pinned redis-py.
pub fn python() -> PathBuf {
    let py = repo_root().join(".tools/py/bin/python");
    let ok = py.exists()
        && Command::new(&py)
            .args(["-c", "import redis"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
    assert!(
        ok,
        "redis-py is not installed in {}: run scripts/install-deps.sh (make deps does)",
        py.display()
    );
    py
}

/// `node`, with ioredis installed in `e2e/clients/node/node_modules`.
pub fn node() -> PathBuf {
    assert!(
        on_path("node"),
        "node is not installed: run scripts/install-deps.sh (make deps does)"
    );
    let modules = scripts_dir().join("node/node_modules/ioredis");
    assert!(
        modules.exists(),
        "ioredis is not installed in {}: run scripts/install-deps.sh (make deps runs npm ci)",
        modules.display()
    );
    PathBuf::from("node")
}

/// Whether `tool` is on the PATH.
pub fn on_path(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Assert that redis-tools are installed.
pub fn need_redis_tools() {
    assert!(
        on_path("redis-cli") && on_path("redis-benchmark"),
        "redis-cli / redis-benchmark missing: run scripts/install-deps.sh (installs redis-tools)"
    );
}

/// Run `program args...` under coreutils' `timeout` (killed after `limit`), with `stdin` fed
/// in, and return its output. The caller checks the status; a timeout shows as status 124.
pub fn run(program: &Path, args: &[String], stdin: Option<Vec<u8>>, limit: Duration) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("-k")
        .arg("5")
        .arg(limit.as_secs().to_string())
        .arg(program)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // Write from a thread: the child may answer (fill stdout) before reading all input.
        std::thread::spawn(move || {
            use std::io::Write;
            let _ = pipe.write_all(&input);
        });
    }
    child.wait_with_output().expect("wait for the client")
}

/// Like [`run`], and fail with both output streams unless it succeeded; returns stdout.
pub fn run_ok(program: &Path, args: &[String], stdin: Option<Vec<u8>>, limit: Duration) -> String {
    let out = run(program, args, stdin, limit);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    assert!(
        out.status.success(),
        "{} {args:?} failed ({}; 124 is a timeout after {limit:?})\nstdout:\n{}\nstderr:\n{}",
        program.display(),
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}
