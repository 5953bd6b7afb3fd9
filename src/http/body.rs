//! Reading a request body: `Content-Type: application/json` (415 otherwise),
//! at most `BODY_BYTES_MAX` bytes (`BATCH_BODY_BYTES_MAX` for a batch; 413), valid JSON whose top level is an
//! object with no key twice (400 INVALID_JSON). Fields are then parsed one by
//! one by the handler, so every problem is reported, not only the first.

use std::fmt;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use futures_util::future::LocalBoxFuture;
use futures_util::StreamExt;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::connection::ConnectionState;
use super::request_context::RequestDeadline;
use crate::error::{ApiError, FieldError};
use crate::limits::{BATCH_BODY_BYTES_MAX, BODY_BYTES_MAX, HTTP_REQUEST_TIMEOUT};

/// A request body that is a JSON object of at most `MAX` bytes.
#[derive(Debug)]
pub struct JsonBody<const MAX: usize>(pub Map<String, Value>);

/// The body of every write but a batch: at most 16 KiB.
pub type JsonObject = JsonBody<BODY_BYTES_MAX>;
/// The body of `POST /batch`: at most 64 KiB.
pub type BatchJsonObject = JsonBody<BATCH_BODY_BYTES_MAX>;

impl<const MAX: usize> FromRequest for JsonBody<MAX> {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<JsonBody<MAX>, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(is_json_media_type);
        let declared_length = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        let deadline = request
            .extensions()
            .get::<RequestDeadline>()
            .map_or_else(|| std::time::Instant::now() + HTTP_REQUEST_TIMEOUT, |d| d.0);
        let connection = request.conn_data::<std::rc::Rc<ConnectionState>>().cloned();
        let mut payload = payload.take();
        Box::pin(async move {
            if !is_json {
                return Err(ApiError::UnsupportedMediaType);
            }
            if declared_length.is_some_and(|length| length > MAX as u64) {
                return Err(ApiError::PayloadTooLarge { limit: MAX });
            }
            // Read chunk by chunk and stop at the limit: a body without a
            // Content-Length (chunked) is bounded too. The whole request has
            // a deadline: a body trickled a byte at a time cannot hold a
            // write open (nor outlive its key's revocation).
            let read = async {
                let mut bytes = Vec::new();
                while let Some(chunk) = payload.next().await {
                    let chunk = chunk.map_err(|read_error| {
                        ApiError::InvalidJson(format!("the body could not be read ({read_error})"))
                    })?;
                    if bytes.len() + chunk.len() > MAX {
                        return Err(ApiError::PayloadTooLarge { limit: MAX });
                    }
                    bytes.extend_from_slice(&chunk);
                }
                Ok(bytes)
            };
            let bytes = tokio::time::timeout_at(deadline.into(), read)
                .await
                .map_err(|_| ApiError::RequestTimeout)??;
            if let Some(state) = connection {
                state.body_read();
            }
            parse_map(&bytes).map(JsonBody)
        })
    }
}

/// The body of a write that takes no fields (`POST /keys/{name}/revoke`):
/// none when the request announces none (no `Content-Length`, or 0, and no
/// `Transfer-Encoding`); otherwise read and parsed as `JsonObject` is, with
/// its rules, so that the handler can refuse each field as unknown rather
/// than drop it unread.
#[derive(Debug)]
pub struct OptionalJsonObject(pub Option<Map<String, Value>>);

impl FromRequest for OptionalJsonObject {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<OptionalJsonObject, ApiError>>;

    fn from_request(request: &HttpRequest, payload: &mut Payload) -> Self::Future {
        if !announces_body(request) {
            return Box::pin(async { Ok(OptionalJsonObject(None)) });
        }
        let body = JsonObject::from_request(request, payload);
        Box::pin(async move { Ok(OptionalJsonObject(Some(body.await?.0))) })
    }
}

/// Whether the request's head says a body follows. (`request_context.rs`
/// asks the same of a `ServiceRequest`; it cannot import this file, which
/// imports it.)
fn announces_body(request: &HttpRequest) -> bool {
    let headers = request.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .map(|value| value.trim() != "0");
    declared.unwrap_or(false) || headers.contains_key(header::TRANSFER_ENCODING)
}

/// `application/json`, with any parameters (`; charset=utf-8`).
fn is_json_media_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/json")
}

pub fn parse_object(bytes: &[u8]) -> Result<JsonObject, ApiError> {
    parse_map(bytes).map(JsonBody)
}

fn parse_map(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::InvalidJson("the body is empty".into()));
    }
    parse_unique_key_object(bytes).map_err(|error| ApiError::InvalidJson(error.to_string()))
}

/// A top-level JSON object that refuses a repeated key at any depth:
/// `{"amount": 1, "amount": 1000}` is ambiguous, and so is the same inside a
/// batch's operation or a metadata object. A proxy, a log or an auditor that
/// keeps the first value would see another request than the one applied, so
/// a money service does not guess. The keys are checked in a first pass
/// that builds nothing; serde_json's own `Value` (with its exact numbers)
/// is built in the second.
fn parse_unique_key_object(bytes: &[u8]) -> Result<Map<String, Value>, serde_json::Error> {
    serde_json::from_slice::<UniqueKeys>(bytes)?;
    serde_json::from_slice::<Map<String, Value>>(bytes)
}

