//! The image, run as an operator runs it: the Dockerfile's runtime stage,
//! built on a stand-in for its distroless base (no registry can be reached
//! here, so the base is made from this machine's own glibc and libgcc, the
//! libraries distroless "cc" ships), with the host's release binary added as
//! the one layer the `release` stage adds. Then, through `docker` only: a
//! fresh volume starts locked; `docker run --rm ... keys create` unlocks it;
//! the health check goes healthy; `docker stop` exits 0; a second container
//! on the volume sees every entry; `backup` and `restore` work through
//! `docker run --rm`, and restore is refused while a container serves.
//!
//! Needs a Docker engine (`.ci/run` installs and starts one) and
//! `target/release/wallet` (`.ci/run` builds it first). Without either it
//! prints one `SKIPPED` line saying which, and passes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::helpers::{client_with_key, send, ApiResponse};

/// A deadline for the test, not a measure of speed: the image's health check
/// first runs 15 s after start.
const BECOMES_TRUE_WITHIN: Duration = Duration::from_secs(90);

fn docker(args: &[&str]) -> Output {
    Command::new("docker")
        .args(args)
        // The classic builder: the only one a plain docker.io install has,
        // and the one that builds every stage up to --target.
        .env("DOCKER_BUILDKIT", "0")
        .stdin(Stdio::null())
        .output()
        .expect("the docker command runs")
}

/// Runs `docker args`, failing the test with its output unless it succeeds;
/// returns stdout.
fn docker_ok(args: &[&str]) -> String {
    let output = docker(args);
    assert!(
        output.status.success(),
        "docker {}: {}\n{}\n{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Why the test cannot run here, if it cannot.
fn missing_prerequisite(release_binary: &Path) -> Option<String> {
    let engine = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .stdin(Stdio::null())
        .output();
    match engine {
        Err(error) => return Some(format!("no docker command ({error})")),
        Ok(output) if !output.status.success() => {
            let reason = String::from_utf8_lossy(&output.stderr);
            let first = reason.lines().next().unwrap_or("no answer").to_owned();
            return Some(format!("no Docker engine answers `docker info` ({first})"));
        }
        Ok(_) => {}
    }
    (!release_binary.is_file()).then(|| {
        format!(
            "no release binary at {} (run `cargo build --release --locked`)",
            release_binary.display()
        )
    })
}

fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/wallet")
}

/// The shared libraries `binary` loads, as `ldd` resolves them on this host.
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let output = Command::new("ldd").arg(binary).output().expect("ldd runs");
    assert!(output.status.success(), "ldd {}", binary.display());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` or
            // `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file.
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next()?,
                None => line.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

/// A stand-in for distroless cc: the binary's libraries at their paths, the
/// `nonroot` user (uid 65532) and /tmp; no shell. Imported as `tag`.
fn import_stand_in_base(binary: &Path, tag: &str, scratch: &Path) {
    let root = scratch.join("base");
    for library in shared_libraries(binary) {
        let inside = root.join(library.strip_prefix("/").unwrap());
        std::fs::create_dir_all(inside.parent().unwrap()).unwrap();
        // The file the link names, under the link's own name.
        std::fs::copy(&library, &inside).unwrap();
    }
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(root.join("tmp")).unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    )
    .unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\nnonroot:x:65532:\n").unwrap();
    let tarball = scratch.join("base.tar");
    let tar = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&tarball)
        .arg(".")
        .status()
        .expect("tar runs");
    assert!(tar.success());
    docker_ok(&["import", tarball.to_str().unwrap(), tag]);
}

/// Everything the test made in the engine, removed however the test ends.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    volumes: Vec<String>,
    images: Vec<String>,
    /// Untagged images before the builds: the classic builder leaves one
    /// per intermediate stage (`data`), which are the test's to remove.
    dangling_before: Vec<String>,
}

