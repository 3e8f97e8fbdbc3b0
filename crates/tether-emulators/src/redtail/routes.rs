//! Redtail's HTTP surface under `/api/public/v1`: authentication, contacts (list, one, search),
//! opportunities (list, one) and activities (by date range), plus the call counter and fault
//! injection that wrap every route.
//!
//! Lists paginate with `?page=N` from 1, 50 a page, and answer an empty list past the end.
//! Handlers must never panic on input: bad values get Redtail's `{"message"}` body.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Value, json};

use super::data::Dataset;
use super::{RedtailFault, Shared, auth, lock};
use crate::html;
use crate::http_util::{first, query_pairs};
use crate::seed_data;

/// Records a page holds.
const PAGE_SIZE: usize = 50;

/// What every handler gets.
#[derive(Clone)]
struct AppState {
    shared: Shared,
    data: Arc<Dataset>,
}

/// The emulator's router: everything nested under `/api/public/v1`.
pub(crate) fn router(shared: Shared, data: Arc<Dataset>) -> Router {
    let state = AppState { shared, data };
    let api = Router::new()
        .route("/authentication", get(authentication))
        .route("/contacts", get(list_contacts))
        .route("/contacts/search", get(search_contacts))
        .route("/contacts/{id}", get(get_contact))
        .route("/opportunities", get(list_opportunities))
        .route("/opportunities/{id}", get(get_opportunity))
        .route("/activities", get(list_activities))
        .fallback(|| async { auth::message(StatusCode::NOT_FOUND, "Not Found") })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_and_fault,
        ))
        .with_state(state);
    Router::new().nest("/api/public/v1", api)
}

/// Counts the call, then applies the injected fault if any.
async fn count_and_fault(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let fault = {
        let mut shared = lock(&state.shared);
        shared.calls += 1;
        shared.fault.clone()
    };
    match fault {
        Some(RedtailFault::ServerError) => {
            auth::message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Some(RedtailFault::HtmlPage) => html::bad_gateway_page(),
        Some(RedtailFault::Delay(duration)) => {
            tokio::time::sleep(duration).await;
            next.run(request).await
        }
        None => next.run(request).await,
    }
}

/// Runs the UserKeyAuth check; `Err` is the 401 to send.
fn require_user_key(state: &AppState, headers: &HeaderMap) -> Result<(), Response> {
    let shared = lock(&state.shared);
    auth::authenticate_user_key(&shared.config, headers).map(|_| ())
}

/// `GET /authentication`: exchanges API key + username + password for the user key.
async fn authentication(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let (result, flat) = {
        let shared = lock(&state.shared);
        (
            auth::authenticate_password(&shared.config, &headers),
            shared.flat_auth_response,
        )
    };
    let user = match result {
        Ok(user) => user,
        Err(response) => return response,
    };
    let inner = json!({
        "user_key": user.user_key,
        "redtail_database_id": user.database_id,
        "redtail_user_id": user.user_id,
    });
    if flat {
        Json(inner).into_response()
    } else {
        Json(json!({ "authenticated_user": inner })).into_response()
    }
}

/// The `?page=` parameter: absent means 1; anything but a positive integer is a 422.
fn page_number(pairs: &[(String, String)]) -> Result<usize, Response> {
    match first(pairs, "page") {
        None => Ok(1),
        Some(text) => match text.parse::<usize>() {
            Ok(page) if page >= 1 => Ok(page),
            _ => Err(auth::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "page must be a positive integer",
            )),
        },
    }
}

/// One page of `items` as `{"<key>": [...], "meta": {"total_records", "total_pages"}}`.
fn page_of<T: Serialize>(key: &str, items: &[&T], page: usize) -> Response {
    let total_records = items.len();
    let total_pages = total_records.div_ceil(PAGE_SIZE);
    let start = (page - 1).saturating_mul(PAGE_SIZE);
    let slice: Vec<&&T> = items.iter().skip(start).take(PAGE_SIZE).collect();
    let mut body = serde_json::Map::new();
    body.insert(key.to_owned(), json!(slice));
    body.insert(
        "meta".to_owned(),
        json!({ "total_records": total_records, "total_pages": total_pages }),
    );
    Json(Value::Object(body)).into_response()
}

