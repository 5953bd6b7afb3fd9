//! The rules routes of API.md, Limits: `PUT /assets/{asset}/rules`, and
//! `GET` and `PUT /wallets/{userId}/rules`. Bodies are parsed here into the
//! domain's changes (every problem named, `limits[2].max` and the like);
//! how a change merges into the rules in force is the domain's, and the
//! change is written through the store's writer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{Map, Value};

use super::auth::caller_still_allowed;
use super::body::{FieldErrors, JsonBody, JsonObject};
use super::envelope::ok;
use super::input::{
    path_user, refuse_any_query, refuse_unknown_fields, refuse_unknown_fields_named, required_text,
};
use super::json::{Asset, UserRulesJson};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::{AssetRulesRequest, UserRulesRequest};
use super::params::{AssetParam, UserIdParam};
use crate::domain::{
    parse_limit_max, parse_max_balance, parse_window_seconds, AssetRef, AssetRulesChange,
    FieldChange, Limit, LimitedKind, Limits, SpendOrder, UserRulesChange,
};
use crate::error::ApiError;
use crate::limits::LIMITS_PER_RULE_SET_MAX;
use crate::store::{RulesChange, RulesOutcome, Store};

/// API.md: PUT /assets/{asset}/rules
#[utoipa::path(put, path = "/assets/{asset}/rules", tag = "rules",
    summary = "Set an asset's spend order, maximum balance and limits",
    params(AssetParam), request_body = AssetRulesRequest,
    responses((status = 200, description = "The asset with its rules, in force for every \
        write applied after this answer, on every instance. A change that changes nothing \
        writes nothing.", body = Asset)))]
pub(super) async fn put_asset_rules(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let asset = request
        .match_info()
        .get("asset")
        .and_then(|raw| errors.check("asset", AssetRef::parse(raw)));
    let spend_order = match body.remove("spendOrder") {
        None => None,
        Some(Value::String(raw)) => errors.check("spendOrder", SpendOrder::parse(&raw)),
        Some(_) => {
            errors.push("spendOrder", "must be free-first or paid-first");
            None
        }
    };
    let max_balance = parse_max_balance_field(&mut body, &mut errors);
    // An asset's `null` limits are none at all.
    let limits = parse_limits_field(&mut body, &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let asset = asset.ok_or_else(super::input::validated_but_missing)?;
    let caller = caller_still_allowed(&request)?;
    let change = RulesChange::Asset {
        asset,
        change: AssetRulesChange {
            spend_order,
            max_balance,
            limits,
        },
    };
    match store.change_rules(change, caller).await? {
        RulesOutcome::Asset(row) => Ok(ok(Asset::from(row))),
        RulesOutcome::User(_) => Err(unexpected_outcome()),
    }
}

/// API.md: GET /wallets/{userId}/rules
#[utoipa::path(get, path = "/wallets/{userId}/rules", tag = "rules",
    summary = "The rules in force for a user, one row per asset",
    params(UserIdParam),
    responses((status = 200, description = "One row per asset, by symbol: the user's own \
        values where set (`override`), the asset's otherwise. Answered for any user, also one \
        with no account yet.", body = UserRulesJson)))]
pub(super) async fn get_user_rules(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    refuse_any_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let user = user.ok_or_else(super::input::validated_but_missing)?;
    Ok(ok(UserRulesJson::from(store.user_rules(&user)?)))
}

/// API.md: PUT /wallets/{userId}/rules
#[utoipa::path(put, path = "/wallets/{userId}/rules", tag = "rules",
    summary = "Set or remove a user's own maximum balance and limits in one asset",
    params(UserIdParam), request_body = UserRulesRequest,
    responses((status = 200, description = "The rules in force for the user, as `GET` answers \
        them. A change that changes nothing writes nothing.", body = UserRulesJson)))]
pub(super) async fn put_user_rules(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let user = path_user(&request, &mut errors);
    let asset = required_text(&mut body, "asset", AssetRef::parse, &mut errors);
    let max_balance = parse_max_balance_field(&mut body, &mut errors);
    let limits = parse_limits_field(&mut body, &mut errors);
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(user), Some(asset)) = (user, asset) else {
        return Err(super::input::validated_but_missing());
    };
    let caller = caller_still_allowed(&request)?;
    let change = RulesChange::User {
        user,
        asset,
        change: UserRulesChange {
            max_balance,
            limits,
        },
    };
    match store.change_rules(change, caller).await? {
        RulesOutcome::User(listing) => Ok(ok(UserRulesJson::from(listing))),
        RulesOutcome::Asset(_) => Err(unexpected_outcome()),
    }
}

