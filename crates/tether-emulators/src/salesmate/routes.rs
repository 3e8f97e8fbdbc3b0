//! Salesmate's HTTP surface: deal and contact search, fetch by id, deal creation, and the
//! active-users probe, all behind [`gate`](super::gate).
//!
//! Validation failures answer HTTP 200 with a `ValidationError` failure body, as the real API
//! does. Handlers must never panic on input and only read the account named by [`Link`].

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post};
use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::data::summary;
use super::gate::{Link, gate};
use super::{Shared, lock, reply, search};
use crate::http_util::{first, query_pairs};
use crate::seed_data;

/// Rows a search returns when `rows` is absent.
const DEFAULT_ROWS: usize = 25;
/// Most rows one search may return; larger requests are clamped.
const MAX_ROWS: usize = 250;

/// The emulator's router.
pub(crate) fn router(shared: Shared) -> Router {
    Router::new()
        .route("/apis/deal/v4/search", post(search_deals))
        .route("/apis/contact/v4/search", post(search_contacts))
        .route("/apis/deal/v4", post(create_deal))
        .route("/apis/deal/v4/{id}", get(get_deal))
        .route("/apis/contact/v4/{id}", get(get_contact))
        .route("/apis/core/v4/users", get(list_users))
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

/// Which collection a handler works on.
#[derive(Clone, Copy)]
enum Module {
    Deal,
    Contact,
}

impl Module {
    fn prefix(self) -> &'static str {
        match self {
            Module::Deal => "deal.",
            Module::Contact => "contact.",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Module::Deal => "Deal",
            Module::Contact => "Contact",
        }
    }
}

/// Reads `?rows=&from=`; `Err` is the validation failure to send.
fn paging(raw: Option<&str>) -> Result<(usize, usize), Response> {
    let pairs = query_pairs(raw);
    let rows = match first(&pairs, "rows") {
        None => DEFAULT_ROWS,
        Some(text) => match text.parse::<usize>() {
            Ok(rows) if rows >= 1 => rows.min(MAX_ROWS),
            _ => return Err(reply::validation_error("rows must be a positive integer")),
        },
    };
    let from = match first(&pairs, "from") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .map_err(|_| reply::validation_error("from must be a non-negative integer"))?,
    };
    Ok((rows, from))
}

/// The body as a JSON object; an empty body counts as `{}`.
fn json_object(body: &[u8]) -> Result<Map<String, Value>, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(object)) => Ok(object),
        _ => Err(reply::validation_error(
            "The request body must be a JSON object",
        )),
    }
}

async fn run_search(
    shared: Shared,
    link: Link,
    raw: Option<String>,
    body: Bytes,
    module: Module,
) -> Response {
    let (rows, from) = match paging(raw.as_deref()) {
        Ok(paging) => paging,
        Err(response) => return response,
    };
    let query = match json_object(&body) {
        Ok(object) => Value::Object(object),
        Err(response) => return response,
    };
    let state = lock(&shared);
    let Some(account) = state.accounts.get(&link.0) else {
        return reply::lowercase_failure(StatusCode::NOT_FOUND, "NoSuchLinkExist");
    };
    let records = match module {
        Module::Deal => &account.deals,
        Module::Contact => &account.contacts,
    };
    reply::success(search::run(records, module.prefix(), &query, rows, from))
}

async fn search_deals(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    run_search(shared, link, raw, body, Module::Deal).await
}

async fn search_contacts(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    run_search(shared, link, raw, body, Module::Contact).await
}

fn get_record(shared: &Shared, link: &Link, id: &str, module: Module) -> Response {
    let state = lock(shared);
    let Some(account) = state.accounts.get(&link.0) else {
        return reply::lowercase_failure(StatusCode::NOT_FOUND, "NoSuchLinkExist");
    };
    let records = match module {
        Module::Deal => &account.deals,
        Module::Contact => &account.contacts,
    };
    let found = id.parse::<i64>().ok().and_then(|id| {
        records
            .iter()
            .find(|record| record.get("id").and_then(Value::as_i64) == Some(id))
    });
    match found {
        Some(record) => reply::success(record.clone()),
        None => reply::failure(
            StatusCode::NOT_FOUND,
            "4004",
            "RecordNotFound",
            &[module.label(), " not found"].concat(),
        ),
    }
}

async fn get_deal(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    Path(id): Path<String>,
) -> Response {
    get_record(&shared, &link, &id, Module::Deal)
}

