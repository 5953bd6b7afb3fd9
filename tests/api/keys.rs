//! The API key routes over HTTP (API.md: `GET /keys`, `POST /keys`,
//! `POST /keys/{name}/revoke`): what they answer, that a new secret is shown
//! once and works at once, that a revocation holds at once, who may call
//! them, and that nothing of a secret reaches the list, the logs or the
//! metrics' labels.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::{json, Value};

use crate::helpers::{client_with_key, post_text, run_wallet, send, ApiResponse, TestApp};

/// API.md: a revoked key is refused within 100 ms; the test allows a
/// second, and checks the first request after the revocation too.
const REVOCATION_SEEN_WITHIN: Duration = Duration::from_secs(1);

/// The fields of a key as listed, exactly (API.md).
const KEY_FIELDS: [&str; 5] = ["createdAt", "lastUsedAt", "name", "revokedAt", "scopes"];

fn db_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

fn field_names(value: &Value) -> Vec<String> {
    let mut names: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

fn is_timestamp(value: &Value) -> bool {
    let Some(text) = value.as_str() else {
        return false;
    };
    // 2026-11-23T10:15:30.123Z
    text.len() == 24
        && text.ends_with('Z')
        && text.as_bytes()[10] == b'T'
        && text.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
}

fn is_secret(text: &str) -> bool {
    text.len() == 51
        && text.starts_with("wk_")
        && text[3..]
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

fn list(app: &TestApp) -> Vec<Value> {
    let listed = app.get("/keys");
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    listed.data().as_array().expect("a list of keys").clone()
}

fn listed<'a>(keys: &'a [Value], name: &str) -> &'a Value {
    keys.iter()
        .find(|key| key["name"] == name)
        .unwrap_or_else(|| panic!("no key {name} in {keys:?}"))
}

fn create(app: &TestApp, name: &str, scopes: &[&str]) -> ApiResponse {
    app.post("/keys", &json!({"name": name, "scopes": scopes}))
}

/// Creates a key over HTTP and returns its secret.
fn create_ok(app: &TestApp, name: &str, scopes: &[&str]) -> String {
    let created = create(app, name, scopes);
    assert_eq!(created.status, 201, "{name}: {:?}", created.body);
    created.data()["secret"]
        .as_str()
        .expect("a secret")
        .to_owned()
}

fn revoke(app: &TestApp, name: &str) -> ApiResponse {
    send(app.client.post(app.url(&format!("/keys/{name}/revoke"))))
}

fn assets_as(app: &TestApp, client: &Client) -> u16 {
    send(client.get(app.url("/assets"))).status
}

