//! The rules on value a studio sets (API.md, Limits): per asset a spend
//! order, a maximum balance and caps per window, and per user an override
//! of the last two. Valid by construction, as every domain type; how a
//! change merges into the rules in force is decided here, once.

use serde::{Deserialize, Serialize};

use super::{EntryKind, ParseError};
use crate::limits::{AMOUNT_MAX, LIMITS_PER_RULE_SET_MAX, LIMIT_WINDOW_SECONDS};

/// Which part of a balance a debit takes first (API.md, Paid, free and
/// expiring currency). Stored and shown now; parts arrive with that section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum SpendOrder {
    #[default]
    #[serde(rename = "free-first")]
    FreeFirst,
    #[serde(rename = "paid-first")]
    PaidFirst,
}

impl SpendOrder {
    pub const ALL: [SpendOrder; 2] = [SpendOrder::FreeFirst, SpendOrder::PaidFirst];

    pub fn as_str(self) -> &'static str {
        match self {
            SpendOrder::FreeFirst => "free-first",
            SpendOrder::PaidFirst => "paid-first",
        }
    }

    pub fn parse(raw: &str) -> Result<SpendOrder, ParseError> {
        SpendOrder::ALL
            .into_iter()
            .find(|order| order.as_str() == raw)
            .ok_or_else(|| ParseError::new("must be free-first or paid-first"))
    }
}

/// The entry types a cap may count: what a user is given (TOPUP, BONUS) and
/// what a user gives away (SPEND, TRANSFER sent). Reversals are never
/// counted (API.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum LimitedKind {
    Topup,
    Bonus,
    Spend,
    Transfer,
}

impl LimitedKind {
    pub const ALL: [LimitedKind; 4] = [
        LimitedKind::Topup,
        LimitedKind::Bonus,
        LimitedKind::Spend,
        LimitedKind::Transfer,
    ];

    pub fn as_str(self) -> &'static str {
        self.entry_kind().as_str()
    }

    pub fn entry_kind(self) -> EntryKind {
        match self {
            LimitedKind::Topup => EntryKind::Topup,
            LimitedKind::Bonus => EntryKind::Bonus,
            LimitedKind::Spend => EntryKind::Spend,
            LimitedKind::Transfer => EntryKind::Transfer,
        }
    }

    /// The kind an entry counts as, if any: every kind but REVERSAL.
    pub fn of(kind: EntryKind) -> Option<LimitedKind> {
        LimitedKind::ALL
            .into_iter()
            .find(|limited| limited.entry_kind() == kind)
    }

    /// Whether the user counted is the entry's credited one (TOPUP, BONUS)
    /// rather than its debited one (SPEND, TRANSFER: what the user sent).
    pub fn counts_the_credited_user(self) -> bool {
        matches!(self, LimitedKind::Topup | LimitedKind::Bonus)
    }

    pub fn parse(raw: &str) -> Result<LimitedKind, ParseError> {
        LimitedKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == raw)
            .ok_or_else(|| ParseError::new("must be one of TOPUP, BONUS, SPEND, TRANSFER"))
    }
}

/// One cap: the amounts of one user's entries of `kind` made in the
/// trailing `window_seconds`, the new one included, may not pass `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limit {
    #[serde(rename = "type")]
    pub kind: LimitedKind,
    pub window_seconds: u32,
    pub max: i64,
}

impl Limit {
    pub fn new(kind: LimitedKind, window_seconds: u64, max: u64) -> Result<Limit, ParseError> {
        Ok(Limit {
            kind,
            window_seconds: parse_window_seconds(window_seconds)?,
            max: parse_limit_max(max)?,
        })
    }

    pub fn window_ms(&self) -> i64 {
        i64::from(self.window_seconds) * 1000
    }
}

pub fn parse_window_seconds(raw: u64) -> Result<u32, ParseError> {
    let (low, high) = LIMIT_WINDOW_SECONDS;
    if !(u64::from(low)..=u64::from(high)).contains(&raw) {
        return Err(ParseError::new(format!(
            "must be an integer from {low} to {high}"
        )));
    }
    Ok(raw as u32)
}

pub fn parse_limit_max(raw: u64) -> Result<i64, ParseError> {
    if !(1..=AMOUNT_MAX).contains(&raw) {
        return Err(ParseError::new(format!(
            "must be an integer from 1 to {AMOUNT_MAX}"
        )));
    }
    Ok(raw as i64)
}

