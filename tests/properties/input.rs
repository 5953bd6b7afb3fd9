//! Goal: every parser of caller input takes arbitrary input without a panic,
//! accepts exactly what API.md allows, and refuses the rest as an error that
//! leaves as the envelope. The rule each parser must keep is written out here
//! again, independently of its code.

use std::collections::HashSet;

use actix_web::body::MessageBody;
use actix_web::ResponseError;
use proptest::prelude::*;
use serde_json::Value;

use wallet::domain::{
    Amount, AssetRef, Cursor, EntryKind, IdempotencyKey, Note, PageLimit, ReferenceId, RequestId,
    UserId,
};
use wallet::error::ApiError;
use wallet::http::body::parse_object;
use wallet::limits::{
    AMOUNT_MAX, IDEMPOTENCY_KEY_CHARS_MAX, NOTE_CHARS_MAX, PAGE_LIMIT_MAX, REFERENCE_ID_CHARS_MAX,
    REQUEST_ID_CHARS_MAX, USER_ID_CHARS_MAX,
};

/// Text of every kind: any Unicode, visible ASCII, and strings shaped like
/// each field near its bounds, so both sides of every rule are reached.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,300}",
        "[A-Za-z0-9_.:@-]{1,130}",
        "[A-Za-z0-9_.:@-]{0,4}[^A-Za-z0-9_.:@-][A-Za-z0-9_.:@-]{0,4}",
        "[!-~]{250,260}",
        "[0-9]{0,21}",
        "[A-Z0-9_]{0,34}",
        "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-fA-F]{12}",
        "(TOPUP|BONUS|SPEND|topup|Spend)[ x]?",
        "\\PC{250,260}",
        "\\PC{1020,1030}",
        "('|\"|;|--|/\\*|\\.\\./|%00|\\\\)[ -~]{0,20}",
    ]
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

fn is_visible_ascii(text: &str) -> bool {
    text.bytes().all(|b| (b'!'..=b'~').contains(&b))
}

