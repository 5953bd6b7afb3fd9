//! The deployment files stay in step with the code, with CI and with the
//! README. The Dockerfile, docker-compose.yml, fly.toml, .env.example and the
//! Litestream variant are parsed and checked against what the binary really
//! reads and serves: its name, port, environment variables, health route,
//! and the build command `.ci/run` proves. (tests/api/container.rs runs the
//! image itself where a Docker engine runs.)

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::helpers::{variables_the_binary_reads, wallet_command, TestApp};
use wallet::config::PORT_VAR;
use wallet::limits::HTTP_SHUTDOWN_TIMEOUT_SECONDS;

const BUILD_COMMAND: &str = "cargo build --release --locked";
const DB_PATH: &str = "/data/wallet.db";
const DATA_DIR: &str = "/data";

fn project_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} is readable", path.display()))
}

/// The Dockerfile's instructions, `(KEYWORD, arguments)`, continuation lines
/// joined and comments dropped.
fn dockerfile() -> Vec<(String, String)> {
    instructions_of("Dockerfile")
}

/// The instructions of the Dockerfile at `name`, as `dockerfile` gives them.
fn instructions_of(name: &str) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in project_file(name).lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                let (keyword, arguments) = current.split_once(' ').unwrap_or((&current, ""));
                instructions.push((keyword.to_uppercase(), arguments.trim().to_owned()));
                current.clear();
            }
        }
    }
    instructions
}

fn arguments_of(keyword: &str) -> Vec<String> {
    dockerfile()
        .into_iter()
        .filter(|(word, _)| word == keyword)
        .map(|(_, arguments)| arguments)
        .collect()
}

