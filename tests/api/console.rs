//! The operator console (API.md: `GET /console`): its page and files are
//! served by the binary without a key, each with the headers that keep the
//! page to itself, and a path under `/console` that is not one of its files
//! is the contract's 404.

use reqwest::blocking::Response;
use reqwest::Method;

use crate::helpers::{client_with_key, send, TestApp};

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
