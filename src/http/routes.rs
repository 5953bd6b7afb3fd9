//! The route table of API.md: every route declared once, with what it asks
//! of its callers and the handler that answers it, and the answers for a
//! path no route has (404) and a method a path does not answer (405). The
//! handlers live in one file per resource; only `mod.rs` imports this one.

use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{web, HttpRequest, HttpResponse};

use super::assets::{get_assets, get_supply, post_assets};
use super::auth::{authorize, ResourceMethods, RouteAccess};
use super::batch::post_batch;
use super::console::{get_console, get_console_api_script, get_console_script, get_console_style};
use super::events::get_events;
use super::holds::{get_hold, get_holds, post_capture, post_hold, post_void};
use super::keys::{get_keys, post_keys, post_revoke};
use super::openapi::{get_openapi, RouteAccessTable};
use super::rules::{get_user_rules, put_asset_rules, put_user_rules};
use super::service::{get_health, get_metrics};
use super::transactions::{get_transaction, post_reverse};
use super::wallets::{
    get_balance, get_transactions, post_bonus, post_spend, post_topup, post_transfer,
};
use crate::domain::Scope;
use crate::error::ApiError;

/// Declares every route once: the server registers exactly these, and
/// `ROUTES` lists them for the OpenAPI document's check against them. One
/// resource per path, answering its methods (and HEAD on a GET) and 405
/// with `Allow` to the others.
macro_rules! routes {
    ($($path:literal => [$($method:ident $access:expr => $handler:ident),+ $(,)?],)+) => {
        /// Every (method, path) the service serves, the path in OpenAPI's form.
        pub const ROUTES: &[(&str, &str)] = &[$($((stringify!($method), $path),)+)+];

        /// What each route of `ROUTES` asks of its callers, for the document.
        pub const ROUTE_ACCESS: &[(&str, &str, RouteAccess)] =
            &[$($((stringify!($method), $path, $access),)+)+];

        pub fn routes(config: &mut web::ServiceConfig) {
            // For `GET /openapi.json`: the document names each route's
            // access from this table, which `openapi.rs` cannot import.
            config.app_data(RouteAccessTable(ROUTE_ACCESS));
            $({
                const METHODS: ResourceMethods = ResourceMethods {
                    pattern: $path,
                    methods: &[$((stringify!($method), $access),)+],
                };
                let mut routes = Vec::new();
                $(
                    routes.push(web::$method().to($handler));
                    if stringify!($method) == "get" {
                        // API.md: HEAD on every GET route; actix-http sends
                        // the head of the GET answer without its body.
                        routes.push(web::head().to($handler));
                    }
                )+
                config.service(resource($path, METHODS, routes));
            })+
        }
    };
}

routes! {
    "/health" => [get RouteAccess::Open => get_health],
    "/assets" => [
        get RouteAccess::Needs(Scope::Read) => get_assets,
        post RouteAccess::Needs(Scope::Admin) => post_assets,
    ],
    "/wallets/{userId}/balance" => [get RouteAccess::Needs(Scope::Read) => get_balance],
    "/wallets/{userId}/transactions" => [get RouteAccess::Needs(Scope::Read) => get_transactions],
    "/wallets/{userId}/topup" => [post RouteAccess::Needs(Scope::Grant) => post_topup],
    "/wallets/{userId}/bonus" => [post RouteAccess::Needs(Scope::Grant) => post_bonus],
    "/wallets/{userId}/spend" => [post RouteAccess::Needs(Scope::Spend) => post_spend],
    "/wallets/{userId}/transfer" => [post RouteAccess::Needs(Scope::Spend) => post_transfer],
    "/transactions/{id}" => [get RouteAccess::Needs(Scope::Read) => get_transaction],
    "/transactions/{id}/reverse" => [post RouteAccess::Needs(Scope::Grant) => post_reverse],
    "/batch" => [post RouteAccess::NeedsPerOperation => post_batch],
    "/assets/{asset}/supply" => [get RouteAccess::Needs(Scope::Read) => get_supply],
    "/assets/{asset}/rules" => [put RouteAccess::Needs(Scope::Admin) => put_asset_rules],
    "/wallets/{userId}/rules" => [
        get RouteAccess::Needs(Scope::Read) => get_user_rules,
        put RouteAccess::Needs(Scope::Admin) => put_user_rules,
    ],
    "/events" => [get RouteAccess::Needs(Scope::Read) => get_events],
    "/metrics" => [get RouteAccess::OpenOnLoopback(Scope::Admin) => get_metrics],
    "/wallets/{userId}/holds" => [
        get RouteAccess::Needs(Scope::Read) => get_holds,
        post RouteAccess::Needs(Scope::Spend) => post_hold,
    ],
    "/holds/{holdId}" => [get RouteAccess::Needs(Scope::Read) => get_hold],
    "/holds/{holdId}/capture" => [post RouteAccess::Needs(Scope::Spend) => post_capture],
    "/holds/{holdId}/void" => [post RouteAccess::Needs(Scope::Spend) => post_void],
    "/openapi.json" => [get RouteAccess::Open => get_openapi],
    "/keys" => [
        get RouteAccess::Needs(Scope::Admin) => get_keys,
        post RouteAccess::Needs(Scope::Admin) => post_keys,
    ],
    "/keys/{name}/revoke" => [post RouteAccess::Needs(Scope::Admin) => post_revoke],
    // API.md: the console's page (and its files) needs no key; each call it
    // makes to the routes above sends the operator's key.
    "/console" => [get RouteAccess::Open => get_console],
    "/console/console.css" => [get RouteAccess::Open => get_console_style],
    "/console/api.js" => [get RouteAccess::Open => get_console_api_script],
    "/console/console.js" => [get RouteAccess::Open => get_console_script],
}

/// A resource answering `methods` and 405 in the envelope with `Allow` to
/// the others, behind the access check. A wrong method is answered 405
/// before any key is looked at.
fn resource(
    path: &str,
    methods: ResourceMethods,
    routes: Vec<actix_web::Route>,
) -> impl actix_web::dev::HttpServiceFactory {
    let resource = routes
        .into_iter()
        .fold(web::resource(path).app_data(methods), |resource, route| {
            resource.route(route)
        });
    resource
        .default_service(web::to(method_not_allowed))
        .wrap(from_fn(authorize))
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}

async fn method_not_allowed(request: HttpRequest) -> HttpResponse {
    let mut response = actix_web::ResponseError::error_response(&ApiError::MethodNotAllowed);
    if let Some(methods) = request.app_data::<ResourceMethods>() {
        if let Ok(allow) = header::HeaderValue::from_str(&methods.allow()) {
            response.headers_mut().insert(header::ALLOW, allow);
        }
    }
    response
}