/// `ENV A=1 B=2` lines of the Dockerfile, as pairs.
fn dockerfile_env() -> Vec<(String, String)> {
    arguments_of("ENV")
        .iter()
        .flat_map(|arguments| {
            arguments
                .split_whitespace()
                .map(|pair| {
                    let (name, value) = pair.split_once('=').expect("ENV NAME=value");
                    (name.to_owned(), value.trim_matches('"').to_owned())
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

fn env_value<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

fn fly() -> toml::Table {
    project_file("fly.toml")
        .parse()
        .expect("fly.toml is valid TOML")
}

fn compose() -> Value {
    yaml_serde::from_str(&project_file("docker-compose.yml"))
        .expect("docker-compose.yml is valid YAML")
}

fn compose_service() -> Value {
    compose()["services"]["wallet"].clone()
}

fn json_array(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|_| panic!("exec form expected: {value}"))
}

#[test]
fn the_image_builds_with_the_command_ci_runs_and_ships_the_wallet_binary() {
    let builds: Vec<String> = arguments_of("RUN")
        .into_iter()
        .filter(|run| run.contains("cargo build"))
        .collect();
    assert!(!builds.is_empty(), "the Dockerfile builds nothing");
    for build in &builds {
        assert!(build.contains(BUILD_COMMAND), "{build}");
    }
    let ci = project_file(".ci/run");
    assert!(
        ci.lines().any(|line| line.trim() == BUILD_COMMAND),
        ".ci/run does not run `{BUILD_COMMAND}`"
    );

    let binary = Path::new(env!("CARGO_BIN_EXE_wallet"))
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let release_binary = format!("/target/release/{binary}");
    let installed = format!("/usr/local/bin/{binary}");
    assert!(
        arguments_of("COPY").iter().any(|copy| copy
            .split_whitespace()
            .collect::<Vec<_>>()
            .ends_with(&[&format!("/src{release_binary}"), &installed])),
        "no COPY of {release_binary} to {installed}"
    );
    assert_eq!(json_array(&arguments_of("ENTRYPOINT")[0]), [installed]);
    assert_eq!(json_array(&arguments_of("CMD")[0]), ["serve"]);

    // The builder's toolchain is at least the crate's rust-version.
    let manifest: toml::Table = project_file("Cargo.toml").parse().unwrap();
    let rust_version = manifest["package"]["rust-version"].as_str().unwrap();
    let builder = arguments_of("FROM")
        .into_iter()
        .find(|from| from.ends_with(" AS build"))
        .expect("a stage named build");
    let image_version = builder
        .strip_prefix("rust:")
        .and_then(|rest| rest.split('-').next())
        .unwrap_or_else(|| panic!("the builder is not a rust image: {builder}"));
    let as_numbers = |version: &str| -> Vec<u32> {
        version
            .split('.')
            .map(|part| part.parse().unwrap())
            .collect()
    };
    assert!(as_numbers(image_version) >= as_numbers(rust_version));
}

/// Every file the sources compile in with `include_str!`, relative to the
/// project.
fn files_compiled_in() -> BTreeSet<PathBuf> {
    fn walk(folder: &Path, found: &mut BTreeSet<PathBuf>) {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, found);
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap_or_default();
            for (_, rest) in source
                .match_indices("include_str!(\"")
                .map(|(at, _)| source.split_at(at + 14))
            {
                let relative = rest.split('"').next().unwrap();
                let file = path.parent().unwrap().join(relative);
                let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                let file = file.canonicalize().unwrap();
                found.insert(
                    file.strip_prefix(root.canonicalize().unwrap())
                        .unwrap()
                        .to_owned(),
                );
            }
        }
    }
    let mut found = BTreeSet::new();
    walk(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut found,
    );
    found
}

#[test]
fn the_build_stage_copies_every_file_the_binary_compiles_in() {
    let copied: Vec<String> = arguments_of("COPY")
        .iter()
        .filter(|copy| !copy.starts_with("--from"))
        .flat_map(|copy| {
            let words: Vec<String> = copy.split_whitespace().map(str::to_owned).collect();
            // Every word but the last (the destination) is a source.
            words[..words.len() - 1].to_vec()
        })
        .collect();
    let compiled_in = files_compiled_in();
    assert!(
        compiled_in.contains(Path::new("schema.sql")),
        "{compiled_in:?}"
    );
    for file in compiled_in {
        let covered = copied
            .iter()
            .any(|source| file.starts_with(source.trim_end_matches('/')));
        assert!(covered, "the Dockerfile never copies {}", file.display());
    }
}

#[test]
fn the_image_runs_as_a_non_root_user_with_the_database_on_the_data_volume() {
    let users = arguments_of("USER");
    let user = users.last().expect("a USER instruction");
    assert!(!["root", "0", "root:root", "0:0"].contains(&user.as_str()));

    let env = dockerfile_env();
    assert_eq!(env_value(&env, "WALLET_DB"), Some(DB_PATH));
    assert_eq!(json_array(&arguments_of("VOLUME")[0]), [DATA_DIR]);
    assert_eq!(Path::new(DB_PATH).parent().unwrap(), Path::new(DATA_DIR));

    let fly = fly();
    let mounts = fly["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1);
    assert_eq!(mounts[0]["destination"].as_str(), Some(DATA_DIR));
    assert_eq!(fly["env"]["WALLET_DB"].as_str(), Some(DB_PATH));

    let service = compose_service();
    assert_eq!(service["environment"]["WALLET_DB"], DB_PATH);
    let volume = service["volumes"][0].as_str().unwrap();
    let (name, target) = volume.split_once(':').unwrap();
    assert_eq!(target, DATA_DIR);
    assert!(
        compose()["volumes"].get(name).is_some(),
        "{name} is not a named volume"
    );
}

/// The stages `tests/api/container.rs` relies on: `runtime` (every setting,
/// on the base named by RUNTIME_BASE, distroless by default) comes before the
/// Rust build, so `--target runtime` needs no Rust image even with the
/// classic builder; the default target, `release`, is `runtime` plus the
/// binary and nothing else.
#[test]
fn the_runtime_stage_takes_its_base_as_an_argument_and_precedes_the_build() {
    let instructions = dockerfile();
    let stages: Vec<&str> = instructions
        .iter()
        .filter(|(word, _)| word == "FROM")
        .map(|(_, arguments)| arguments.as_str())
        .collect();
    let position = |name: &str| {
        stages
            .iter()
            .position(|from| from.ends_with(&format!(" AS {name}")))
            .unwrap_or_else(|| panic!("no stage {name}: {stages:?}"))
    };
    assert_eq!(stages[position("runtime")], "${RUNTIME_BASE} AS runtime");
    assert!(position("runtime") < position("build"));
    assert_eq!(stages.last(), Some(&"runtime AS release"));
    let base_argument = instructions
        .iter()
        .find(|(word, arguments)| word == "ARG" && arguments.starts_with("RUNTIME_BASE="))
        .map(|(_, arguments)| arguments.clone())
        .expect("ARG RUNTIME_BASE=...");
    assert_eq!(
        base_argument,
        "RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot"
    );
    let release_start = instructions
        .iter()
        .rposition(|(word, _)| word == "FROM")
        .unwrap();
    let release: Vec<&(String, String)> = instructions[release_start + 1..].iter().collect();
    assert_eq!(
        release.len(),
        1,
        "release adds only the binary: {release:?}"
    );
    assert_eq!(release[0].0, "COPY");
    // The uid is the distroless nonroot user's, by number, so any base works.
    assert_eq!(
        arguments_of("USER").last().map(String::as_str),
        Some("65532:65532")
    );
}

/// Goal: compose reads `.env` (optional), `.env.example` holds only what is
/// safe there, and the names compose gives match the README's `docker`
/// commands.
#[test]
fn compose_reads_env_and_its_names_match_the_readme() {
    let service = compose_service();
    assert_eq!(service["env_file"][0]["path"], ".env");
    assert_eq!(service["env_file"][0]["required"], false);
    // What keeps the ledger on the volume is set by compose itself, which
    // wins over the env file.
    assert_eq!(service["environment"]["WALLET_DB"], DB_PATH);

    let example = project_file(".env.example");
    for pinned in ["WALLET_DB", PORT_VAR, "WALLET_BIND"] {
        assert!(
            !example.lines().any(|line| line
                .trim_start_matches(['#', ' '])
                .starts_with(&format!("{pinned}="))),
            ".env.example must not set {pinned}"
        );
    }

    let container = service["container_name"].as_str().expect("container_name");
    let volume_key = service["volumes"][0]
        .as_str()
        .unwrap()
        .split_once(':')
        .unwrap()
        .0
        .to_owned();
    let volume = compose()["volumes"][&volume_key]["name"]
        .as_str()
        .expect("the volume's fixed name")
        .to_owned();
    let readme = project_file("README.md");
    let docker_runs: Vec<&str> = readme
        .lines()
        .filter(|line| line.trim_start().starts_with("docker run"))
        .collect();
    assert!(docker_runs.len() >= 3, "{docker_runs:?}");
    for run in &docker_runs {
        if let Some(mount) = run
            .split(" -v ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
        {
            let (name, _) = mount.split_once(':').unwrap();
            assert!(
                name == volume || name.starts_with('$') || name.starts_with('.'),
                "{run}"
            );
        }
        // A server's `docker run`: compose's container name, and the grace
        // compose gives.
        if run.contains(" -p ") {
            let name = run
                .split("--name ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next());
            assert_eq!(name, Some(container), "{run}");
            let seconds: u64 = run
                .split("--stop-timeout ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no --stop-timeout: {run}"));
            assert!(seconds > HTTP_SHUTDOWN_TIMEOUT_SECONDS, "{run}");
        }
    }
}

#[test]
fn the_port_is_the_same_in_the_image_compose_and_fly() {
    let env = dockerfile_env();
    let port = env_value(&env, PORT_VAR).expect("the image sets PORT");
    assert_eq!(arguments_of("EXPOSE"), [port]);
    // No WALLET_BIND: PORT alone makes the service listen on every interface.
    assert_eq!(env_value(&env, "WALLET_BIND"), None);

    let fly = fly();
    assert_eq!(fly["env"][PORT_VAR].as_str(), Some(port));
    assert_eq!(
        fly["http_service"]["internal_port"].as_integer(),
        Some(port.parse().unwrap())
    );

    let service = compose_service();
    assert_eq!(service["environment"][PORT_VAR], port);
    let mapping = service["ports"][0].as_str().unwrap();
    assert_eq!(mapping.rsplit(':').next(), Some(port));
}

#[test]
fn every_variable_the_files_set_is_one_the_binary_reads() {
    let known = variables_the_binary_reads();
    let mut set: Vec<String> = dockerfile_env().into_iter().map(|(name, _)| name).collect();
    set.extend(fly()["env"].as_table().unwrap().keys().cloned());
    set.extend(
        compose_service()["environment"]
            .as_object()
            .unwrap()
            .keys()
            .cloned(),
    );
    for line in project_file(".env.example").lines() {
        let line = line.trim().trim_start_matches('#').trim();
        if let Some((name, _)) = line.split_once('=') {
            if !name.contains(' ') {
                set.push(name.to_owned());
            }
        }
    }
    assert!(set.len() > 6);
    for name in &set {
        assert!(known.contains(name), "{name} is set but never read");
    }
    // .env.example names every variable the binary reads: as a setting, or
    // saying why it is not one there.
    let example = project_file(".env.example");
    for name in &known {
        assert!(example.contains(name.as_str()), ".env.example lacks {name}");
    }
}

#[test]
fn fly_runs_one_machine_checked_on_the_health_route_and_stops_gracefully() {
    let fly = fly();
    let service = &fly["http_service"];
    assert_eq!(service["min_machines_running"].as_integer(), Some(1));
    assert_eq!(service["auto_stop_machines"].as_str(), Some("off"));
    let checks = service["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 1);
    assert_eq!(checks[0]["path"].as_str(), Some("/health"));
    assert!(wallet::http::ROUTES.contains(&("get", "/health")));
    assert!(project_file("fly.toml").contains("fly scale count 2"));
    // The region is the operator's, chosen at `fly launch`: never ours.
    assert!(fly.get("primary_region").is_none());
    for file in ["fly.toml", "README.md"] {
        assert!(!project_file(file).contains("--region ams"), "{file}");
    }

    let seconds = |text: &str| -> u64 { text.trim_end_matches('s').parse().unwrap() };
    assert_eq!(fly["kill_signal"].as_str(), Some("SIGTERM"));
    assert!(seconds(fly["kill_timeout"].as_str().unwrap()) > HTTP_SHUTDOWN_TIMEOUT_SECONDS);
    let grace = compose_service()["stop_grace_period"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(seconds(&grace) > HTTP_SHUTDOWN_TIMEOUT_SECONDS);
}

#[test]
fn the_images_health_check_command_passes_against_a_live_server_and_fails_without_one() {
    let healthcheck = &arguments_of("HEALTHCHECK")[0];
    let command = healthcheck
        .split_once("CMD ")
        .map(|(_, command)| json_array(command))
        .expect("HEALTHCHECK ... CMD [...]");
    assert_eq!(command[0], "/usr/local/bin/wallet");
    let app = TestApp::spawn();
    let port = app.address.rsplit(':').next().unwrap().to_owned();
    // As in the container: only PORT set, and the command's own arguments.
    let run = |port: &str| {
        wallet_command()
            .args(&command[1..])
            .env_remove("WALLET_BIND")
            .env(PORT_VAR, port)
            .output()
            .unwrap()
    };
    let healthy = run(&port);
    assert!(healthy.status.success(), "{healthy:?}");
    assert!(String::from_utf8_lossy(&healthy.stdout).contains("200"));

    drop(app);
    let down = run(&port);
    assert!(!down.status.success());
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

/// The Litestream variant: its config streams the image's database, and its
/// image is the main one's binary and settings plus Litestream.
#[test]
fn the_litestream_image_replicates_the_database_the_wallet_serves() {
    let config: Value = yaml_serde::from_str(&project_file("litestream/litestream.yml"))
        .expect("litestream.yml is valid YAML");
    assert_eq!(config["dbs"][0]["path"], DB_PATH);
    assert_eq!(config["dbs"][0]["replicas"][0]["type"], "s3");

    let instructions = instructions_of("litestream/Dockerfile");
    let of = |keyword: &str| -> Vec<String> {
        instructions
            .iter()
            .filter(|(word, _)| word == keyword)
            .map(|(_, arguments)| arguments.clone())
            .collect()
    };
    assert_eq!(
        json_array(&of("ENTRYPOINT")[0]),
        ["/busybox/sh", "/usr/local/bin/wallet-litestream"]
    );
    let copies = of("COPY");
    for copied in [
        "--from=wallet /usr/local/bin/wallet /usr/local/bin/wallet",
        "--from=litestream /usr/local/bin/litestream /usr/local/bin/litestream",
        "litestream/litestream.yml /etc/litestream.yml",
        "litestream/entrypoint.sh /usr/local/bin/wallet-litestream",
    ] {
        assert!(
            copies.iter().any(|copy| copy == copied),
            "no COPY {copied}: {copies:?}"
        );
    }
    // The same settings as the main image.
    let main_env = dockerfile_env();
    for (name, value) in &main_env {
        assert!(
            of("ENV")
                .iter()
                .any(|env| env.contains(&format!("{name}={value}"))),
            "{name}={value}"
        );
    }
    assert_eq!(of("USER"), arguments_of("USER"));
}

/// Goal: the entrypoint restores before it serves. Run with a stand-in
/// `litestream` and `wallet` that record their arguments, it must restore
/// the database only if it is missing and a replica exists, and only then
/// replicate with `wallet serve` as the child, exec'd (its exit is the
/// container's).
#[test]
fn the_litestream_entrypoint_restores_then_replicates_with_the_service_as_its_child() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = dir.path().join("calls.log");
    let stand_in = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho \"{name} $*\" >> {}\n{body}", log.display()),
        )
        .unwrap();
        let mut permissions = std::fs::metadata(&path).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
        std::fs::set_permissions(&path, permissions).unwrap();
    };
    // `replicate -exec CMD` runs CMD, as Litestream does, and exits with it.
    stand_in(
        "litestream",
        "if [ \"$1\" = replicate ]; then while [ \"$1\" != -exec ]; do shift; done; exec $2; fi\n",
    );
    stand_in("wallet", "exit 7\n");
    let status = std::process::Command::new("sh")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("litestream/entrypoint.sh"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("WALLET_DB", DB_PATH)
        .status()
        .unwrap();
    assert_eq!(
        status.code(),
        Some(7),
        "the service's exit is the entrypoint's"
    );
    let calls = std::fs::read_to_string(&log).unwrap();
    let calls: Vec<&str> = calls.lines().collect();
    assert_eq!(
        calls,
        [
            format!("litestream restore -config /etc/litestream.yml -if-db-not-exists -if-replica-exists {DB_PATH}").as_str(),
            "litestream replicate -config /etc/litestream.yml -exec wallet serve",
            "wallet serve",
        ]
    );
}

/// The container test needs an engine on a fresh machine: `.ci/run` installs
/// Debian's docker.io, starts dockerd when none answers, and stops the one it
/// started however the run ends (the trap is set before it starts one).
#[test]
fn ci_installs_and_starts_the_engine_the_container_test_needs_and_stops_it() {
    let ci = project_file(".ci/run");
    let position = |text: &str| {
        ci.find(text)
            .unwrap_or_else(|| panic!(".ci/run lacks {text:?}"))
    };
    assert!(position("apt-get install -y -qq docker.io") < position("dockerd >\"${dockerd_log}\""));
    assert!(position("trap cleanup EXIT") < position("dockerd >\"${dockerd_log}\""));
    assert!(position("kill \"${dockerd_pid}\"") < position("trap cleanup EXIT"));
    assert!(position("dockerd >\"${dockerd_log}\"") < position("cargo test"));
}

/// Goal: the PostgreSQL deployment files say what the README says: the
/// compose file runs PostgreSQL, two wallet instances on one database URL
/// (each draining within its grace period) and one proxy port in front of
/// both; the Fly config has no volume, at least two machines, and no
/// database URL in plain text (it is a secret).
#[test]
fn the_postgresql_deployment_files_run_two_instances_on_one_database() {
    let compose: Value = yaml_serde::from_str(&project_file("deploy/postgres/docker-compose.yml"))
        .expect("deploy/postgres/docker-compose.yml is valid YAML");
    let services = &compose["services"];
    assert!(services["postgres"]["image"]
        .as_str()
        .is_some_and(|image| image.starts_with("postgres:")));
    let url = |service: &str| {
        services[service]["environment"]["WALLET_DB"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        url("wallet-a").starts_with("postgres://"),
        "{}",
        url("wallet-a")
    );
    assert_eq!(url("wallet-a"), url("wallet-b"), "one database for both");
    for service in ["wallet-a", "wallet-b"] {
        assert_eq!(services[service]["stop_grace_period"], "35s");
        assert!(
            services[service].get("ports").is_none(),
            "only the proxy is published"
        );
    }
    let proxy = services["proxy"]["command"].as_str().unwrap_or_default();
    assert!(
        proxy.contains("--to wallet-a:8080") && proxy.contains("--to wallet-b:8080"),
        "{proxy}"
    );
    assert_eq!(services["proxy"]["ports"][0], "8080:8080");

    let fly: toml::Table = project_file("deploy/postgres/fly.toml")
        .parse()
        .expect("deploy/postgres/fly.toml is valid TOML");
    assert!(fly.get("mounts").is_none(), "stateless machines: no volume");
    assert!(fly["http_service"]["min_machines_running"].as_integer() >= Some(2));
    assert!(fly["env"].get("WALLET_DB").is_none(), "the URL is a secret");
    assert!(project_file("deploy/postgres/fly.toml").contains("fly secrets set"));
}
