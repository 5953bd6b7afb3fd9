//! The input parsers the resources share: path segments, the idempotency
//! key, a movement's fields (asset, amount, details), required and optional
//! text, unknown and empty fields, and the operation a route names. Each
//! reports its problems into a `FieldErrors`, so a request's problems are
//! answered all together.

use actix_web::HttpRequest;
use serde_json::{Map, Value};
use uuid::Uuid;

use super::body::FieldErrors;
use crate::domain::{Amount, AssetRef, IdempotencyKey, Metadata, Note, ReferenceId, Scope, UserId};
use crate::error::ApiError;
use crate::ledger::engine::{CreditKind, EntryDetails, Operation, Route};
use crate::limits::QUERY_PROBLEMS_MAX;

pub(super) fn path_user(request: &HttpRequest, errors: &mut FieldErrors) -> Option<UserId> {
    let raw = request.match_info().get("userId").unwrap_or_default();
    errors.check("userId", UserId::parse(raw))
}

/// The id in the path segment `name`: a UUID in its hyphenated form, or a
/// problem naming `name` (API.md, Conventions).
pub(super) fn path_uuid(
    request: &HttpRequest,
    name: &str,
    message: &str,
    errors: &mut FieldErrors,
) -> Option<Uuid> {
    let raw = request.match_info().get(name).unwrap_or_default();
    match Uuid::try_parse(raw) {
        Ok(id) if raw.len() == 36 => Some(id),
        _ => {
            errors.push(name, message);
            None
        }
    }
}

/// `asset`, `amount`, `referenceId`, `note` and `metadata`, each field named
/// with `prefix`.
pub(super) fn parse_movement(
    body: &mut Map<String, Value>,
    prefix: &str,
    errors: &mut FieldErrors,
) -> Option<(AssetRef, Amount, EntryDetails)> {
    let asset = required_text(body, &format!("{prefix}asset"), AssetRef::parse, errors);
    let amount = match body.remove("amount") {
        None | Some(Value::Null) => {
            errors.push(&format!("{prefix}amount"), "is required");
            None
        }
        Some(value) => parse_amount_value(value, &format!("{prefix}amount"), errors),
    };
    let details = parse_details(body, prefix, errors);
    Some((asset?, amount?, details?))
}

pub(super) fn parse_amount_value(
    value: Value,
    field: &str,
    errors: &mut FieldErrors,
) -> Option<Amount> {
    match value {
        Value::Number(number) => match number.as_u64() {
            Some(raw) => errors.check(field, Amount::parse(raw)),
            None => {
                errors.push(field, "must be a positive integer");
                None
            }
        },
        _ => {
            errors.push(field, "must be a JSON integer, not a string or other type");
            None
        }
    }
}

/// `referenceId`, `note` and `metadata`, all optional.
pub(super) fn parse_details(
    body: &mut Map<String, Value>,
    prefix: &str,
    errors: &mut FieldErrors,
) -> Option<EntryDetails> {
    let reference_id = optional_text(body, "referenceId", prefix, ReferenceId::parse, errors);
    let note = optional_text(body, "note", prefix, Note::parse, errors);
    let metadata = match body.remove("metadata") {
        None | Some(Value::Null) => Some(None),
        Some(value) => errors
            .check(&format!("{prefix}metadata"), Metadata::parse(&value))
            .map(Some),
    };
    Some(EntryDetails {
        reference_id: reference_id?,
        note: note?,
        metadata: metadata?,
    })
}

/// A required string field, parsed.
pub(super) fn required_text<T>(
    body: &mut Map<String, Value>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::ParseError>,
    errors: &mut FieldErrors,
) -> Option<T> {
    let key = field.rsplit('.').next().unwrap_or(field);
    match body.remove(key) {
        Some(Value::String(raw)) => errors.check(field, parse(&raw)),
        None | Some(Value::Null) => {
            errors.push(field, "is required");
            None
        }
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

/// A route that takes no query parameters: every one given is named.
pub(super) fn refuse_any_query(raw: &str, errors: &mut FieldErrors) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw).unwrap_or_default();
    for (name, _) in pairs.iter().take(QUERY_PROBLEMS_MAX) {
        errors.push(&truncate_for_echo(name), "is not a known parameter");
    }
}

