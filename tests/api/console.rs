//! The operator console (API.md: `GET /console`): its page and files are
//! served by the binary without a key, each with the headers that keep the
//! page to itself, and a path under `/console` that is not one of its files
//! is the contract's 404. `a_real_browser_drives_the_console` runs
//! `tests/browser/console.mjs`: Debian's chromium, driven by playwright-core,
//! through every page against the real binary.

use std::path::Path;
use std::process::Command;

use reqwest::blocking::Response;
use reqwest::Method;

use crate::helpers::{client_with_key, send, tool_present, TestApp};

/// The console's files: (path, content type).
const FILES: [(&str, &str); 4] = [
    ("/console", "text/html; charset=utf-8"),
    ("/console/console.css", "text/css; charset=utf-8"),
    ("/console/api.js", "text/javascript; charset=utf-8"),
    ("/console/console.js", "text/javascript; charset=utf-8"),
];

fn header<'a>(response: &'a Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} on {}", response.url()))
        .to_str()
        .unwrap()
}

fn assert_console_headers(response: &Response) {
    let policy = header(response, "content-security-policy");
    for directive in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(policy.contains(directive), "{directive} not in {policy}");
    }
    assert!(!policy.contains("unsafe"), "{policy}");
    assert_eq!(header(response, "x-frame-options"), "DENY");
    assert_eq!(header(response, "x-content-type-options"), "nosniff");
    assert_eq!(header(response, "referrer-policy"), "no-referrer");
    assert!(response.headers().contains_key("x-request-id"));
}

#[test]
fn the_page_and_its_files_are_served_without_a_key_with_a_strict_policy() {
    // A keyed server: every JSON route needs a key, the console does not.
    let (app, _secrets) = TestApp::spawn_with_keys(&[("ops", "admin")], &[]);
    let anonymous = client_with_key(None);
    assert_eq!(
        anonymous.get(app.url("/assets")).send().unwrap().status(),
        401
    );
    for (path, content_type) in FILES {
        let response = anonymous.get(app.url(path)).send().unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        assert_console_headers(&response);
        let body = response.text().unwrap();
        assert!(!body.is_empty(), "{path} is empty");

        let head = anonymous.head(app.url(path)).send().unwrap();
        assert_eq!(head.status(), 200, "HEAD {path}");
        assert_console_headers(&head);
        assert!(head.text().unwrap().is_empty(), "no body on HEAD {path}");
    }
}

#[test]
fn the_page_names_only_files_the_server_serves_and_no_other_origin() {
    let app = TestApp::spawn();
    let page = app
        .client
        .get(app.url("/console"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let mut named = Vec::new();
    for attribute in [" src=\"", " href=\""] {
        for (at, _) in page.match_indices(attribute) {
            let rest = &page[at + attribute.len()..];
            named.push(rest[..rest.find('"').unwrap()].to_owned());
        }
    }
    assert!(
        named.contains(&"/console/console.js".to_owned()),
        "{named:?}"
    );
    for target in named {
        if target.starts_with('#') || target.starts_with("data:") {
            continue;
        }
        assert!(target.starts_with("/console/"), "{target} is not ours");
        let response = app.client.get(app.url(&target)).send().unwrap();
        assert_eq!(response.status(), 200, "{target}");
    }
    // The pages script imports the API module by a path the server serves.
    let script = app
        .client
        .get(app.url("/console/console.js"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(script.contains("from './api.js'"));
}

#[test]
fn a_path_under_console_that_is_not_one_of_its_files_is_404_not_found_in_the_envelope() {
    let app = TestApp::spawn_with_key();
    for path in [
        "/console/",
        "/console/nope.js",
        "/console/index.html",
        "/console/api.js/more",
        "/consoles",
    ] {
        let response = app.get(path);
        assert_eq!(
            (response.status, response.error_code()),
            (404, "NOT_FOUND"),
            "{path}"
        );
        assert!(response.header("x-request-id").is_some());
    }
    // A write to the page is a wrong method, answered 405 with Allow.
    let response = send(app.client.request(Method::POST, app.url("/console")));
    assert_eq!(
        (response.status, response.error_code()),
        (405, "METHOD_NOT_ALLOWED")
    );
    assert_eq!(response.header("allow"), Some("GET, HEAD"));
}

/// What the browser test needs beyond the Rust toolchain: node, Debian's
/// chromium, and playwright-core installed by `npm ci` in tests/browser.
fn browser_tools(browser_dir: &Path) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success());
    tool_present(node, "node", "apt-get install nodejs npm")
        && tool_present(
            Path::new("/usr/bin/chromium").exists(),
            "chromium",
            "apt-get install chromium",
        )
        && tool_present(
            browser_dir
                .join("node_modules/playwright-core/package.json")
                .exists(),
            "playwright-core",
            "npm ci --prefix tests/browser",
        )
}

#[test]
fn a_real_browser_drives_the_console() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let browser_dir = root.join("tests/browser");
    if !browser_tools(&browser_dir) {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    // The README's screenshots change with every run (times, ids, a
    // secret): a test run writes them to its scratch folder and leaves the
    // tree clean, unless CONSOLE_SCREENSHOTS names a folder (docs/console
    // to refresh them; running the script by hand writes there too).
    let screenshots = std::env::var_os("CONSOLE_SCREENSHOTS")
        .map(|folder| root.join(folder))
        .unwrap_or_else(|| scratch.path().join("screenshots"));
    let output = Command::new("node")
        .arg(browser_dir.join("console.mjs"))
        .env("WALLET_BIN", env!("CARGO_BIN_EXE_wallet"))
        .env("CONSOLE_SCRATCH", scratch.path())
        .env("CONSOLE_SCREENSHOTS", screenshots)
        .current_dir(&browser_dir)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser test failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("console: every step passed"),
        "{stdout}\n{stderr}"
    );
}