/// Any JSON value whose objects, however deep, name no key twice; the value
/// itself is not kept.
struct UniqueKeys;

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_i64<E>(self, _: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_u64<E>(self, _: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_f64<E>(self, _: f64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_str<E>(self, _: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
        while access.next_element::<UniqueKeys>()?.is_some() {}
        Ok(UniqueKeys)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<UniqueKeys, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            access.next_value::<UniqueKeys>()?;
            if let Some(key) = seen.replace(key) {
                return Err(serde::de::Error::custom(format!(
                    "the key {:?} appears twice in one object",
                    truncate_key(&key)
                )));
            }
        }
        Ok(UniqueKeys)
    }
}

/// A repeated key as the error quotes it: at most 64 characters, so a
/// 60 KiB key is not echoed back whole.
fn truncate_key(key: &str) -> String {
    const QUOTED_CHARS_MAX: usize = 64;
    match key.char_indices().nth(QUOTED_CHARS_MAX) {
        Some((cut, _)) => format!("{}...", &key[..cut]),
        None => key.to_owned(),
    }
}

/// Collects field problems, so one response lists them all.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// Keeps the value, or records why it was refused.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, impl ToString>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(field, error.to_string());
                None
            }
        }
    }

    pub fn into_result(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::{IDEMPOTENCY_KEY_CHARS_MAX, NOTE_CHARS_MAX, REFERENCE_ID_CHARS_MAX};

    #[test]
    fn json_media_types_may_carry_parameters_and_any_case() {
        assert!(is_json_media_type("application/json"));
        assert!(is_json_media_type("application/json; charset=utf-8"));
        assert!(is_json_media_type("Application/JSON"));
        assert!(!is_json_media_type("text/plain"));
        assert!(!is_json_media_type("application/jsonx"));
        assert!(!is_json_media_type(""));
    }

    #[test]
    fn only_an_object_is_accepted() {
        assert!(parse_object(br#"{"a": 1}"#).is_ok());
        for bad in [
            &b"[]"[..],
            b"1",
            b"\"x\"",
            b"null",
            b"",
            b"  ",
            b"{",
            b"{\"a\":1}x",
        ] {
            assert!(
                matches!(parse_object(bad), Err(ApiError::InvalidJson(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_repeated_key_is_refused() {
        let refused = parse_object(br#"{"amount": 1, "amount": 1000}"#);
        assert!(
            matches!(refused, Err(ApiError::InvalidJson(message)) if message.contains("twice"))
        );
    }

    /// A repeated key inside an operation of a batch, a metadata object or
    /// an object inside an array is as ambiguous as one at the top.
    #[test]
    fn a_repeated_key_is_refused_at_every_depth() {
        for body in [
            &br#"{"operations": [{"type": "bonus", "amount": 1, "amount": 1000000}]}"#[..],
            br#"{"metadata": {"a": "1", "a": "2"}}"#,
            br#"{"x": [[{"k": {"y": 1, "y": 1}}]]}"#,
        ] {
            let refused = parse_object(body);
            assert!(
                matches!(&refused, Err(ApiError::InvalidJson(message)) if message.contains("twice")),
                "{:?}: {refused:?}",
                String::from_utf8_lossy(body)
            );
        }
        let JsonBody(kept) = parse_object(
            br#"{"a": {"b": [1, -2, 2.5, "s", true, null, {"b": 1}], "c": {}}, "b": 18446744073709551615}"#,
        )
        .unwrap();
        assert_eq!(
            Value::Object(kept),
            serde_json::json!({"a": {"b": [1, -2, 2.5, "s", true, null, {"b": 1}], "c": {}}, "b": 18446744073709551615u64})
        );
    }

    #[test]
    fn invalid_utf8_and_deep_nesting_are_refused_without_panicking() {
        assert!(parse_object(b"{\"a\": \"\xff\"}").is_err());
        let deep = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_object(deep.as_bytes()).is_err());
    }

    #[test]
    fn the_most_verbose_valid_body_fits_under_the_body_limit() {
        // Every character of note and referenceId an escaped surrogate pair,
        // every key character an escaped quote, the longest asset name.
        let astral = r"\ud83d\ude00";
        let body = format!(
            r#"{{"asset": "6f1d8b52-3c0e-4d7a-9a43-0d5e2b7c9a01", "amount": 9007199254740991, "idempotencyKey": "{}", "referenceId": "{}", "note": "{}"}}"#,
            r#"\""#.repeat(IDEMPOTENCY_KEY_CHARS_MAX),
            astral.repeat(REFERENCE_ID_CHARS_MAX),
            astral.repeat(NOTE_CHARS_MAX),
        );
        assert!(body.len() < BODY_BYTES_MAX, "{} bytes", body.len());
        let JsonBody(object) = parse_object(body.as_bytes()).unwrap();
        assert_eq!(
            object["note"].as_str().unwrap().chars().count(),
            NOTE_CHARS_MAX
        );
    }
}
