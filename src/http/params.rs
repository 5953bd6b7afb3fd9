//! The parameters of the routes (path segments, query strings, headers) as
//! the OpenAPI document describes them: each resource's `#[utoipa::path]`
//! names these, with their bounds from `limits.rs`. They describe; the
//! parsers in the resource files and `input.rs` decide.

use serde_json::json;
use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn};
use utoipa::openapi::schema::{Object, ObjectBuilder, Type};
use utoipa::openapi::Required;
use utoipa::IntoParams;

use crate::domain::EntryKind;
use crate::ledger::engine::HoldStatus;
use crate::limits::{
    API_KEY_NAME_CHARS_MAX, ASSET_SYMBOL_CHARS_MAX, CURSOR_CHARS_MAX, EVENTS_PAGE_LIMIT_DEFAULT,
    EVENTS_PAGE_LIMIT_MAX, IDEMPOTENCY_KEY_CHARS_MAX, PAGE_LIMIT_DEFAULT, PAGE_LIMIT_MAX,
    REFERENCE_ID_CHARS_MAX, USER_ID_CHARS_MAX,
};

/// A hyphenated UUID, in either case: what `Uuid::try_parse` takes at 36
/// characters (`input::path_uuid`, `AssetRef::parse`).
const UUID_PATTERN_BODY: &str =
    "[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}";

/// An id in a path or a body: a hyphenated UUID.
pub(super) fn uuid_pattern() -> String {
    format!("^{UUID_PATTERN_BODY}$")
}

/// An asset as a caller names it (`AssetRef::parse`): a symbol of 1-32 of
/// `A-Z 0-9 _`, or an id.
pub(super) fn asset_ref_pattern() -> String {
    format!("^(?:[A-Z0-9_]{{1,{ASSET_SYMBOL_CHARS_MAX}}}|{UUID_PATTERN_BODY})$")
}

/// A user id (`UserId::parse`): characters of `A-Z a-z 0-9 _ . : @ -`, but
/// never `.` or `..`.
pub(super) const USER_ID_PATTERN: &str = "^(?!\\.\\.?$)[A-Za-z0-9_.:@-]+$";

/// The decimal numbers from 1 to `i64::MAX` without a leading zero: the
/// cursors `Cursor::parse` takes (an entry's sequence number).
pub(super) fn cursor_pattern() -> String {
    format!("^(?:{})$", positive_decimals_up_to(i64::MAX.unsigned_abs()))
}

/// `0` (the start) or a cursor: what `after` and `Last-Event-ID` take.
pub(super) fn event_cursor_pattern() -> String {
    format!(
        "^(?:0|{})$",
        positive_decimals_up_to(i64::MAX.unsigned_abs())
    )
}

/// An alternation matching exactly the decimal spellings of `1..=max`
/// without a leading zero: shorter numbers freely, then for numbers as long
/// as `max`, each way of staying under it digit by digit.
fn positive_decimals_up_to(max: u64) -> String {
    let digits: Vec<u32> = max
        .to_string()
        .chars()
        .filter_map(|c| c.to_digit(10))
        .collect();
    let length = digits.len();
    let mut branches = Vec::new();
    if length > 1 {
        branches.push(format!("[1-9][0-9]{{0,{}}}", length - 2));
    }
    for (position, &digit) in digits.iter().enumerate() {
        let lowest = u32::from(position == 0);
        if digit > lowest {
            let prefix: String = digits[..position].iter().map(u32::to_string).collect();
            let rest = length - position - 1;
            let tail = if rest > 0 {
                format!("[0-9]{{{rest}}}")
            } else {
                String::new()
            };
            branches.push(format!("{prefix}[{lowest}-{}]{tail}", digit - 1));
        }
    }
    branches.push(max.to_string());
    branches.join("|")
}

fn string_schema(chars_max: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(chars_max))
}

/// `asset` of a list's query: a filter by symbol or id.
fn asset_filter() -> Parameter {
    parameter(
        "asset",
        ParameterIn::Query,
        "Only this asset: a symbol or an id.",
        string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS))
            .pattern(Some(asset_ref_pattern()))
            .build(),
    )
}

/// `limit` of a paged list.
fn page_limit(description: &str) -> Parameter {
    parameter(
        "limit",
        ParameterIn::Query,
        description,
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1))
            .maximum(Some(PAGE_LIMIT_MAX as u64))
            .default(Some(json!(PAGE_LIMIT_DEFAULT)))
            .build(),
    )
}