#[test]
fn keys_are_listed_created_and_revoked_with_the_fields_of_api_md() {
    let app = TestApp::spawn_with_key();
    let before = list(&app);
    assert_eq!(before.len(), 1, "{before:?}");
    let admin = &before[0];
    assert_eq!(field_names(admin), KEY_FIELDS);
    assert_eq!(admin["name"], "acceptance");
    assert_eq!(admin["scopes"], json!(["admin"]));
    assert!(is_timestamp(&admin["createdAt"]), "{admin}");
    assert!(admin["revokedAt"].is_null());

    // Scopes in any order are listed in one: read, spend, grant, admin.
    let created = create(&app, "game-eu", &["spend", "read"]);
    assert_eq!(created.status, 201, "{:?}", created.body);
    let data = created.data();
    assert_eq!(field_names(data), ["key", "secret"]);
    assert!(is_secret(data["secret"].as_str().unwrap()), "{data}");
    let key = &data["key"];
    assert_eq!(field_names(key), KEY_FIELDS);
    assert_eq!(key["name"], "game-eu");
    assert_eq!(key["scopes"], json!(["read", "spend"]));
    assert!(is_timestamp(&key["createdAt"]), "{key}");
    assert!(key["lastUsedAt"].is_null() && key["revokedAt"].is_null());

    let after = list(&app);
    let names: Vec<&str> = after
        .iter()
        .map(|key| key["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["acceptance", "game-eu"], "by name");
    assert_eq!(listed(&after, "game-eu"), key, "listed as created");
    // The command line sees the same table.
    let (status, listing, stderr) = run_wallet(&["keys", "list", "--db", db_str(&app.db_path)]);
    assert!(status.success(), "{stderr}");
    assert!(listing.contains("game-eu\tread,spend\t"), "{listing}");

    let revoked = revoke(&app, "game-eu");
    assert_eq!(revoked.status, 200, "{:?}", revoked.body);
    let revoked = revoked.data();
    assert_eq!(field_names(revoked), KEY_FIELDS);
    assert!(is_timestamp(&revoked["revokedAt"]), "{revoked}");
    assert!(revoked["revokedAt"].as_str() >= key["createdAt"].as_str());
    assert_eq!(
        json!({"name": revoked["name"], "scopes": revoked["scopes"], "createdAt": revoked["createdAt"]}),
        json!({"name": "game-eu", "scopes": ["read", "spend"], "createdAt": key["createdAt"]}),
    );
    assert_eq!(listed(&list(&app), "game-eu"), revoked);
    assert!(listed(&list(&app), "acceptance")["revokedAt"].is_null());
}

/// Goal: the secret is answered once, works on the next request (no wait
/// for the watcher), and appears nowhere after: not in the list, not in the
/// server's log, not in the database file.
#[test]
fn a_new_secret_works_at_once_and_is_never_listed_logged_or_stored() {
    let app = TestApp::spawn_with_key();
    let secret = create_ok(&app, "reporting", &["read"]);
    let reporting = client_with_key(Some(&secret));
    assert_eq!(assets_as(&app, &reporting), 200, "in force at once");
    let topup = send(
        reporting
            .post(app.url("/wallets/user_alice/topup"))
            .json(&json!({
                "asset": "GOLD", "amount": 1, "idempotencyKey": "not-mine",
            })),
    );
    assert_eq!(topup.status, 403, "{:?}", topup.body);
    assert_eq!(topup.body["error"]["details"]["requiredScope"], "grant");

    let random_part = &secret[3..];
    let listing = app.get("/keys");
    assert_eq!(listing.status, 200);
    assert!(
        !listing.body.to_string().contains(random_part),
        "the secret is listed"
    );
    assert_eq!(revoke(&app, "reporting").status, 200);
    assert_eq!(assets_as(&app, &reporting), 401);

    let logs = app.logs().join("\n");
    assert!(logs.contains("reporting"), "the log names the key: {logs}");
    assert!(!logs.contains(random_part), "the secret is in the log");
    for suffix in ["", "-wal", "-shm"] {
        let path = format!("{}{suffix}", app.db_path.display());
        let Ok(bytes) = std::fs::read(&path) else {
            continue;
        };
        let found = bytes
            .windows(random_part.len())
            .any(|window| window == random_part.as_bytes());
        assert!(!found, "the secret is in {path}");
    }
}

#[test]
fn a_name_used_before_is_409_key_exists_even_once_revoked_and_nothing_is_written() {
    let app = TestApp::spawn_with_key();
    create_ok(&app, "webhook", &["grant"]);
    let again = create(&app, "webhook", &["read"]);
    assert_eq!((again.status, again.error_code()), (409, "KEY_EXISTS"));
    assert_eq!(revoke(&app, "webhook").status, 200);
    let after_revocation = create(&app, "webhook", &["grant"]);
    assert_eq!(
        (after_revocation.status, after_revocation.error_code()),
        (409, "KEY_EXISTS")
    );
    // A name the command line gave is taken here too.
    let (status, _, stderr) = run_wallet(&[
        "keys",
        "create",
        "--name",
        "cli-made",
        "--scopes",
        "read",
        "--db",
        db_str(&app.db_path),
    ]);
    assert!(status.success(), "{stderr}");
    let taken = create(&app, "cli-made", &["read"]);
    assert_eq!((taken.status, taken.error_code()), (409, "KEY_EXISTS"));

    let keys = list(&app);
    assert_eq!(keys.len(), 3, "{keys:?}");
    assert_eq!(listed(&keys, "webhook")["scopes"], json!(["grant"]));
}

#[test]
fn past_100_active_keys_a_new_one_is_422_too_many_keys_until_one_is_revoked() {
    let app = TestApp::spawn_with_key();
    // The admin key is the first of the 100.
    for index in 1..100 {
        create_ok(&app, &format!("game-{index}"), &["read"]);
    }
    let refused = create(&app, "one-too-many", &["read"]);
    assert_eq!(
        (refused.status, refused.error_code()),
        (422, "TOO_MANY_KEYS")
    );
    let keys = list(&app);
    assert_eq!(keys.len(), 100);
    assert!(!keys.iter().any(|key| key["name"] == "one-too-many"));

    assert_eq!(revoke(&app, "game-1").status, 200);
    let secret = create_ok(&app, "one-too-many", &["read"]);
    assert_eq!(assets_as(&app, &client_with_key(Some(&secret))), 200);
    let refused = create(&app, "one-more", &["read"]);
    assert_eq!(
        (refused.status, refused.error_code()),
        (422, "TOO_MANY_KEYS")
    );
}

/// Goal: as `wallet keys revoke` says "no active key is named X", an unknown
/// name and one revoked already are both 404 KEY_NOT_FOUND: a revocation is
/// final, and a second changes nothing (its `revokedAt` stays the first).
#[test]
fn revoking_an_unknown_or_already_revoked_key_is_404_key_not_found() {
    let app = TestApp::spawn_with_key();
    let unknown = revoke(&app, "nobody");
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "KEY_NOT_FOUND")
    );

    create_ok(&app, "game", &["read"]);
    let first = revoke(&app, "game");
    assert_eq!(first.status, 200);
    let again = revoke(&app, "game");
    assert_eq!((again.status, again.error_code()), (404, "KEY_NOT_FOUND"));
    assert_eq!(
        listed(&list(&app), "game")["revokedAt"],
        first.data()["revokedAt"]
    );
    let bad_name = revoke(&app, "not%20a%20name");
    assert_eq!(bad_name.status, 400, "{:?}", bad_name.body);
    assert_eq!(bad_name.invalid_fields(), ["name"]);
}