async fn get_contact(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    Path(id): Path<String>,
) -> Response {
    get_record(&shared, &link, &id, Module::Contact)
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`, for records created at runtime.
fn now_timestamp() -> String {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    let days = i64::try_from(seconds / 86_400).unwrap_or(0);
    seed_data::datetime_string(days, seconds % 86_400)
}

/// `POST /apis/deal/v4`: requires a `title`; answers `{"Status":"success","Data":{"id":N}}`.
async fn create_deal(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    body: Bytes,
) -> Response {
    let fields = match json_object(&body) {
        Ok(fields) => fields,
        Err(response) => return response,
    };
    let title = match fields.get("title") {
        Some(Value::String(title)) if !title.trim().is_empty() => title.clone(),
        _ => return reply::validation_error("title is required"),
    };
    let deal_value = match fields.get("dealValue") {
        None | Some(Value::Null) => Value::from(0),
        Some(Value::Number(n)) => Value::Number(n.clone()),
        Some(Value::String(s)) => match s.parse::<f64>() {
            Ok(n) => Value::from(n),
            Err(_) => return reply::validation_error("dealValue must be a number"),
        },
        Some(_) => return reply::validation_error("dealValue must be a number"),
    };
    let text_field = |name: &str, default: &str| -> Result<Value, Response> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(Value::from(default)),
            Some(Value::String(s)) => Ok(Value::from(s.clone())),
            Some(_) => Err(reply::validation_error(
                &[name, " must be a string"].concat(),
            )),
        }
    };
    let (currency, status, stage, pipeline) = match (
        text_field("currency", "USD"),
        text_field("status", "Open"),
        text_field("stage", "New"),
        text_field("pipeline", "Sales"),
    ) {
        (Ok(c), Ok(s), Ok(st), Ok(p)) => (c, s, st, p),
        (Err(r), ..) | (_, Err(r), ..) | (_, _, Err(r), _) | (_, _, _, Err(r)) => return r,
    };
    let related_id = |name: &str| -> Result<Option<i64>, Response> {
        match fields.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value
                .as_i64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .map(Some)
                .ok_or_else(|| reply::validation_error(&[name, " must be an id"].concat())),
        }
    };
    let (contact_id, owner_id) = match (related_id("primaryContact"), related_id("owner")) {
        (Ok(c), Ok(o)) => (c, o),
        (Err(r), _) | (_, Err(r)) => return r,
    };

    let mut state = lock(&shared);
    let Some(account) = state.accounts.get_mut(&link.0) else {
        return reply::lowercase_failure(StatusCode::NOT_FOUND, "NoSuchLinkExist");
    };
    let by_id = |records: &[Value], id: Option<i64>| {
        id.and_then(|id| {
            records
                .iter()
                .find(|r| r.get("id").and_then(Value::as_i64) == Some(id))
        })
        .map_or(Value::Null, summary)
    };
    let primary_contact = by_id(&account.contacts, contact_id);
    let owner = match by_id(&account.users, owner_id) {
        Value::Null => account.users.first().map_or(Value::Null, summary),
        owner => owner,
    };
    let id = account
        .deals
        .iter()
        .filter_map(|d| d.get("id").and_then(Value::as_i64))
        .max()
        .unwrap_or(0)
        + 1;
    let now = now_timestamp();
    account.deals.push(json!({
        "id": id,
        "title": title,
        "dealValue": deal_value,
        "currency": currency,
        "status": status,
        "stage": stage,
        "pipeline": pipeline,
        "priority": "Medium",
        "Owner": owner,
        "PrimaryContact": primary_contact,
        "createdAt": now,
        "lastModifiedAt": now,
    }));
    state.created_deals += 1;
    reply::success(json!({ "id": id }))
}

/// `GET /apis/core/v4/users?status=active`: the probe a connection check uses.
async fn list_users(
    State(shared): State<Shared>,
    Extension(link): Extension<Link>,
    RawQuery(raw): RawQuery,
) -> Response {
    let pairs = query_pairs(raw.as_deref());
    let status = first(&pairs, "status").map(str::to_ascii_lowercase);
    let state = lock(&shared);
    let Some(account) = state.accounts.get(&link.0) else {
        return reply::lowercase_failure(StatusCode::NOT_FOUND, "NoSuchLinkExist");
    };
    let users: Vec<Value> = account
        .users
        .iter()
        .filter(|user| {
            status
                .as_deref()
                .is_none_or(|wanted| user.get("status").and_then(Value::as_str) == Some(wanted))
        })
        .cloned()
        .collect();
    let total = users.len();
    reply::success(json!({ "data": users, "totalRows": total, "totalPages": 1 }))
}