/// `cursor` of a paged list.
fn page_cursor() -> Parameter {
    parameter(
        "cursor",
        ParameterIn::Query,
        "The `nextCursor` of the previous page.",
        string_schema(CURSOR_CHARS_MAX)
            .pattern(Some(cursor_pattern()))
            .build(),
    )
}

fn parameter(name: &str, place: ParameterIn, description: &str, schema: Object) -> Parameter {
    let required = match place {
        ParameterIn::Path => Required::True,
        _ => Required::False,
    };
    ParameterBuilder::new()
        .name(name)
        .parameter_in(place)
        .required(required)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// An asset id is a hyphenated UUID: 36 characters.
pub(super) const UUID_CHARS: usize = 36;

/// `{userId}` in a path.
pub struct UserIdParam;

impl IntoParams for UserIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "userId",
            ParameterIn::Path,
            "The user: characters of `A-Z a-z 0-9 _ . : @ -`, but not `.` or `..`.",
            string_schema(USER_ID_CHARS_MAX)
                .pattern(Some(USER_ID_PATTERN))
                .build(),
        )]
    }
}

/// The `{id}` of a transaction in the path.
pub struct TransactionIdParam;

impl IntoParams for TransactionIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "id",
            ParameterIn::Path,
            "The transaction's id, as its `id` field gives it (a UUID).",
            string_schema(UUID_CHARS)
                .min_length(Some(UUID_CHARS))
                .pattern(Some(uuid_pattern()))
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
                .build(),
        )]
    }
}

/// The query of `GET /assets/{asset}/supply`.
pub struct SupplyParams;

impl IntoParams for SupplyParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "at",
            ParameterIn::Query,
            "An RFC 3339 time (any offset), not in the future: the figures as they stood \
             then, counting entries made at or before it (a report of unspent paid currency \
             on a set date); `held` and `holders` are then omitted.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )))
                .build(),
        )]
    }
}

/// The query of `GET /wallets/{userId}/balance`.
pub struct BalanceParams;

impl IntoParams for BalanceParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "at",
            ParameterIn::Query,
            "An RFC 3339 time (any offset), not in the future: the balances as they stood \
             then, counting entries made at or before it; `held` and `available` are then \
             omitted, and before the user's first entry every balance is 0.",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::DateTime,
                )))
                .build(),
        )]
    }
}

/// The `{holdId}` of a hold in the path.
pub struct HoldIdParam;

impl IntoParams for HoldIdParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "holdId",
            ParameterIn::Path,
            "The hold's id, as its `id` field gives it (a UUID).",
            string_schema(UUID_CHARS)
                .min_length(Some(UUID_CHARS))
                .pattern(Some(uuid_pattern()))
                .format(Some(utoipa::openapi::SchemaFormat::Custom("uuid".into())))
                .build(),
        )]
    }
}

/// The query of `GET /wallets/{userId}/holds`. An unknown parameter, or
/// one given empty, is refused.
pub struct HoldListParams;

impl IntoParams for HoldListParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "status",
                ParameterIn::Query,
                "Only holds with this status now (a HELD hold past its expiry is EXPIRED).",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(HoldStatus::ALL.map(HoldStatus::as_str)))
                    .build(),
            ),
            asset_filter(),
            page_limit("Holds per page."),
            page_cursor(),
        ]
    }
}

/// The query of `GET /wallets/{userId}/transactions`. An unknown parameter,
/// or one given empty, is refused.
pub struct HistoryParams;

impl IntoParams for HistoryParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let kinds = EntryKind::ALL.map(EntryKind::as_str);
        vec![
            asset_filter(),
            parameter(
                "type",
                ParameterIn::Query,
                "Only entries of this type.",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(kinds))
                    .build(),
            ),
            parameter(
                "referenceId",
                ParameterIn::Query,
                "Only entries with exactly this `referenceId`.",
                string_schema(REFERENCE_ID_CHARS_MAX)
                    .pattern(Some(super::json::NO_NUL_PATTERN))
                    .build(),
            ),
            page_limit("Entries per page."),
            page_cursor(),
        ]
    }
}

/// The `{asset}` of a path: a symbol or an id.
pub struct AssetParam;

impl IntoParams for AssetParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "asset",
            ParameterIn::Path,
            "The asset: its symbol (such as `GOLD`) or its id (a UUID).",
            string_schema(ASSET_SYMBOL_CHARS_MAX.max(UUID_CHARS))
                .pattern(Some(asset_ref_pattern()))
                .build(),
        )]
    }
}

/// The `{name}` of an API key in the path.
pub struct KeyNameParam;