#[test]
fn a_key_cannot_revoke_itself_422_naming_the_path_s_name() {
    let app = TestApp::spawn_with_key();
    let refused = revoke(&app, "acceptance");
    assert_eq!(
        (refused.status, refused.error_code()),
        (422, "VALIDATION_ERROR")
    );
    assert_eq!(refused.invalid_fields(), ["name"]);
    assert!(listed(&list(&app), "acceptance")["revokedAt"].is_null());
    assert_eq!(assets_as(&app, &app.client), 200, "still in force");

    // Another admin key may revoke it.
    let other = create_ok(&app, "ops", &["admin"]);
    let by_other = send(client_with_key(Some(&other)).post(app.url("/keys/acceptance/revoke")));
    assert_eq!(by_other.status, 200, "{:?}", by_other.body);
    assert_eq!(app.get("/keys").status, 401);
}

#[test]
fn a_key_revoked_over_http_is_refused_within_a_second_and_others_are_not() {
    let app = TestApp::spawn_with_key();
    let game = client_with_key(Some(&create_ok(&app, "game", &["read", "spend"])));
    let webhook = client_with_key(Some(&create_ok(&app, "webhook", &["read", "grant"])));
    assert_eq!(assets_as(&app, &game), 200);

    assert_eq!(revoke(&app, "game").status, 200);
    let revoked_at = Instant::now();
    loop {
        let status = assets_as(&app, &game);
        if status == 401 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            revoked_at.elapsed() < REVOCATION_SEEN_WITHIN,
            "the revoked key is still served"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..5 {
        let refused = send(game.get(app.url("/assets")));
        assert_eq!(
            (refused.status, refused.error_code()),
            (401, "UNAUTHORIZED")
        );
        assert_eq!(refused.header("www-authenticate"), Some("Bearer"));
    }
    assert_eq!(assets_as(&app, &webhook), 200, "the other key still works");
}

/// Goal: the key routes are `admin` alone: every other scope is 403 naming
/// `admin`, checked before the body, and writes nothing; no key is 401.
#[test]
fn only_an_admin_key_may_list_create_or_revoke_keys() {
    let (app, keys) =
        TestApp::spawn_with_keys(&[("ops", "admin"), ("game", "read,spend,grant")], &[]);
    let game = client_with_key(Some(&keys[1]));
    let anonymous = client_with_key(None);
    let requests: [(&str, &str, Option<&str>); 4] = [
        ("GET", "/keys", None),
        (
            "POST",
            "/keys",
            Some(r#"{"name": "mine", "scopes": ["admin"]}"#),
        ),
        (
            "POST",
            "/keys",
            Some(r#"{"name": "bad name", "scopes": "everything"}"#),
        ),
        ("POST", "/keys/ops/revoke", None),
    ];
    for (method, path, body) in requests {
        for (client, expected) in [(&game, 403), (&anonymous, 401)] {
            let mut request = client.request(method.parse().unwrap(), app.url(path));
            if let Some(body) = body {
                request = request
                    .header("content-type", "application/json")
                    .body(body);
            }
            let refused = send(request);
            assert_eq!(
                refused.status, expected,
                "{method} {path}: {:?}",
                refused.body
            );
            if expected == 403 {
                assert_eq!(refused.error_code(), "FORBIDDEN");
                assert_eq!(refused.body["error"]["details"]["requiredScope"], "admin");
            }
        }
    }
    let ops = client_with_key(Some(&keys[0]));
    let listed = send(ops.get(app.url("/keys")));
    let names: Vec<&str> = listed
        .data()
        .as_array()
        .unwrap()
        .iter()
        .map(|key| {
            assert!(key["revokedAt"].is_null(), "{key}");
            key["name"].as_str().unwrap()
        })
        .collect();
    assert_eq!(names, ["game", "ops"], "nothing was written");
}

#[test]
fn a_body_with_a_repeated_key_an_unknown_field_or_bad_values_is_400_listing_every_problem() {
    let app = TestApp::spawn_with_key();
    let repeated = post_text(
        &app,
        "/keys",
        r#"{"name": "a", "name": "b", "scopes": ["read"]}"#,
    );
    assert_eq!(
        (repeated.status, repeated.error_code()),
        (400, "INVALID_JSON")
    );
    let unknown = app.post(
        "/keys",
        &json!({"name": "a", "scopes": ["read"], "note": "x"}),
    );
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (400, "VALIDATION_ERROR")
    );
    assert_eq!(unknown.invalid_fields(), ["note"]);
    let every_problem = app.post(
        "/keys",
        &json!({"name": "game server", "scopes": ["read", "mint", 7], "expires": 3}),
    );
    assert_eq!(every_problem.status, 400);
    assert_eq!(
        every_problem.invalid_fields(),
        ["name", "scopes[1]", "scopes[2]", "expires"]
    );
    for (body, field) in [
        (json!({"scopes": ["read"]}), "name"),
        (json!({"name": "k".repeat(65), "scopes": ["read"]}), "name"),
        (json!({"name": "a"}), "scopes"),
        (json!({"name": "a", "scopes": []}), "scopes"),
        (json!({"name": "a", "scopes": ["read", "read"]}), "scopes"),
        (json!({"name": "a", "scopes": "read,spend"}), "scopes"),
        (json!({"name": "a", "scopes": ["READ"]}), "scopes[0]"),
    ] {
        let refused = app.post("/keys", &body);
        assert_eq!(refused.status, 400, "{body}: {:?}", refused.body);
        assert_eq!(refused.invalid_fields(), [field], "{body}");
    }
    // The longest name passes; the revocation takes no field either.
    create_ok(&app, &"k".repeat(64), &["read"]);
    create_ok(&app, "game", &["read"]);
    let with_field = send(
        app.client
            .post(app.url("/keys/game/revoke"))
            .json(&json!({"reason": "leaked"})),
    );
    assert_eq!(
        (with_field.status, with_field.error_code()),
        (400, "VALIDATION_ERROR")
    );
    assert_eq!(with_field.invalid_fields(), ["reason"]);
    let keys = list(&app);
    assert_eq!(
        keys.len(),
        3,
        "only the two valid keys were added: {keys:?}"
    );
    assert!(listed(&keys, "game")["revokedAt"].is_null());
    let empty_object = send(
        app.client
            .post(app.url("/keys/game/revoke"))
            .json(&json!({})),
    );
    assert_eq!(empty_object.status, 200, "{:?}", empty_object.body);
}

#[test]
fn head_keys_answers_the_head_of_the_list_without_a_body() {
    let app = TestApp::spawn_with_key();
    let response = app.client.head(app.url("/keys")).send().unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert!(response.bytes().unwrap().is_empty(), "a HEAD has no body");
}

/// Goal: metrics name a revocation by its route's pattern, never by the key
/// it revoked (a name would make one series per key).
#[test]
fn metrics_name_the_revoke_route_by_its_pattern_not_by_the_key() {
    let app = TestApp::spawn_with_key();
    create_ok(&app, "key-name-in-a-label", &["read"]);
    assert_eq!(revoke(&app, "key-name-in-a-label").status, 200);
    let metrics = app
        .client
        .get(app.url("/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(
        metrics.contains(
            r#"wallet_http_requests_total{route="/keys/{name}/revoke",method="POST",status="200"} 1"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains("key-name-in-a-label"), "{metrics}");
}
