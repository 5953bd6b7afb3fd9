//! `GET /openapi.json`: the document lists exactly the routes the server
//! answers, every method it answers on them, and exactly the error codes the
//! code can return.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::helpers::{TestApp, TRANSACTION_FIELDS};
use wallet::error::ErrorCode;

fn document(app: &TestApp) -> Value {
    let response = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .expect("the document is served");
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    response.json().expect("the document is JSON")
}

/// (method, path) of every documented operation.
fn documented_routes(document: &Value) -> BTreeSet<(String, String)> {
    document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (method.clone(), path.clone()))
        })
        .collect()
}

#[test]
fn the_document_is_openapi_3_1_and_lists_exactly_the_routes_the_server_registers() {
    let app = TestApp::spawn();
    let document = document(&app);
    assert_eq!(document["openapi"], "3.1.0");
    assert_eq!(document["info"]["version"], env!("CARGO_PKG_VERSION"));
    let served: BTreeSet<(String, String)> = wallet::http::ROUTES
        .iter()
        .map(|(method, path)| (method.to_string(), path.to_string()))
        .collect();
    assert_eq!(documented_routes(&document), served);
}

#[test]
fn each_documented_path_answers_its_documented_methods_and_refuses_the_others() {
    let app = TestApp::spawn();
    let document = document(&app);
    let documented = documented_routes(&document);
    let paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in paths {
        let url = app.url(&path.replace("{userId}", "user_alice"));
        for method in ["get", "post", "put", "patch", "delete"] {
            let request = app
                .client
                .request(method.to_uppercase().parse().unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}");
            let response = request.send().expect("answered");
            let status = response.status().as_u16();
            let body: Value = response.json().unwrap_or(Value::Null);
            let code = body["error"]["code"].as_str().unwrap_or_default();
            if documented.contains(&(method.to_owned(), path.clone())) {
                assert!(
                    ![404, 405].contains(&status) || code == "WALLET_NOT_FOUND",
                    "{method} {path} is documented but answered {status} {code}"
                );
            } else {
                assert_eq!(
                    (status, code),
                    (405, "METHOD_NOT_ALLOWED"),
                    "{method} {path} is served but not documented"
                );
            }
        }
    }
    let unknown = app.get("/wallets/user_alice/unknown");
    assert_eq!((unknown.status, unknown.error_code()), (404, "NOT_FOUND"));
}

#[test]
fn the_documented_error_codes_are_exactly_those_the_code_can_return_with_their_statuses() {
    let app = TestApp::spawn();
    let document = document(&app);
    let all: BTreeSet<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();

    let schema_codes: BTreeSet<&str> = document["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(schema_codes, all);

    // Every example of every error response, with the status it is under.
    let mut responses: Vec<(String, Value)> = Vec::new();
    for item in document["paths"].as_object().unwrap().values() {
        for operation in item.as_object().unwrap().values() {
            for (status, response) in operation["responses"].as_object().unwrap() {
                responses.push((status.clone(), response.clone()));
            }
        }
    }
    for response in document["components"]["responses"]
        .as_object()
        .unwrap()
        .values()
    {
        let code = response["content"]["application/json"]["examples"]
            .as_object()
            .unwrap()
            .keys()
            .next()
            .unwrap()
            .clone();
        let status = ErrorCode::ALL
            .iter()
            .find(|known| known.as_str() == code)
            .map(|known| known.status().as_u16().to_string())
            .unwrap_or_default();
        responses.push((status, response.clone()));
    }
    let mut documented = BTreeSet::new();
    for (status, response) in &responses {
        let Some(examples) = response["content"]["application/json"]["examples"].as_object() else {
            continue;
        };
        for (name, example) in examples {
            let code = example["value"]["error"]["code"].as_str().unwrap();
            assert_eq!(name, code);
            let statuses: Vec<String> = ErrorCode::ALL
                .iter()
                .filter(|known| known.as_str() == code)
                .map(|known| known.status().as_u16().to_string())
                .collect();
            assert!(
                !statuses.is_empty(),
                "{code} is documented but the code has no such code"
            );
            // One wire name may have two statuses (API.md: VALIDATION_ERROR
            // is 400, and 422 for a key revoking itself): each is a code.
            assert!(statuses.contains(status), "{code} under {status}");
            documented.insert(code.to_owned());
        }
    }
    let documented: BTreeSet<&str> = documented.iter().map(String::as_str).collect();
    assert_eq!(documented, all);
}

#[test]
fn a_write_with_every_documented_body_field_is_accepted_and_no_other_field_is() {
    let app = TestApp::spawn();
    let document = document(&app);
    let request = &document["components"]["schemas"]["EntryRequest"];
    assert_eq!(request["additionalProperties"], false);
    let example = |field: &str| match field {
        "asset" => json!("GOLD"),
        "amount" => json!(5),
        "idempotencyKey" => json!("openapi-every-field"),
        "referenceId" => json!("order-1"),
        "note" => json!("a note"),
        "metadata" => json!({"order": "1"}),
        other => panic!("no example value for the documented field {other}"),
    };
    let body: serde_json::Map<String, Value> = request["properties"]
        .as_object()
        .unwrap()
        .keys()
        .map(|field| (field.clone(), example(field)))
        .collect();
    let created = app.post("/wallets/user_alice/topup", &Value::Object(body));
    assert_eq!(created.status, 201, "{:?}", created.body);

    // And the documented Transaction is the one of API.md, field for field.
    let transaction = &document["components"]["schemas"]["Transaction"];
    let mut fields: Vec<&str> = transaction["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|field| field.as_str().unwrap())
        .collect();
    fields.sort();
    let mut expected = TRANSACTION_FIELDS.to_vec();
    expected.sort();
    assert_eq!(fields, expected);
    let actual = created.data()["transaction"].as_object().unwrap().clone();
    let mut returned: Vec<&str> = actual.keys().map(String::as_str).collect();
    returned.sort();
    assert_eq!(returned, expected);
}

/// Every operation of the document: (method, path, operation).
fn operations(document: &Value) -> Vec<(String, String, Value)> {
    let mut operations = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations.push((method.clone(), path.clone(), operation.clone()));
        }
    }
    operations
}