fn not_found(what: &str) -> Response {
    auth::message(StatusCode::NOT_FOUND, &[what, " not found"].concat())
}

async fn list_contacts(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    let pairs = query_pairs(raw.as_deref());
    let page = match page_number(&pairs) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let all: Vec<_> = state.data.contacts.iter().collect();
    page_of("contacts", &all, page)
}

/// `GET /contacts/search?name=&email=`: case-insensitive substring matches, all given
/// criteria must hold.
async fn search_contacts(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    let pairs = query_pairs(raw.as_deref());
    let page = match page_number(&pairs) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let criterion = |name: &str| {
        first(&pairs, name)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_lowercase)
    };
    let name = criterion("name");
    let email = criterion("email");
    if name.is_none() && email.is_none() {
        return auth::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "At least one search parameter (name, email) is required",
        );
    }
    let found: Vec<_> = state
        .data
        .contacts
        .iter()
        .filter(|c| {
            name.as_ref()
                .is_none_or(|n| c.full_name.to_lowercase().contains(n.as_str()))
        })
        .filter(|c| {
            email.as_ref().is_none_or(|e| {
                c.emails
                    .iter()
                    .any(|m| m.address.to_lowercase().contains(e.as_str()))
            })
        })
        .collect();
    page_of("contacts", &found, page)
}

async fn get_contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    one_record(&state.data.contacts, &id, |c| c.id, "contact", "Contact")
}

async fn list_opportunities(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    let pairs = query_pairs(raw.as_deref());
    let page = match page_number(&pairs) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let all: Vec<_> = state.data.opportunities.iter().collect();
    page_of("opportunities", &all, page)
}

async fn get_opportunity(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    one_record(
        &state.data.opportunities,
        &id,
        |o| o.id,
        "opportunity",
        "Opportunity",
    )
}

/// `{"<key>": record}` for the record with this numeric id, or Redtail's 404.
fn one_record<T: Serialize>(
    records: &[T],
    id: &str,
    id_of: impl Fn(&T) -> i64,
    key: &str,
    what: &str,
) -> Response {
    let found = id
        .parse::<i64>()
        .ok()
        .and_then(|id| records.iter().find(|r| id_of(r) == id));
    match found {
        Some(record) => {
            let mut body = serde_json::Map::new();
            body.insert(key.to_owned(), json!(record));
            Json(Value::Object(body)).into_response()
        }
        None => not_found(what),
    }
}

/// `GET /activities?start_date=YYYY-MM-DD&end_date=YYYY-MM-DD` (both optional, inclusive).
async fn list_activities(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = require_user_key(&state, &headers) {
        return response;
    }
    let pairs = query_pairs(raw.as_deref());
    let page = match page_number(&pairs) {
        Ok(page) => page,
        Err(response) => return response,
    };
    let date = |name: &str| match first(&pairs, name) {
        None => Ok(None),
        Some(text) => seed_data::parse_date(text).map(Some).ok_or_else(|| {
            auth::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                &[name, " must be a date in YYYY-MM-DD format"].concat(),
            )
        }),
    };
    let (start, end) = match (date("start_date"), date("end_date")) {
        (Ok(start), Ok(end)) => (start, end),
        (Err(response), _) | (_, Err(response)) => return response,
    };
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        return auth::message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "start_date must not be after end_date",
        );
    }
    let found: Vec<_> = state
        .data
        .activities
        .iter()
        .filter(|a| start.is_none_or(|s| a.day >= s) && end.is_none_or(|e| a.day <= e))
        .collect();
    page_of("activities", &found, page)
}