/// A maximum balance: 0 (nothing may be credited) up to the largest
/// balance there is.
pub fn parse_max_balance(raw: u64) -> Result<i64, ParseError> {
    if raw > AMOUNT_MAX {
        return Err(ParseError::new(format!(
            "must be null or an integer from 0 to {AMOUNT_MAX}"
        )));
    }
    Ok(raw as i64)
}

/// A list of caps: at most `LIMITS_PER_RULE_SET_MAX`, no two of one type
/// and window. Problems are named per element (`limits[2]`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Limits(Vec<Limit>);

impl Limits {
    pub fn none() -> Limits {
        Limits(Vec::new())
    }

    /// `Err` holds every problem as (index or None for the list, message).
    pub fn parse(limits: Vec<Limit>) -> Result<Limits, Vec<(Option<usize>, String)>> {
        let mut problems = Vec::new();
        if limits.len() > LIMITS_PER_RULE_SET_MAX {
            problems.push((
                None,
                format!("must hold at most {LIMITS_PER_RULE_SET_MAX} limits"),
            ));
        }
        for (index, limit) in limits.iter().enumerate() {
            if limits[..index].iter().any(|earlier| {
                earlier.kind == limit.kind && earlier.window_seconds == limit.window_seconds
            }) {
                problems.push((
                    Some(index),
                    "repeats the type and windowSeconds of an earlier limit".to_owned(),
                ));
            }
        }
        if problems.is_empty() {
            Ok(Limits(limits))
        } else {
            Err(problems)
        }
    }

    pub fn as_slice(&self) -> &[Limit] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// As stored: compact JSON, as the API shows it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_else(|_| "[]".to_owned())
    }

    /// From what `to_json` stored; None when it is not that.
    pub fn from_json(text: &str) -> Option<Limits> {
        let limits: Vec<Limit> = serde_json::from_str(text).ok()?;
        let valid = limits.iter().all(|limit| {
            Limit::new(
                limit.kind,
                u64::from(limit.window_seconds),
                limit.max as u64,
            )
            .is_ok()
        });
        if !valid {
            return None;
        }
        Limits::parse(limits).ok()
    }
}

/// An asset's rules as stored. `updated_at_ms` is None until first set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssetRules {
    pub spend_order: SpendOrder,
    pub max_balance: Option<i64>,
    pub limits: Limits,
    pub updated_at_ms: Option<i64>,
}

/// A user's own values in one asset; a field that is None is not
/// overridden, so the asset's applies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserOverride {
    pub max_balance: Option<i64>,
    pub limits: Option<Limits>,
}

impl UserOverride {
    pub fn is_empty(&self) -> bool {
        self.max_balance.is_none() && self.limits.is_none()
    }
}

/// What one user may do in one asset: the override's fields where set,
/// the asset's otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RulesInForce {
    pub max_balance: Option<i64>,
    pub limits: Limits,
    pub overridden: bool,
    /// The asset's: a user has no spend order of its own.
    pub spend_order: SpendOrder,
}

impl RulesInForce {
    pub fn of(asset: &AssetRules, user: Option<&UserOverride>) -> RulesInForce {
        let user = user.filter(|user| !user.is_empty());
        RulesInForce {
            max_balance: match user.and_then(|user| user.max_balance) {
                Some(max) => Some(max),
                None => asset.max_balance,
            },
            limits: user
                .and_then(|user| user.limits.clone())
                .unwrap_or_else(|| asset.limits.clone()),
            overridden: user.is_some(),
            spend_order: asset.spend_order,
        }
    }

    /// Whether no rule binds: the common case, which reads nothing more.
    pub fn is_unbounded(&self) -> bool {
        self.max_balance.is_none() && self.limits.is_empty()
    }
}

/// One field of a change: left as it is, cleared, or set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FieldChange<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<T: Clone> FieldChange<T> {
    fn apply_to(&self, current: Option<T>) -> Option<T> {
        match self {
            FieldChange::Keep => current,
            FieldChange::Clear => None,
            FieldChange::Set(value) => Some(value.clone()),
        }
    }
}

/// `PUT /assets/{asset}/rules`: absent fields keep their values.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AssetRulesChange {
    pub spend_order: Option<SpendOrder>,
    pub max_balance: FieldChange<i64>,
    /// Clearing the limits leaves none.
    pub limits: FieldChange<Limits>,
}

impl AssetRulesChange {
    /// The rules once this change applies (the time left to the writer).
    pub fn applied_to(&self, current: &AssetRules) -> AssetRules {
        AssetRules {
            spend_order: self.spend_order.unwrap_or(current.spend_order),
            max_balance: self.max_balance.apply_to(current.max_balance),
            limits: self
                .limits
                .apply_to(Some(current.limits.clone()))
                .unwrap_or_default(),
            updated_at_ms: current.updated_at_ms,
        }
    }
}