#[test]
fn the_document_names_its_server_and_which_routes_need_no_key() {
    let app = TestApp::spawn();
    let document = document(&app);
    assert_eq!(document["servers"][0]["url"], "/");
    for (method, path, operation) in operations(&document) {
        let security = &operation["security"];
        match path.as_str() {
            // Never a key: an empty list of requirements.
            "/health"
            | "/openapi.json"
            | "/console"
            | "/console/console.css"
            | "/console/api.js"
            | "/console/console.js" => {
                assert_eq!(security, &json!([]), "{method} {path}")
            }
            // On loopback no key at all: the empty requirement beside admin.
            "/metrics" => assert_eq!(
                security,
                &json!([{"apiKey": ["admin"]}, {}]),
                "{method} {path}"
            ),
            _ => {
                let requirements = security.as_array().expect("a guarded route says so");
                assert_eq!(requirements.len(), 1, "{method} {path}");
                assert!(requirements[0].get("apiKey").is_some(), "{method} {path}");
            }
        }
    }
}

#[test]
fn error_details_are_typed_so_a_generated_client_can_read_their_fields() {
    let app = TestApp::spawn();
    let document = document(&app);
    let details = &document["components"]["schemas"]["Error"]["properties"]["details"];
    assert_eq!(details["type"], "object");
    let field = &details["properties"]["fields"]["items"];
    assert_eq!(field["required"], json!(["field", "message"]));
    for member in [
        "balance",
        "available",
        "requested",
        "differing",
        "reversible",
        "status",
        "held",
        "operation",
        "requiredScope",
        "retryAfterSeconds",
    ] {
        assert!(details["properties"].get(member).is_some(), "{member}");
    }
    // And the server fills them as typed.
    let refused = app.post(
        "/wallets/user_alice/topup",
        &json!({"asset": "", "amount": 5.0}),
    );
    assert_eq!(refused.status, 400);
    let fields = refused.body["error"]["details"]["fields"]
        .as_array()
        .unwrap();
    let names: Vec<&str> = fields
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"asset") && names.contains(&"amount"),
        "{names:?}"
    );
}

#[test]
fn every_link_names_a_documented_operation_and_only_its_parameters() {
    let app = TestApp::spawn();
    let document = document(&app);
    let operations = operations(&document);
    let mut links = 0;
    for (method, path, operation) in &operations {
        for (status, response) in operation["responses"].as_object().unwrap() {
            let Some(found) = response["links"].as_object() else {
                continue;
            };
            for (name, link) in found {
                links += 1;
                let target_id = link["operationId"].as_str().unwrap();
                let (_, _, target) = operations
                    .iter()
                    .find(|(_, _, candidate)| candidate["operationId"] == target_id)
                    .unwrap_or_else(|| panic!("{method} {path} {status} {name}: no {target_id}"));
                let parameters: BTreeSet<&str> = target["parameters"]
                    .as_array()
                    .map(|all| all.iter().map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                for parameter in link["parameters"].as_object().unwrap().keys() {
                    assert!(
                        parameters.contains(parameter.as_str()),
                        "{method} {path} {status} {name}: {target_id} has no {parameter}"
                    );
                }
            }
        }
    }
    assert!(links >= 40, "only {links} links");
}

#[test]
fn last_event_id_resumes_a_json_page_as_it_does_a_stream_and_is_checked_there_too() {
    let app = TestApp::spawn();
    let first = app.get("/events?limit=1");
    assert_eq!(first.status, 200);
    let cursor = first.data()["nextCursor"].as_str().unwrap().to_owned();
    let resumed: Value = app
        .client
        .get(app.url("/events?limit=1"))
        .header("last-event-id", &cursor)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let next = resumed["data"]["items"][0]["id"].as_str().unwrap();
    assert!(next.parse::<u64>().unwrap() > cursor.parse::<u64>().unwrap());
    for bad in ["x", "01", "99999999"] {
        let refused: Value = app
            .client
            .get(app.url("/events"))
            .header("last-event-id", bad)
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(refused["error"]["code"], "VALIDATION_ERROR", "{bad}");
        assert_eq!(
            refused["error"]["details"]["fields"][0]["field"],
            "Last-Event-ID"
        );
    }
}

/// Found by schemathesis: SQLite's length() stops at a NUL, so a name that
/// began with one passed every check and then failed the table's CHECK,
/// which the writer answered 503.
#[test]
fn an_asset_name_with_a_nul_is_a_validation_error_not_an_unavailable_database() {
    let app = TestApp::spawn();
    for name in ["\u{0}Gems", "Ge\u{0}ms"] {
        let refused = app.post("/assets", &json!({"symbol": "GEMS", "name": name}));
        assert_eq!(
            (refused.status, refused.error_code()),
            (400, "VALIDATION_ERROR"),
            "{name:?}"
        );
        assert_eq!(
            refused.body["error"]["details"]["fields"][0]["field"],
            "name"
        );
    }
    let created = app.post("/assets", &json!({"symbol": "GEMS", "name": "Gems"}));
    assert_eq!(created.status, 201);
}