fn dangling_images() -> Vec<String> {
    String::from_utf8_lossy(&docker(&["images", "--filter", "dangling=true", "-q"]).stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

impl Drop for Made {
    fn drop(&mut self) {
        for container in &self.containers {
            let _ = docker(&["rm", "-f", container]);
        }
        for volume in &self.volumes {
            let _ = docker(&["volume", "rm", "-f", volume]);
        }
        for image in self.images.iter().rev() {
            let _ = docker(&["rmi", "-f", image]);
        }
        for image in dangling_images() {
            if !self.dangling_before.contains(&image) {
                let _ = docker(&["rmi", image.as_str()]);
            }
        }
    }
}

/// A container serving the image on the volume, published on a random
/// loopback port; returns its base URL.
fn start_server(made: &mut Made, image: &str, volume: &str, name: &str) -> String {
    made.containers.push(name.to_owned());
    docker_ok(&[
        "run",
        "-d",
        "--name",
        name,
        "--stop-timeout",
        "35",
        "-p",
        "127.0.0.1::8080",
        "-v",
        &format!("{volume}:/data"),
        image,
    ]);
    let published = docker_ok(&["port", name, "8080/tcp"]);
    let address = published
        .lines()
        .next()
        .expect("the port is published")
        .trim();
    let base = format!("http://{address}");
    eventually(&format!("{name} answers /health"), || {
        Client::new()
            .get(format!("{base}/health"))
            .send()
            .is_ok_and(|response| response.status() == 200)
    });
    base
}

/// `docker run --rm` of the image on the volume, as an operator runs a
/// command: (success, stdout, stderr).
fn one_off(image: &str, volume: &str, args: &[&str]) -> (bool, String, String) {
    let volume_mount = format!("{volume}:/data");
    let mut all = vec!["run", "--rm", "-v", &volume_mount, image];
    all.extend_from_slice(args);
    let output = docker(&all);
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + BECOMES_TRUE_WITHIN;
    while !condition() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn topup(client: &Client, base: &str, amount: u64, key: &str) -> ApiResponse {
    send(
        client
            .post(format!("{base}/wallets/player/topup"))
            .json(&json!({"asset": "GOLD", "amount": amount, "idempotencyKey": key})),
    )
}

/// The player's GOLD history: the amounts, newest first.
fn history(client: &Client, base: &str) -> Vec<u64> {
    let response = send(client.get(format!("{base}/wallets/player/transactions?asset=GOLD")));
    assert_eq!(response.status, 200, "{:?}", response.body);
    response.data()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["amount"].as_u64().unwrap())
        .collect()
}

/// Stops the container as `docker stop` does (SIGTERM, then the grace) and
/// returns the exit code it ended with: 0 only if it stopped by itself.
fn stop(name: &str) -> i64 {
    docker_ok(&["stop", name]);
    docker_ok(&["inspect", "--format", "{{.State.ExitCode}}", name])
        .trim()
        .parse()
        .expect("an exit code")
}

#[test]
fn the_image_starts_locked_unlocks_with_a_key_survives_restarts_and_backs_up_and_restores() {
    let binary = release_binary();
    if let Some(reason) = missing_prerequisite(&binary) {
        println!("SKIPPED the container test: {reason}");
        return;
    }
    let run = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut made = Made::default();
    made.dangling_before = dangling_images();
    let scratch = tempfile::tempdir().unwrap();

    // The runtime stage on the stand-in base, then the binary, as `release`
    // adds it.
    let base = format!("wallet-test-base:{run}");
    import_stand_in_base(&binary, &base, scratch.path());
    made.images.push(base.clone());
    let runtime = format!("wallet-test-runtime:{run}");
    made.images.push(runtime.clone());
    docker_ok(&[
        "build",
        "--target",
        "runtime",
        "--build-arg",
        &format!("RUNTIME_BASE={base}"),
        "-t",
        &runtime,
        env!("CARGO_MANIFEST_DIR"),
    ]);
    let context = scratch.path().join("context");
    std::fs::create_dir(&context).unwrap();
    std::fs::copy(&binary, context.join("wallet")).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        format!("FROM {runtime}\nCOPY wallet /usr/local/bin/wallet\n"),
    )
    .unwrap();
    let image = format!("wallet-test:{run}");
    made.images.push(image.clone());
    docker_ok(&["build", "-t", &image, context.to_str().unwrap()]);

    let volume = format!("wallet-test-data-{run}");
    made.volumes.push(volume.clone());
    docker_ok(&["volume", "create", &volume]);

    // A fresh volume: locked, an empty ledger, and the log says how to unlock.
    let first = format!("wallet-test-{run}-1");
    let url = start_server(&mut made, &image, &volume, &first);
    let anonymous = Client::new();
    let locked = send(anonymous.get(format!("{url}/assets")));
    assert_eq!(locked.status, 401, "{:?}", locked.body);
    assert_eq!(locked.header("www-authenticate"), Some("Bearer"));
    let log = docker(&["logs", &first]);
    let log = String::from_utf8_lossy(&log.stderr);
    assert!(
        log.contains("LOCKED") && log.contains("docker run --rm"),
        "{log}"
    );

    let (created, secret, stderr) = one_off(
        &image,
        &volume,
        &["keys", "create", "--name", "operator", "--scopes", "admin"],
    );
    assert!(created, "{stderr}");
    let client = client_with_key(Some(secret.trim()));
    eventually("the first key unlocks the service", || {
        send(client.get(format!("{url}/assets"))).status == 200
    });
    let assets = send(client.get(format!("{url}/assets")));
    assert_eq!(
        assets.data(),
        &Value::Array(vec![]),
        "no demo seed on 0.0.0.0"
    );
    assert_eq!(send(anonymous.get(format!("{url}/assets"))).status, 401);

    eventually("the health check reports healthy", || {
        docker_ok(&["inspect", "--format", "{{.State.Health.Status}}", &first]).trim() == "healthy"
    });

    // The demo currencies on demand, then entries on both sides of a backup.
    let (seeded, stdout, stderr) = one_off(&image, &volume, &["seed"]);
    assert!(seeded, "{stdout}\n{stderr}");
    for amount in 1..=5 {
        let response = topup(&client, &url, amount, &format!("before-{amount}"));
        assert_eq!(response.status, 201, "{:?}", response.body);
    }
    let (backed_up, stdout, stderr) = one_off(&image, &volume, &["backup", "/data/backup.db"]);
    assert!(backed_up, "{stdout}\n{stderr}");
    assert!(stdout.contains("written and verified"), "{stdout}");
    for amount in 6..=10 {
        let response = topup(&client, &url, amount, &format!("after-{amount}"));
        assert_eq!(response.status, 201, "{:?}", response.body);
    }
    assert_eq!(stop(&first), 0, "docker stop ended it by SIGKILL");

    // A second container on the volume sees every entry, and the key.
    let second = format!("wallet-test-{run}-2");
    let url = start_server(&mut made, &image, &volume, &second);
    let every_entry: Vec<u64> = (1..=10).rev().collect();
    assert_eq!(history(&client, &url), every_entry);
    let (restored, stdout, stderr) = one_off(&image, &volume, &["restore", "/data/backup.db"]);
    assert!(!restored, "restored under a serving container: {stdout}");
    assert!(stderr.contains("in use"), "{stderr}");
    assert_eq!(history(&client, &url), every_entry);
    assert_eq!(stop(&second), 0);

    let (restored, stdout, stderr) = one_off(&image, &volume, &["restore", "/data/backup.db"]);
    assert!(restored, "{stdout}\n{stderr}");
    let third = format!("wallet-test-{run}-3");
    let url = start_server(&mut made, &image, &volume, &third);
    assert_eq!(
        history(&client, &url),
        [5, 4, 3, 2, 1],
        "the backup's ledger"
    );
    let (verified, stdout, stderr) = one_off(&image, &volume, &["verify"]);
    assert!(
        verified && stdout.contains("verify: OK"),
        "{stdout}\n{stderr}"
    );
    assert_eq!(stop(&third), 0);
}