/// Every field left in `body` is one the route does not know.
pub(super) fn refuse_unknown_fields(body: &Map<String, Value>, errors: &mut FieldErrors) {
    refuse_unknown_fields_named(body, "", errors);
}

pub(super) fn refuse_unknown_fields_named(
    body: &Map<String, Value>,
    prefix: &str,
    errors: &mut FieldErrors,
) {
    for unknown in body.keys() {
        if errors.len() >= QUERY_PROBLEMS_MAX {
            break;
        }
        errors.push(
            &format!("{prefix}{}", truncate_for_echo(unknown)),
            "is not a known field",
        );
    }
}

/// A field validation said was there is not: a defect, answered 500.
pub(super) fn validated_but_missing() -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "a field was missing although validation passed"
    ))
}

const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

/// The key from the body field or the `Idempotency-Key` header: one of them is
/// required, and when both are given they must agree. Problems with both are
/// reported together.
pub(super) fn parse_idempotency_key(
    request: &HttpRequest,
    from_body: Option<Value>,
    errors: &mut FieldErrors,
) -> Option<IdempotencyKey> {
    /// One source of the key: not given, given but refused, or given and valid.
    enum Given {
        Absent,
        Refused,
        Valid(IdempotencyKey),
    }
    let checked = |parsed: Option<IdempotencyKey>| parsed.map_or(Given::Refused, Given::Valid);
    let header_values: Vec<_> = request.headers().get_all(IDEMPOTENCY_KEY_HEADER).collect();
    let from_header = match header_values.as_slice() {
        [] => Given::Absent,
        [value] => match value.to_str() {
            Ok(text) => checked(errors.check("Idempotency-Key", IdempotencyKey::parse(text))),
            Err(_) => {
                errors.push("Idempotency-Key", "must be visible ASCII");
                Given::Refused
            }
        },
        _ => {
            errors.push("Idempotency-Key", "must be sent once");
            Given::Refused
        }
    };
    let from_body = match from_body {
        None | Some(Value::Null) => Given::Absent,
        Some(Value::String(text)) => {
            checked(errors.check("idempotencyKey", IdempotencyKey::parse(&text)))
        }
        Some(_) => {
            errors.push("idempotencyKey", "must be a string");
            Given::Refused
        }
    };
    match (from_body, from_header) {
        (Given::Valid(body), Given::Valid(header)) if body != header => {
            errors.push(
                "idempotencyKey",
                "differs from the Idempotency-Key header; send one, or the same in both",
            );
            None
        }
        (Given::Valid(key), Given::Valid(_) | Given::Absent)
        | (Given::Absent, Given::Valid(key)) => Some(key),
        (Given::Absent, Given::Absent) => {
            errors.push(
                "idempotencyKey",
                "is required, as this field or as the Idempotency-Key header",
            );
            None
        }
        // A refused source has already said why.
        (Given::Refused, _) | (_, Given::Refused) => None,
    }
}

/// An optional string field: absent or null is `Some(None)`; a problem is
/// `None`. Its problems are named with `prefix`.
fn optional_text<T>(
    body: &mut Map<String, Value>,
    field: &str,
    prefix: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::ParseError>,
    errors: &mut FieldErrors,
) -> Option<Option<T>> {
    let named = format!("{prefix}{field}");
    match body.remove(field) {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(text)) => errors.check(&named, parse(&text)).map(Some),
        Some(_) => {
            errors.push(&named, "must be a string or null");
            None
        }
    }
}

