//! The API key routes of API.md: `GET /keys`, `POST /keys` and
//! `POST /keys/{name}/revoke`, for `admin` keys, as the `wallet keys`
//! commands are for the shell. A new key's secret is made here, answered
//! once and never logged; the store keeps only its digest. Keys are written
//! through the store's writer, and once one is created or revoked the
//! keyring is reloaded at once, so the change holds from the next request
//! on (the watcher would see it within 100 ms anyway). The route table
//! declares the scope; nothing here looks at another route.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use log::{info, warn};
use serde_json::{Map, Value};

use super::auth::caller_still_allowed;
use super::body::{FieldErrors, JsonBody, JsonObject, OptionalJsonObject};
use super::envelope::{ok, success};
use super::input::{refuse_unknown_fields, required_text, validated_but_missing};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::KeyRequest;
use super::json::{ApiKeyJson, CreatedKeyJson};
use super::params::KeyNameParam;
use crate::auth::{secret, Keyring};
use crate::domain::{KeyName, Scope, Scopes};
use crate::error::ApiError;
use crate::limits::QUERY_PROBLEMS_MAX;
use crate::store::{NewKey, Store};

/// API.md: GET /keys
#[utoipa::path(get, path = "/keys", tag = "keys",
    summary = "Every API key, revoked ones included, by name; never a secret",
    responses((status = 200, description = "The keys, by name.", body = Vec<ApiKeyJson>)))]
pub(super) async fn get_keys(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let keys = store.keys()?;
    Ok(ok(keys
        .into_iter()
        .map(ApiKeyJson::from)
        .collect::<Vec<_>>()))
}

/// API.md: POST /keys
#[utoipa::path(post, path = "/keys", tag = "keys",
    summary = "Create an API key; its secret is in the answer, this once",
    request_body = KeyRequest,
    responses((status = 201, description = "Created: the key as listed and its secret, \
        which is never shown again. In force from the next request.", body = CreatedKeyJson)))]
pub(super) async fn post_keys(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
    keyring: web::Data<Keyring>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let name = required_text(&mut body, "name", KeyName::parse, &mut errors);
    let scopes = parse_scopes(&mut body, &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(name), Some(scopes)) = (name, scopes) else {
        return Err(validated_but_missing());
    };
    caller_still_allowed(&request)?;
    let (secret, secret_sha256) = secret::generate().map_err(ApiError::Internal)?;
    let key = store
        .create_key(NewKey {
            name,
            scopes,
            secret_sha256,
        })
        .await?;
    info!("API key {} created with scopes {}", key.name, key.scopes);
    reload_keys(&keyring, &store);
    Ok(success(
        StatusCode::CREATED,
        CreatedKeyJson {
            key: key.into(),
            secret,
        },
    ))
}

/// API.md: POST /keys/{name}/revoke
#[utoipa::path(post, path = "/keys/{name}/revoke", tag = "keys",
    summary = "Revoke an API key: final, and refused from the next request on",
    description = "Takes no body (an empty JSON object is accepted; any field is refused). \
        A revoked key keeps its name, which is never used again. The key making the \
        request cannot revoke itself: 422 `VALIDATION_ERROR` naming `name`.",
    params(KeyNameParam),
    responses((status = 200, description = "Revoked: the key as listed, with `revokedAt`.",
        body = ApiKeyJson)))]
pub(super) async fn post_revoke(
    request: HttpRequest,
    OptionalJsonObject(body): OptionalJsonObject,
    store: web::Data<Store>,
    keyring: web::Data<Keyring>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let name = errors.check(
        "name",
        KeyName::parse(request.match_info().get("name").unwrap_or_default()),
    );
    if let Some(body) = &body {
        refuse_unknown_fields(body, &mut errors);
    }
    errors.into_result()?;
    let name = name.ok_or_else(validated_but_missing)?;
    let caller = caller_still_allowed(&request)?;
    // Names never change and are never reused, so the caller's key is the
    // one named here exactly when their names are equal.
    if keyring.name_of(caller).as_deref() == Some(name.as_str()) {
        return Err(ApiError::KeyRevokesItself);
    }
    let key = store.revoke_key(name).await?;
    info!("API key {} revoked", key.name);
    reload_keys(&keyring, &store);
    Ok(ok(ApiKeyJson::from(key)))
}

/// `scopes`: a JSON list of scope names, each a `Scope`, together a
/// `Scopes` (at least one, each once). Each bad element is named by its
/// index, as `scopes[1]`.
fn parse_scopes(body: &mut Map<String, Value>, errors: &mut FieldErrors) -> Option<Scopes> {
    let elements = match body.remove("scopes") {
        Some(Value::Array(elements)) => elements,
        None | Some(Value::Null) => {
            errors.push("scopes", "is required");
            return None;
        }
        Some(_) => {
            errors.push(
                "scopes",
                "must be a list of scope names, such as [\"read\", \"spend\"]",
            );
            return None;
        }
    };
    let mut scopes = Vec::with_capacity(elements.len().min(Scope::ALL.len()));
    let mut refused = false;
    for (index, element) in elements.iter().enumerate() {
        // A 16 KiB body holds thousands of elements: the answer names the
        // first few problems, as a query string's does.
        if errors.len() >= QUERY_PROBLEMS_MAX {
            refused = true;
            break;
        }
        let field = format!("scopes[{index}]");
        let parsed = match element {
            Value::String(name) => errors.check(&field, Scope::parse(name)),
            _ => {
                errors.push(&field, "must be a string");
                None
            }
        };
        match parsed {
            Some(scope) => scopes.push(scope),
            None => refused = true,
        }
    }
    if refused {
        return None;
    }
    errors.check("scopes", Scopes::from_list(&scopes))
}

/// Installs the keys as the table now holds them. The write stands either
/// way: if the read fails, the watcher installs it within its interval.
fn reload_keys(keyring: &Keyring, store: &Store) {
    if let Err(failure) = keyring.reload(|| store.load_keys()) {
        warn!("reloading the API keys after a change failed (the watcher will): {failure}");
    }
}
