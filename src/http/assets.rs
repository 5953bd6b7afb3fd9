//! The asset routes of API.md: `GET /assets`, `POST /assets` (an asset type
//! and its Treasury) and `GET /assets/{asset}/supply`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::Value;

use super::auth::caller_still_allowed;
use super::body::{FieldErrors, JsonBody, JsonObject};
use super::envelope::{ok, success};
use super::input::{parse_at_query, refuse_unknown_fields, required_text, validated_but_missing};
#[allow(unused_imports)] // Named only by the OpenAPI attributes.
use super::json::AssetRequest;
use super::json::{Asset, SupplyJson};
use super::params::{AssetParam, SupplyParams};
use crate::domain::{AssetDecimals, AssetName, AssetRef, AssetSymbol};
use crate::error::ApiError;
use crate::ledger::engine::NewAsset;
use crate::store::{AssetOutcome, Store};

/// API.md: GET /assets
#[utoipa::path(get, path = "/assets", tag = "ledger",
    summary = "The asset types, ordered by symbol",
    responses((status = 200, description = "Every asset type.", body = Vec<Asset>)))]
pub(super) async fn get_assets(store: web::Data<Store>) -> Result<HttpResponse, ApiError> {
    let rows = store.assets()?;
    Ok(ok(rows.into_iter().map(Asset::from).collect::<Vec<_>>()))
}

/// API.md: POST /assets
#[utoipa::path(post, path = "/assets", tag = "ledger",
    summary = "Create an asset type and its Treasury",
    request_body = AssetRequest,
    responses(
        (status = 201, description = "Created.", body = Asset),
        (status = 200, description = "An asset with this symbol, name and decimals exists already; \
            nothing written.", body = Asset)))]
pub(super) async fn post_assets(
    request: HttpRequest,
    JsonBody(mut body): JsonObject,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let symbol = required_text(&mut body, "symbol", AssetSymbol::parse, &mut errors);
    let name = required_text(&mut body, "name", AssetName::parse, &mut errors);
    let decimals = match body.remove("decimals") {
        None | Some(Value::Null) => Some(AssetDecimals::default()),
        Some(Value::Number(number)) => match number.as_u64() {
            Some(raw) => errors.check("decimals", AssetDecimals::parse(raw)),
            None => {
                errors.push("decimals", "must be an integer from 0 to 18");
                None
            }
        },
        Some(_) => {
            errors.push("decimals", "must be an integer from 0 to 18");
            None
        }
    };
    refuse_unknown_fields(&body, &mut errors);
    errors.into_result()?;
    let (Some(symbol), Some(name), Some(decimals)) = (symbol, name, decimals) else {
        return Err(validated_but_missing());
    };
    caller_still_allowed(&request)?;
    let outcome = store
        .create_asset(NewAsset {
            symbol,
            name,
            decimals,
        })
        .await?;
    Ok(match outcome {
        AssetOutcome::Created(row) => success(StatusCode::CREATED, Asset::from(row)),
        AssetOutcome::AlreadyTheSame(row) => ok(Asset::from(row)),
    })
}

/// API.md: GET /assets/{asset}/supply?at=
#[utoipa::path(get, path = "/assets/{asset}/supply", tag = "ledger",
    summary = "An asset's supply: outstanding, paid, free, held, holders, and totals ever; now or at an instant",
    params(AssetParam, SupplyParams),
    responses((status = 200, description = "The asset's figures, read in O(log n); at an instant, without held and holders.",
        body = SupplyJson)))]
pub(super) async fn get_supply(
    request: HttpRequest,
    store: web::Data<Store>,
) -> Result<HttpResponse, ApiError> {
    let mut errors = FieldErrors::default();
    let asset = request
        .match_info()
        .get("asset")
        .and_then(|raw| errors.check("asset", AssetRef::parse(raw)));
    let at = parse_at_query(request.query_string(), &mut errors);
    errors.into_result()?;
    let asset = asset.ok_or_else(validated_but_missing)?;
    Ok(ok(match at {
        None => SupplyJson::from(store.supply(&asset)?),
        Some(at_ms) => SupplyJson::as_it_stood(store.supply_as_of(&asset, at_ms)?),
    }))
}