fn unexpected_outcome() -> ApiError {
    ApiError::Internal(anyhow::anyhow!(
        "a change of rules answered for the other kind of rules"
    ))
}

/// `maxBalance`: absent keeps it, `null` clears it, else 0 to 2^53 - 1.
fn parse_max_balance_field(
    body: &mut Map<String, Value>,
    errors: &mut FieldErrors,
) -> FieldChange<i64> {
    match body.remove("maxBalance") {
        None => FieldChange::Keep,
        Some(Value::Null) => FieldChange::Clear,
        Some(Value::Number(number)) => match number
            .as_u64()
            .ok_or(())
            .and_then(|raw| parse_max_balance(raw).map_err(|_| ()))
        {
            Ok(max) => FieldChange::Set(max),
            Err(()) => {
                errors.push("maxBalance", max_balance_message());
                FieldChange::Keep
            }
        },
        Some(_) => {
            errors.push("maxBalance", max_balance_message());
            FieldChange::Keep
        }
    }
}

fn max_balance_message() -> String {
    format!(
        "must be null or an integer from 0 to {}",
        crate::limits::AMOUNT_MAX
    )
}

/// `limits`: absent keeps them, `null` clears them (for a user: removes
/// the override), else a list of at most `LIMITS_PER_RULE_SET_MAX`, each
/// problem named by its place (`limits[2].windowSeconds`).
fn parse_limits_field(
    body: &mut Map<String, Value>,
    errors: &mut FieldErrors,
) -> FieldChange<Limits> {
    let items = match body.remove("limits") {
        None => return FieldChange::Keep,
        Some(Value::Null) => return FieldChange::Clear,
        Some(Value::Array(items)) => items,
        Some(_) => {
            errors.push("limits", "must be null or an array of limits");
            return FieldChange::Keep;
        }
    };
    if items.len() > LIMITS_PER_RULE_SET_MAX {
        errors.push(
            "limits",
            format!("must hold at most {LIMITS_PER_RULE_SET_MAX} limits"),
        );
        return FieldChange::Keep;
    }
    let problems_before = errors.len();
    let mut limits = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let field = format!("limits[{index}]");
        let Value::Object(mut item) = item else {
            errors.push(&field, "must be an object with type, windowSeconds and max");
            continue;
        };
        let kind = match item.remove("type") {
            Some(Value::String(raw)) => {
                errors.check(&format!("{field}.type"), LimitedKind::parse(&raw))
            }
            None | Some(Value::Null) => {
                errors.push(&format!("{field}.type"), "is required");
                None
            }
            Some(_) => {
                errors.push(
                    &format!("{field}.type"),
                    "must be one of TOPUP, BONUS, SPEND, TRANSFER",
                );
                None
            }
        };
        let window = whole_number(&mut item, &field, "windowSeconds", errors, |raw| {
            parse_window_seconds(raw).map(u64::from)
        });
        let max = whole_number(&mut item, &field, "max", errors, |raw| {
            parse_limit_max(raw).map(|max| max as u64)
        });
        refuse_unknown_fields_named(&item, &format!("{field}."), errors);
        if let (Some(kind), Some(window), Some(max)) = (kind, window, max) {
            match Limit::new(kind, window, max) {
                Ok(limit) => limits.push(limit),
                Err(error) => errors.push(&field, error.0),
            }
        }
    }
    if errors.len() > problems_before {
        return FieldChange::Keep;
    }
    match Limits::parse(limits) {
        Ok(limits) => FieldChange::Set(limits),
        Err(problems) => {
            for (index, message) in problems {
                match index {
                    Some(index) => errors.push(&format!("limits[{index}]"), message),
                    None => errors.push("limits", message),
                }
            }
            FieldChange::Keep
        }
    }
}

/// A required whole number of a limit, checked by `parse`.
fn whole_number(
    item: &mut Map<String, Value>,
    field: &str,
    name: &str,
    errors: &mut FieldErrors,
    parse: impl Fn(u64) -> Result<u64, crate::domain::ParseError>,
) -> Option<u64> {
    let named = format!("{field}.{name}");
    match item.remove(name) {
        None | Some(Value::Null) => {
            errors.push(&named, "is required");
            None
        }
        Some(Value::Number(number)) => match number.as_u64() {
            Some(raw) => errors.check(&named, parse(raw)),
            None => {
                // The range is in the message of any value out of it.
                let message = parse(0).err().map(|error| error.0).unwrap_or_default();
                errors.push(&named, message);
                None
            }
        },
        Some(_) => {
            let message = parse(0).err().map(|error| error.0).unwrap_or_default();
            errors.push(&named, message);
            None
        }
    }
}