/// Reads a query string by the rules every route shares, and hands each
/// parameter left to `read(name, value, errors)`: a query that does not
/// parse is a problem named `query`; a name given twice, a name not in
/// `known` (the problem lists those that are) and a known one given empty
/// are refused. At most `QUERY_PROBLEMS_MAX` problems are reported, each
/// name echoed cut short, in time linear in the query's length, however
/// long and repetitive a hostile one is.
pub(super) fn read_query(
    raw: &str,
    known: &[&str],
    errors: &mut FieldErrors,
    mut read: impl FnMut(&str, &str, &mut FieldErrors),
) {
    let pairs: Vec<(String, String)> = match serde_urlencoded::from_str(raw) {
        Ok(pairs) => pairs,
        Err(_) => {
            errors.push("query", "is not a valid query string");
            return;
        }
    };
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    for (name, value) in &pairs {
        if errors.len() >= QUERY_PROBLEMS_MAX {
            break;
        }
        if !seen.insert(name.as_str()) {
            errors.push(&truncate_for_echo(name), "is given more than once");
        } else if !known.contains(&name.as_str()) {
            errors.push(
                &truncate_for_echo(name),
                format!("is not a known parameter ({})", known.join(", ")),
            );
        } else if value.is_empty() {
            refuse_empty(name, errors);
        } else {
            read(name, value, errors);
        }
    }
}

/// A query parameter given with no value: refused rather than read as
/// absent, since a filter or a time the caller meant to set and left blank
/// would otherwise answer a wider question than the one asked.
fn refuse_empty(name: &str, errors: &mut FieldErrors) {
    errors.push(
        name,
        "is empty: give it a value, or leave the parameter out",
    );
}

/// A caller's own field name, echoed back in an error, cut to a sane length.
pub(super) fn truncate_for_echo(name: &str) -> String {
    const ECHO_CHARS_MAX: usize = 64;
    if name.chars().count() <= ECHO_CHARS_MAX {
        name.to_owned()
    } else {
        let mut cut: String = name.chars().take(ECHO_CHARS_MAX).collect();
        cut.push('…');
        cut
    }
}

/// The operation a route (or a batch `type`) names, and the scope it needs.
pub(super) fn operation_of(
    route: Route,
    user: UserId,
    to: Option<UserId>,
    asset: AssetRef,
    amount: Amount,
    details: EntryDetails,
) -> Option<(Operation, Scope)> {
    Some(match route {
        Route::Topup | Route::Bonus => (
            Operation::Credit {
                kind: if route == Route::Topup {
                    CreditKind::Topup
                } else {
                    CreditKind::Bonus
                },
                user,
                asset,
                amount,
                details,
            },
            Scope::Grant,
        ),
        Route::Spend => (
            Operation::Spend {
                user,
                asset,
                amount,
                details,
            },
            Scope::Spend,
        ),
        Route::Transfer => (
            Operation::Transfer {
                from: user,
                to: to?,
                asset,
                amount,
                details,
            },
            Scope::Spend,
        ),
        Route::Reverse | Route::Batch | Route::Hold | Route::Capture | Route::Void => return None,
    })
}

/// A list's failure as its caller should read it: an asset it names is a
/// filter the caller wrote, so an unknown one is a bad `asset` parameter
/// (400), not a missing thing to act on (404).
pub(super) fn as_filter_error(error: ApiError) -> ApiError {
    match error {
        ApiError::AssetNotFound => ApiError::field("asset", "no asset has this symbol or id"),
        other => other,
    }
}

/// `?at=<RFC 3339 time>` of a balance or a supply, in milliseconds since the epoch (any
/// offset; a finer fraction is cut to the millisecond, which counts the
/// entries of that millisecond). Not a time, or one in the future, is a
/// problem naming `at`; any other parameter is refused.
pub(super) fn parse_at_query(raw: &str, errors: &mut FieldErrors) -> Option<i64> {
    let mut at = None;
    read_query(raw, &["at"], errors, |_, value, errors| {
        let parsed =
            time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                .ok()
                .and_then(|time| i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok());
        match parsed {
            Some(ms) if ms > crate::clock::now_ms() => errors.push("at", "is in the future"),
            Some(ms) => at = Some(ms),
            None => errors.push(
                "at",
                "must be an RFC 3339 time, such as 2026-11-23T10:15:30.123Z",
            ),
        }
    });
    at
}
