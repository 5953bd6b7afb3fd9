//! `metadata` (API.md): a caller's own labels on a write, bounded so it can
//! never grow a row past what a page of history can carry.

use std::collections::BTreeMap;

use serde_json::Value;

use super::ParseError;
use crate::limits::{
    METADATA_BYTES_MAX, METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX, METADATA_VALUE_CHARS_MAX,
};

/// At most 16 keys of 1-64 characters of `A-Z a-z 0-9 _ . -`, each value a
/// string of at most 256 characters, at most 2048 bytes as compact JSON.
/// Keys are kept sorted, so two objects that differ only in key order are
/// the same metadata, and serialise to the same text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Metadata(BTreeMap<String, String>);

impl Metadata {
    pub fn parse(raw: &Value) -> Result<Metadata, ParseError> {
        let Value::Object(object) = raw else {
            return Err(ParseError::new(
                "must be a JSON object of string values, or null",
            ));
        };
        if object.len() > METADATA_KEYS_MAX {
            return Err(ParseError::new(format!(
                "may hold at most {METADATA_KEYS_MAX} keys"
            )));
        }
        let mut entries = BTreeMap::new();
        for (key, value) in object {
            let key_allowed = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
            if key.is_empty()
                || key.chars().count() > METADATA_KEY_CHARS_MAX
                || !key.chars().all(key_allowed)
            {
                return Err(ParseError::new(format!(
                    "keys must be 1 to {METADATA_KEY_CHARS_MAX} of A-Z, a-z, 0-9, _ . -"
                )));
            }
            let Value::String(text) = value else {
                return Err(ParseError::new("values must be strings"));
            };
            if text.chars().count() > METADATA_VALUE_CHARS_MAX {
                return Err(ParseError::new(format!(
                    "values must be at most {METADATA_VALUE_CHARS_MAX} characters"
                )));
            }
            super::names::refuse_nul(text)?;
            entries.insert(key.clone(), text.clone());
        }
        let metadata = Metadata(entries);
        if metadata.to_json().len() > METADATA_BYTES_MAX {
            return Err(ParseError::new(format!(
                "must be at most {METADATA_BYTES_MAX} bytes as compact JSON"
            )));
        }
        Ok(metadata)
    }

    /// Compact JSON, keys sorted: how metadata is stored and compared.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "{}".to_owned())
    }

    pub fn to_value(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect(),
        )
    }

    pub fn entries(&self) -> &BTreeMap<String, String> {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_does_not_matter() {
        let a = Metadata::parse(&json!({"b": "2", "a": "1"})).unwrap();
        let b = Metadata::parse(&json!({"a": "1", "b": "2"})).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.to_json(), r#"{"a":"1","b":"2"}"#);
    }

    #[test]
    fn sixteen_keys_pass_and_seventeen_fail() {
        let object = |n: usize| {
            Value::Object(
                (0..n)
                    .map(|i| (format!("k{i}"), Value::String("v".into())))
                    .collect(),
            )
        };
        assert!(Metadata::parse(&object(16)).is_ok());
        assert!(Metadata::parse(&object(17)).is_err());
    }

    #[test]
    fn keys_values_and_size_are_bounded() {
        assert!(Metadata::parse(&json!({ "a".repeat(64): "v" })).is_ok());
        assert!(Metadata::parse(&json!({ "a".repeat(65): "v" })).is_err());
        assert!(Metadata::parse(&json!({"": "v"})).is_err());
        assert!(Metadata::parse(&json!({"a b": "v"})).is_err());
        assert!(Metadata::parse(&json!({"a": 1})).is_err());
        assert!(Metadata::parse(&json!({"a": null})).is_err());
        assert!(Metadata::parse(&json!({"a": "é".repeat(256)})).is_ok());
        assert!(Metadata::parse(&json!({"a": "v".repeat(257)})).is_err());
        assert!(Metadata::parse(&json!(["a"])).is_err());
        // Nine values of 256 characters: over 2048 bytes compact.
        let big: serde_json::Map<String, Value> = (0..9)
            .map(|i| (format!("k{i}"), Value::String("v".repeat(256))))
            .collect();
        assert!(Metadata::parse(&Value::Object(big)).is_err());
    }
}