proptest! {
    #![proptest_config(crate::config(512))]

    #[test]
    fn a_user_id_is_1_to_128_of_the_allowed_characters(raw in text()) {
        // "." and ".." are path segments a URL normalizes away.
        let allowed = !raw.is_empty()
            && raw != "."
            && raw != ".."
            && chars(&raw) <= USER_ID_CHARS_MAX
            && raw.chars().all(|c| c.is_ascii_alphanumeric() || "_.:@-".contains(c));
        match UserId::parse(&raw) {
            Ok(user) => prop_assert!(allowed && user.as_str() == raw),
            Err(_) => prop_assert!(!allowed),
        }
    }

    #[test]
    fn keys_and_request_ids_are_visible_ascii_within_their_bounds(raw in text()) {
        let visible = !raw.is_empty() && is_visible_ascii(&raw);
        match IdempotencyKey::parse(&raw) {
            Ok(key) => prop_assert!(visible && raw.len() <= IDEMPOTENCY_KEY_CHARS_MAX && key.as_str() == raw),
            Err(_) => prop_assert!(!visible || raw.len() > IDEMPOTENCY_KEY_CHARS_MAX),
        }
        match RequestId::parse(&raw) {
            Ok(id) => prop_assert!(visible && raw.len() <= REQUEST_ID_CHARS_MAX && id.as_str() == raw),
            Err(_) => prop_assert!(!visible || raw.len() > REQUEST_ID_CHARS_MAX),
        }
    }

    #[test]
    fn reference_ids_and_notes_are_any_text_but_nul_within_their_bounds(raw in text()) {
        let nul = raw.contains('\0');
        match ReferenceId::parse(&raw) {
            Ok(reference) => prop_assert!(!nul && chars(&raw) <= REFERENCE_ID_CHARS_MAX && reference.as_str() == raw),
            Err(_) => prop_assert!(nul || chars(&raw) > REFERENCE_ID_CHARS_MAX),
        }
        match Note::parse(&raw) {
            Ok(note) => prop_assert!(!nul && chars(&raw) <= NOTE_CHARS_MAX && note.as_str() == raw),
            Err(_) => prop_assert!(nul || chars(&raw) > NOTE_CHARS_MAX),
        }
    }

    #[test]
    fn an_asset_is_a_short_upper_case_symbol_or_a_hyphenated_uuid(raw in text()) {
        let symbol = !raw.is_empty()
            && raw.len() <= 32
            && raw.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        let hyphenated_uuid = raw.len() == 36
            && raw.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        match AssetRef::parse(&raw) {
            Ok(AssetRef::Symbol(parsed)) => prop_assert!(symbol && parsed == raw),
            Ok(AssetRef::Id(id)) => {
                prop_assert!(hyphenated_uuid);
                prop_assert_eq!(id.to_string(), raw.to_ascii_lowercase());
            }
            Err(_) => prop_assert!(!symbol && !hyphenated_uuid),
        }
    }

    #[test]
    fn history_filters_accept_exactly_their_values(raw in text()) {
        let kind = ["TOPUP", "BONUS", "SPEND"].contains(&raw.as_str());
        prop_assert_eq!(EntryKind::parse(&raw).is_ok(), kind);
        let digits = !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_digit());
        let limit_ok = digits && raw.len() <= 3 && (1..=PAGE_LIMIT_MAX).contains(&raw.parse::<usize>().unwrap());
        match PageLimit::parse(&raw) {
            // A leading zero is harmless here: "07" is 7.
            Ok(limit) => prop_assert!(limit_ok && limit.get() == raw.parse::<usize>().unwrap()),
            Err(_) => prop_assert!(!limit_ok),
        }
        let cursor_ok = digits && !raw.starts_with('0') && raw.parse::<i64>().is_ok();
        match Cursor::parse(&raw) {
            Ok(cursor) => prop_assert!(cursor_ok && cursor.encode() == raw),
            Err(_) => prop_assert!(!cursor_ok),
        }
    }

    #[test]
    fn an_amount_is_1_to_2_pow_53_minus_1(raw in prop_oneof![any::<u64>(), 0..3_u64, AMOUNT_MAX - 2..=AMOUNT_MAX + 2]) {
        match Amount::parse(raw) {
            Ok(amount) => prop_assert!((1..=AMOUNT_MAX).contains(&raw) && amount.get() == raw),
            Err(_) => prop_assert!(raw == 0 || raw > AMOUNT_MAX),
        }
    }

    #[test]
    fn any_bytes_as_a_body_are_an_object_or_invalid_json_in_the_envelope(
        bytes in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..300),
            text().prop_map(String::into_bytes),
            "[{}\\[\\]\":,0-9a-z \\\\]{0,200}".prop_map(String::into_bytes),
        ]
    ) {
        match parse_object(&bytes) {
            Ok(object) => {
                let reparsed: Value = serde_json::from_slice(&bytes).unwrap();
                prop_assert_eq!(Value::Object(object.0), reparsed);
            }
            Err(error) => assert_invalid_json_envelope(&error),
        }
    }

    #[test]
    fn a_json_object_is_accepted_unless_a_key_appears_twice(
        fields in proptest::collection::vec(("[a-d]", json_value()), 0..6),
        nested in json_value(),
    ) {
        let mut body = String::from("{");
        for (i, (key, value)) in fields.iter().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&format!("{}:{}", Value::from(key.as_str()), value));
        }
        body.push('}');
        let mut seen = HashSet::new();
        let unique = fields.iter().all(|(key, _)| seen.insert(key));
        match parse_object(body.as_bytes()) {
            Ok(object) => {
                prop_assert!(unique, "{}", body);
                prop_assert_eq!(object.0.len(), fields.len());
            }
            Err(error) => {
                prop_assert!(!unique, "{} was refused: {:?}", body, error);
                assert_invalid_json_envelope(&error);
            }
        }
        // Anything but an object at the top is refused, however it nests.
        if !nested.is_object() {
            let refused = parse_object(nested.to_string().as_bytes());
            prop_assert!(refused.is_err());
        }
    }
}

/// JSON of every shape, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,3}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// 400 INVALID_JSON, as the envelope of API.md.
fn assert_invalid_json_envelope(error: &ApiError) {
    let response = error.error_response();
    assert_eq!(response.status().as_u16(), 400);
    let bytes = response.into_body().try_into_bytes().unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["success"], false);
    assert!(body["data"].is_null());
    assert_eq!(body["error"]["code"], "INVALID_JSON");
}
