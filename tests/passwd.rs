//! `ocserv-uring passwd` run many times at once: the lock beside the
//! password file makes each read-modify-write whole, so no change is lost.
//! No namespaces, no root needed.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ocserv-uring");

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ocu-passwd-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Starts `passwd -c FILE USER` with the password on stdin.
fn start_passwd(file: &Path, user: &str, password: &str) -> Child {
    let mut child = Command::new(BIN)
        .args(["passwd", "-c", file.to_str().unwrap(), user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    child
}

/// Waits for `child` until `deadline`, killing it if it is still running then.
fn finish(mut child: Child, deadline: Instant) -> Output {
    while child.try_wait().unwrap().is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("passwd still running at the deadline");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn users_in(file: &Path) -> Vec<String> {
    let mut users: Vec<String> = fs::read_to_string(file)
        .unwrap()
        .lines()
        .filter_map(|l| l.split(':').next())
        .map(str::to_owned)
        .collect();
    users.sort();
    users
}

#[test]
fn twenty_concurrent_runs_keep_every_user() {
    let dir = temp_dir("concurrent");
    let file = dir.join("ocpasswd");
    let runs: Vec<Child> = (0..20)
        .map(|i| start_passwd(&file, &format!("user{i:02}"), &format!("secret-{i}")))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    for run in runs {
        let out = finish(run, deadline);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let want: Vec<String> = (0..20).map(|i| format!("user{i:02}")).collect();
    assert_eq!(users_in(&file), want);
    // The lock file and the password file; no temporary file left.
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [".ocpasswd.lock", "ocpasswd"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_lock_held_too_long_fails_with_a_clear_message() {
    let dir = temp_dir("held");
    let file = dir.join("ocpasswd");
    let held = ocserv_uring::cfgedit::lock_file(&dir.join(".ocpasswd.lock"), Duration::ZERO)
        .unwrap()
        .expect("the lock is free");
    let started = Instant::now();
    let out = finish(
        start_passwd(&file, "alice", "secret"),
        started + Duration::from_secs(30),
    );
    let waited = started.elapsed();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("being changed by another process") && err.contains(".ocpasswd.lock"),
        "{err}"
    );
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(15),
        "{waited:?}"
    );
    assert!(!file.exists(), "nothing written without the lock");
    // Released, the next run goes through at once.
    drop(held);
    let out = finish(
        start_passwd(&file, "alice", "secret"),
        Instant::now() + Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(users_in(&file), ["alice"]);
    fs::remove_dir_all(&dir).unwrap();
}