/// `PUT /wallets/{userId}/rules`: absent fields keep the override's value,
/// null removes that field's override.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRulesChange {
    pub max_balance: FieldChange<i64>,
    pub limits: FieldChange<Limits>,
}

impl UserRulesChange {
    pub fn applied_to(&self, current: &UserOverride) -> UserOverride {
        UserOverride {
            max_balance: self.max_balance.apply_to(current.max_balance),
            limits: self.limits.apply_to(current.limits.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(kind: LimitedKind, window: u64, max: u64) -> Limit {
        Limit::new(kind, window, max).unwrap()
    }

    #[test]
    fn a_limit_is_refused_out_of_its_ranges() {
        assert!(Limit::new(LimitedKind::Spend, 59, 1).is_err());
        assert!(Limit::new(LimitedKind::Spend, 2_592_001, 1).is_err());
        assert!(Limit::new(LimitedKind::Spend, 60, 0).is_err());
        assert!(Limit::new(LimitedKind::Spend, 60, AMOUNT_MAX + 1).is_err());
        assert!(Limit::new(LimitedKind::Spend, 2_592_000, AMOUNT_MAX).is_ok());
    }

    #[test]
    fn limits_are_at_most_eight_and_never_repeat_a_type_and_window() {
        let nine = (0..9)
            .map(|index| limit(LimitedKind::Spend, 60 + index, 5))
            .collect();
        assert_eq!(Limits::parse(nine).unwrap_err().len(), 1);
        let repeated = vec![
            limit(LimitedKind::Spend, 60, 5),
            limit(LimitedKind::Topup, 60, 5),
            limit(LimitedKind::Spend, 60, 9),
        ];
        assert_eq!(Limits::parse(repeated).unwrap_err()[0].0, Some(2));
    }

    #[test]
    fn limits_go_to_json_and_back_as_the_api_shows_them() {
        let limits = Limits::parse(vec![limit(LimitedKind::Transfer, 86_400, 1000)]).unwrap();
        assert_eq!(
            limits.to_json(),
            r#"[{"type":"TRANSFER","windowSeconds":86400,"max":1000}]"#
        );
        assert_eq!(Limits::from_json(&limits.to_json()), Some(limits));
        assert_eq!(
            Limits::from_json(r#"[{"type":"SPEND","windowSeconds":1,"max":1}]"#),
            None
        );
    }

    #[test]
    fn an_override_replaces_the_assets_values_field_by_field() {
        let asset = AssetRules {
            max_balance: Some(5000),
            limits: Limits::parse(vec![limit(LimitedKind::Spend, 60, 10)]).unwrap(),
            ..AssetRules::default()
        };
        let only_max = UserOverride {
            max_balance: Some(100),
            limits: None,
        };
        let in_force = RulesInForce::of(&asset, Some(&only_max));
        assert_eq!(in_force.max_balance, Some(100));
        assert_eq!(in_force.limits, asset.limits);
        assert!(in_force.overridden);
        let no_limits = UserOverride {
            max_balance: None,
            limits: Some(Limits::none()),
        };
        let in_force = RulesInForce::of(&asset, Some(&no_limits));
        assert_eq!(in_force.max_balance, Some(5000));
        assert!(in_force.limits.is_empty());
        let none = RulesInForce::of(&asset, Some(&UserOverride::default()));
        assert!(!none.overridden);
    }

    #[test]
    fn a_change_keeps_what_it_does_not_name_and_clears_what_is_null() {
        let current = AssetRules {
            spend_order: SpendOrder::PaidFirst,
            max_balance: Some(7),
            limits: Limits::parse(vec![limit(LimitedKind::Bonus, 60, 3)]).unwrap(),
            updated_at_ms: Some(1),
        };
        assert_eq!(AssetRulesChange::default().applied_to(&current), current);
        let cleared = AssetRulesChange {
            max_balance: FieldChange::Clear,
            limits: FieldChange::Clear,
            ..AssetRulesChange::default()
        }
        .applied_to(&current);
        assert_eq!(cleared.max_balance, None);
        assert!(cleared.limits.is_empty());
        assert_eq!(cleared.spend_order, SpendOrder::PaidFirst);
        let user = UserRulesChange {
            max_balance: FieldChange::Set(9),
            limits: FieldChange::Keep,
        }
        .applied_to(&UserOverride::default());
        assert_eq!(user.max_balance, Some(9));
        assert_eq!(user.limits, None);
    }
}