impl IntoParams for KeyNameParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "name",
            ParameterIn::Path,
            "The key's name, as `GET /keys` lists it: characters of `A-Z a-z 0-9 _ . -`.",
            string_schema(API_KEY_NAME_CHARS_MAX)
                .pattern(Some("^[A-Za-z0-9_.-]+$"))
                .build(),
        )]
    }
}

/// The query of `GET /events`, and the header a reconnecting stream sends.
pub struct EventsParams;

impl IntoParams for EventsParams {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![
            parameter(
                "after",
                ParameterIn::Query,
                "Events after this cursor: the `id` of an event, or the `nextCursor` of a page. \
                 Absent: from the start of the ledger. A cursor past the newest event (one this \
                 ledger never gave out) is 400.",
                string_schema(CURSOR_CHARS_MAX)
                    .pattern(Some(event_cursor_pattern()))
                    .build(),
            ),
            parameter(
                "limit",
                ParameterIn::Query,
                "Events per page (a stream ignores it).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(EVENTS_PAGE_LIMIT_MAX as u64))
                    .default(Some(json!(EVENTS_PAGE_LIMIT_DEFAULT)))
                    .build(),
            ),
            parameter(
                "Last-Event-ID",
                ParameterIn::Header,
                "The `id` of the last event received: the page or stream resumes after it \
                 (over `after`), as a reconnecting `EventSource` asks. The same rules as `after`.",
                string_schema(CURSOR_CHARS_MAX)
                    .pattern(Some(event_cursor_pattern()))
                    .build(),
            ),
        ]
    }
}

/// The `Idempotency-Key` header of a write.
pub struct IdempotencyKeyParam;

impl IntoParams for IdempotencyKeyParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![parameter(
            "Idempotency-Key",
            ParameterIn::Header,
            "The idempotency key, when not given as the body's `idempotencyKey`: \
             1-255 visible ASCII characters.",
            string_schema(IDEMPOTENCY_KEY_CHARS_MAX)
                .pattern(Some("^[!-~]+$"))
                .build(),
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_pattern_spells_exactly_the_numbers_up_to_its_bound() {
        assert_eq!(
            positive_decimals_up_to(305),
            "[1-9][0-9]{0,1}|[1-2][0-9]{2}|30[0-4]|305"
        );
        // Every number from 1 to the bound matches and nothing past it, by
        // brute force on small bounds, each digit by digit.
        for max in [1u64, 9, 10, 19, 100, 305, 999, 1000, 4071] {
            let branches = positive_decimals_up_to(max);
            let matches = |text: &str| {
                branches
                    .split('|')
                    .any(|branch| matches_branch(branch, text))
            };
            for n in 1..=max * 2 + 10 {
                assert_eq!(matches(&n.to_string()), n <= max, "{n} against {max}");
            }
            assert!(!matches("0") && !matches("01"), "{max}");
        }
    }

    /// A match of the small regex dialect `positive_decimals_up_to` writes:
    /// literal digits, `[a-b]` and `[a-b]{n}` or `{0,n}`.
    fn matches_branch(branch: &str, text: &str) -> bool {
        let mut classes: Vec<(char, char, usize, usize)> = Vec::new();
        let mut rest = branch;
        while let Some(c) = rest.chars().next() {
            let (low, high, after) = if c == '[' {
                let end = rest.find(']').unwrap();
                let inner: Vec<char> = rest[1..end].chars().collect();
                (inner[0], inner[2], &rest[end + 1..])
            } else {
                (c, c, &rest[1..])
            };
            rest = after;
            let (min, max) = if rest.starts_with('{') {
                let end = rest.find('}').unwrap();
                let counts = &rest[1..end];
                rest = &rest[end + 1..];
                match counts.split_once(',') {
                    Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                    None => (counts.parse().unwrap(), counts.parse().unwrap()),
                }
            } else {
                (1, 1)
            };
            classes.push((low, high, min, max));
        }
        fn walk(classes: &[(char, char, usize, usize)], text: &[char]) -> bool {
            let Some(&(low, high, min, max)) = classes.first() else {
                return text.is_empty();
            };
            (min..=max).any(|count| {
                count <= text.len()
                    && text[..count].iter().all(|c| (low..=high).contains(c))
                    && walk(&classes[1..], &text[count..])
            })
        }
        walk(&classes, &text.chars().collect::<Vec<_>>())
    }

    #[test]
    fn the_cursor_pattern_ends_at_the_largest_cursor() {
        let pattern = cursor_pattern();
        assert!(pattern.ends_with("|9223372036854775807)$"), "{pattern}");
    }
}
