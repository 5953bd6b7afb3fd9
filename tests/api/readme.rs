//! Every curl example of README.md runs against a real server, in the order
//! the README gives them, and gets the answer the README promises.
//!
//! The convention: in a ```sh block, a command that calls curl on
//! `localhost:8080` is followed by a line `# -> STATUS` or
//! `# -> STATUS ERROR_CODE`. Commands are run by bash, with `localhost:8080`
//! replaced by the test server's address; a new example is tested as soon as
//! it is written.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::helpers::TestApp;
use wallet::error::ErrorCode;

const README_ADDRESS: &str = "localhost:8080";

/// Codes one request cannot provoke on a healthy server without API keys (the
/// server these examples run against); the README shows them in words
/// instead, and tests/api/auth.rs provokes the three of API keys
/// (tests/api/bounds.rs the request timeout, which takes ten seconds).
const SHOWN_WITHOUT_CURL: [ErrorCode; 10] = [
    ErrorCode::RequestTimeout,
    ErrorCode::Unauthorized,
    ErrorCode::Forbidden,
    ErrorCode::RateLimited,
    ErrorCode::TooManyAssets,
    // It takes 1000 active holds on one account first.
    ErrorCode::TooManyHolds,
    // It takes 100 active keys first.
    ErrorCode::TooManyKeys,
    ErrorCode::ServiceOverloaded,
    ErrorCode::DatabaseUnavailable,
    ErrorCode::Internal,
];

#[derive(Debug)]
struct Example {
    command: String,
    status: u16,
    code: Option<String>,
}

/// The curl examples of README.md, in order. Fails on a curl to the local
/// server that does not say what it should get.
fn examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable");
    let mut examples = Vec::new();
    let mut in_shell_block = false;
    let mut command = String::new();
    let mut awaiting_expectation: Option<String> = None;
    for line in readme.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_shell_block = trimmed == "```sh";
            continue;
        }
        if !in_shell_block {
            continue;
        }
        if let Some(pending) = awaiting_expectation.take() {
            let expectation = trimmed.strip_prefix("# -> ").unwrap_or_else(|| {
                panic!("README: `{pending}` is not followed by `# -> STATUS [CODE]`")
            });
            let mut words = expectation.split_whitespace();
            let status = words.next().and_then(|word| word.parse().ok());
            examples.push(Example {
                command: pending,
                status: status.unwrap_or_else(|| panic!("README: bad expectation {line}")),
                code: words.next().map(str::to_owned),
            });
            continue;
        }
        if command.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                command.push_str(head);
                command.push(' ');
            }
            None => {
                command.push_str(trimmed);
                let finished = std::mem::take(&mut command);
                if finished.contains("curl ") && finished.contains(README_ADDRESS) {
                    awaiting_expectation = Some(finished);
                }
            }
        }
    }
    assert!(awaiting_expectation.is_none(), "README ends mid-example");
    examples
}

/// Runs one example with bash: (status, body).
fn run(example: &Example, address: &str, scratch: &Path) -> (u16, String) {
    let body_file = scratch.join("body");
    let _ = std::fs::remove_file(&body_file);
    // curl as the README types it, but writing the body to a file and the
    // status to stdout.
    let script = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --silent --show-error --max-time 30 \
         --output '{}' --write-out '%{{http_code}}' \"$@\"; }}\n{}",
        body_file.display(),
        example.command.replace(README_ADDRESS, address)
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(scratch)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "`{}` failed: {stdout}\n{}",
        example.command,
        String::from_utf8_lossy(&output.stderr)
    );
    let status = stdout.trim().parse().unwrap_or_else(|_| {
        panic!("`{}` printed no status: {stdout:?}", example.command);
    });
    (
        status,
        std::fs::read_to_string(&body_file).unwrap_or_default(),
    )
}

/// The body of a `curl -i` answer starts after the headers.
fn json_of(body: &str) -> Value {
    let json = match body.split_once("\r\n\r\n") {
        Some((head, rest)) if head.starts_with("HTTP/") => rest,
        _ => body,
    };
    serde_json::from_str(json).unwrap_or_else(|_| panic!("not JSON: {body}"))
}

/// (method, path) a curl command asks for. The request is the last URL on
/// the line: an example may first look up an id with a `$(command curl
/// ...)` of its own, as a reversal needs the id of what it reverses.
fn route_of(command: &str) -> (String, String) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let method = match words.iter().position(|word| *word == "-X") {
        Some(at) => words[at + 1].to_lowercase(),
        None if command.contains(" -d ") || command.contains("--data") => "post".to_owned(),
        None => "get".to_owned(),
    };
    let after = command.rsplit(README_ADDRESS).next().unwrap_or_default();
    let path: String = after
        .chars()
        .take_while(|c| !matches!(c, '?' | '\'' | '"' | ' '))
        .collect();
    (method, path)
}

fn matches_template(path: &str, template: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    let templates: Vec<&str> = template.split('/').collect();
    segments.len() == templates.len()
        && segments
            .iter()
            .zip(&templates)
            .all(|(segment, template)| template.starts_with('{') || segment == template)
}

#[test]
fn every_curl_example_in_the_readme_gets_the_answer_it_promises() {
    let examples = examples();
    assert!(examples.len() >= 20, "only {} examples", examples.len());
    let app = TestApp::spawn();
    let address = app.address.trim_start_matches("http://").to_owned();
    let scratch = tempfile::tempdir().unwrap();
    for example in &examples {
        let (status, body) = run(example, &address, scratch.path());
        assert_eq!(status, example.status, "`{}`: {body}", example.command);
        let route = route_of(&example.command);
        if route.1 == "/openapi.json" {
            assert_eq!(json_of(&body)["openapi"], "3.1.0");
            continue;
        }
        if route.1.starts_with("/console") {
            // The console's page and files, served bare.
            assert!(body.contains("console"), "`{}`: {body}", example.command);
            continue;
        }
        if route.1 == "/metrics" {
            assert!(
                body.contains("# TYPE wallet_http_requests_total counter"),
                "{body}"
            );
            continue;
        }
        let envelope = json_of(&body);
        match &example.code {
            Some(code) => assert_eq!(
                envelope["error"]["code"],
                code.as_str(),
                "`{}`: {body}",
                example.command
            ),
            None => assert_eq!(envelope["success"], true, "`{}`: {body}", example.command),
        }
    }
}

#[test]
fn the_readme_shows_every_route_and_every_error_code() {
    let examples = examples();
    for (method, template) in wallet::http::ROUTES {
        assert!(
            examples.iter().any(|example| {
                let (asked_method, path) = route_of(&example.command);
                asked_method == *method && matches_template(&path, template)
            }),
            "README has no curl example of {method} {template}"
        );
    }
    let shown: BTreeSet<&str> = examples
        .iter()
        .filter_map(|example| example.code.as_deref())
        .collect();
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for code in ErrorCode::ALL {
        if SHOWN_WITHOUT_CURL.contains(code) {
            let described = format!("`{} {}`", code.status().as_u16(), code.as_str());
            assert!(
                readme.contains(&described),
                "README does not describe {described}"
            );
        } else {
            assert!(
                shown.contains(code.as_str()),
                "README has no curl example answered {}",
                code.as_str()
            );
        }
    }
}
