//! The MCP tools: `list_connections` and `crm_request`. Both see only the principal's end
//! user and integrations; a connection outside them is "not found", the same answer as an id
//! that does not exist, so a token never learns that another user's connection is there.
//! `crm_request` goes through the proxy in-process (`proxy::forward_in_process`): refresh,
//! path confinement, the provider's budget, the operator's budgets and retries all apply.
//! Each call is written to the connection's history (who, tool, method, path, status,
//! duration; never a body, a query or a token) and counted per tool and outcome.

use std::time::Instant;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, Response, header};
use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Map, Value, json};
use tether_core::ids::ConnectionId;
use tether_store::{AgentAccess, ConnectionFilter, HistoryEntry, Store, history_kind};

use super::mcp::tool_error;
use super::principal::Principal;
use crate::http::error::ApiError;
use crate::proxy::{InProcessCall, forward_in_process};
use crate::state::AppState;

/// Characters escaped in a path segment the model wrote: what a URL path cannot hold as is.
/// `%` is kept, so a segment the model already encoded stays as it was.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^');

/// The provider's response headers handed to the model: the type, and what says when to
/// come back (rate limits).
fn selected_header(name: &str) -> bool {
    name == "content-type"
        || name == "retry-after"
        || name.starts_with("x-ratelimit")
        || name.starts_with("ratelimit")
        || name.starts_with("x-rate-limit")
}

/// Most connections `list_connections` answers.
const LIST_LIMIT: u32 = 1000;

pub async fn list_connections<S: Store>(
    state: &AppState<S>,
    principal: &Principal,
) -> CallToolResult {
    let result = list(state, principal).await;
    match result {
        Ok(value) => {
            state.metrics.mcp_tool_call("list_connections", "ok");
            CallToolResult::structured(value)
        }
        Err(err) => {
            state.metrics.mcp_tool_call("list_connections", "failed");
            gateway_error(err)
        }
    }
}

async fn list<S: Store>(state: &AppState<S>, principal: &Principal) -> Result<Value, ApiError> {
    let rows = state
        .store
        .list_connections(&ConnectionFilter {
            end_user_id: Some(principal.end_user_id.clone()),
            integration: None,
            status: None,
            limit: LIST_LIMIT,
        })
        .await?;
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|row| principal.reaches(&row.integration))
        .collect();
    let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
    let lifecycles = state.store.connection_lifecycles(&ids).await?;
    let connections: Vec<Value> = rows
        .iter()
        .map(|row| {
            let account = lifecycles
                .iter()
                .find(|l| l.id == row.id)
                .and_then(|l| l.account.as_ref())
                .map(|a| {
                    json!({
                        "label": a.label,
                        "user_id": a.user_id,
                        "organization_id": a.organization_id,
                    })
                });
            let provider = state
                .integration(&row.integration)
                .map(|i| i.provider.display_name.clone());
            json!({
                "id": row.id,
                "integration": row.integration,
                "provider": provider,
                "status": row.status.as_str(),
                "account": account,
            })
        })
        .collect();
    Ok(json!({ "connections": connections }))
}

/// The arguments of `crm_request`, read from the model's JSON.
struct Arguments {
    connection_id: String,
    method: Method,
    path: String,
    query: Option<String>,
    body: Option<Bytes>,
}

fn arguments(mut args: JsonObject) -> Result<Arguments, String> {
    let text = |args: &mut JsonObject, name: &str| match args.remove(name) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(format!("{name} must be a string")),
        None => Err(format!("{name} is required")),
    };
    let connection_id = text(&mut args, "connection_id")?;
    let method = text(&mut args, "method")?.to_ascii_uppercase();
    let method = Method::from_bytes(method.as_bytes())
        .map_err(|_| "method must be an HTTP method such as GET or POST".to_owned())?;
    let path = text(&mut args, "path")?;
    let query = match args.remove("query") {
        None | Some(Value::Null) => None,
        Some(Value::Object(pairs)) => {
            let mut query = url::form_urlencoded::Serializer::new(String::new());
            for (name, value) in &pairs {
                match value {
                    Value::String(v) => query.append_pair(name, v),
                    Value::Number(_) | Value::Bool(_) => {
                        query.append_pair(name, &value.to_string())
                    }
                    _ => return Err(format!("query.{name} must be a string, number or boolean")),
                };
            }
            Some(query.finish()).filter(|q| !q.is_empty())
        }
        Some(_) => return Err("query must be an object of parameters".to_owned()),
    };
    let body = match args.remove("body") {
        None | Some(Value::Null) => None,
        Some(value) => Some(Bytes::from(value.to_string())),
    };
    if let Some(name) = args.keys().next() {
        return Err(format!("unknown argument {name:?}"));
    }
    Ok(Arguments {
        connection_id,
        method,
        path,
        query,
        body,
    })
}

/// The model's path as the proxy reads it: each segment escaped where a URL needs it (the
/// proxy then refuses any that would leave the base URL).
fn encoded_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (index, segment) in path.trim_start_matches('/').split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.extend(utf8_percent_encode(segment, SEGMENT));
    }
    out
}

pub async fn crm_request<S: Store>(
    state: &AppState<S>,
    principal: &Principal,
    args: JsonObject,
) -> CallToolResult {
    let args = match arguments(args) {
        Ok(args) => args,
        Err(message) => {
            state.metrics.mcp_tool_call("crm_request", "refused");
            return tool_error(message);
        }
    };
    if principal.access == AgentAccess::Read && !matches!(args.method, Method::GET | Method::HEAD) {
        state.metrics.mcp_tool_call("crm_request", "refused");
        return tool_error(format!(
            "this agent token is read-only: {} is not allowed, only GET and HEAD",
            args.method
        ));
    }
    let not_found = || {
        state.metrics.mcp_tool_call("crm_request", "refused");
        tool_error("no connection has this id (list_connections names the ones you can use)")
    };
    let Ok(id) = ConnectionId::try_from(args.connection_id.as_str()) else {
        return not_found();
    };
    let row = match state.store.get_connection(id.as_str()).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(err) => {
            state.metrics.mcp_tool_call("crm_request", "failed");
            return gateway_error(err.into());
        }
    };
    if row.end_user_id != principal.end_user_id || !principal.reaches(&row.integration) {
        return not_found();
    }

    let mut headers = HeaderMap::new();
    if args.body.is_some() {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    let started = Instant::now();
    let method = args.method.clone();
    let path = encoded_path(&args.path);
    let call = InProcessCall {
        method: args.method,
        path: path.clone(),
        query: args.query,
        headers,
        body: args.body.unwrap_or_default(),
    };
    let limits = &state.config.mcp;
    let cap = limits.max_response_bytes;
    let outcome = tokio::time::timeout(limits.tool_timeout, async {
        let (response, _retries) = forward_in_process(state, &id, call).await?;
        Ok::<_, ApiError>(read_capped(response, cap).await)
    })
    .await;
    let elapsed = started.elapsed();
    let (result, status_text, metric) = match outcome {
        Err(_) => (
            tool_error(format!(
                "the call took longer than the {} s the gateway allows a tool call",
                limits.tool_timeout.as_secs()
            )),
            "timed out".to_owned(),
            "timeout",
        ),
        Ok(Err(err)) => {
            let text = format!("refused by the gateway ({})", err.code());
            (gateway_error(err), text, "failed")
        }
        Ok(Ok(answer)) => {
            let status = answer.status;
            let metric = if status >= 400 {
                "provider_error"
            } else {
                "ok"
            };
            (answer.into_result(cap), format!("HTTP {status}"), metric)
        }
    };
    state.metrics.mcp_tool_call("crm_request", metric);
    record(
        state,
        principal,
        &row.id,
        &row.integration,
        format!(
            "{} via MCP crm_request {} /{}: {} in {} ms",
            principal.caller(),
            method,
            path,
            status_text,
            elapsed.as_millis()
        ),
    );
    result
}

/// Writes one tool call into the connection's history after the answer (the write never
/// delays the agent); a store error is logged, the call itself went through.
fn record<S: Store>(
    state: &AppState<S>,
    principal: &Principal,
    connection_id: &str,
    integration: &str,
    detail: String,
) {
    let entry = HistoryEntry {
        kind: history_kind::AGENT_CALL.to_owned(),
        integration: integration.to_owned(),
        detail: Some(detail),
        reference: Some(
            principal
                .mcp_client_id
                .clone()
                .unwrap_or_else(|| principal.token_id.clone()),
        ),
    };
    let state = state.clone();
    let connection_id = connection_id.to_owned();
    let at = state.clock.now();
    tokio::spawn(async move {
        if let Err(error) = state
            .store
            .record_connection_history(&connection_id, &entry, at)
            .await
        {
            tracing::warn!(%connection_id, error = ?error, "could not record the agent call in the history");
        }
    });
}

/// The provider's answer, its body read up to the cap.
struct Answer {
    status: u16,
    headers: Map<String, Value>,
    content_type: Option<String>,
    body: Bytes,
    /// Whether more followed the cap.
    cut: bool,
}

async fn read_capped(response: Response<Body>, cap: usize) -> Answer {
    let (parts, mut body) = response.into_parts();
    let mut headers = Map::new();
    for (name, value) in &parts.headers {
        if selected_header(name.as_str())
            && let Ok(value) = value.to_str()
        {
            headers.insert(name.as_str().to_owned(), Value::String(value.to_owned()));
        }
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let mut read = BytesMut::new();
    let mut cut = false;
    // Frame by frame, so a huge body is never held: reading stops at the cap, and dropping
    // the rest closes the provider's stream.
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // A body broken midway: what arrived is what there is, and the note says so.
            cut = true;
            break;
        };
        if let Ok(data) = frame.into_data() {
            let room = cap - read.len();
            if data.len() > room {
                read.extend_from_slice(&data[..room]);
                cut = true;
                break;
            }
            read.extend_from_slice(&data);
        }
    }
    Answer {
        status: parts.status.as_u16(),
        headers,
        content_type,
        body: read.freeze(),
        cut,
    }
}

impl Answer {
    fn into_result(self, cap: usize) -> CallToolResult {
        let is_json = self
            .content_type
            .as_deref()
            .is_some_and(|t| t.starts_with("application/json") || t.contains("+json"));
        let json_body = (is_json && !self.cut)
            .then(|| serde_json::from_slice::<Value>(&self.body).ok())
            .flatten();
        let mut structured = Map::new();
        structured.insert("status".into(), json!(self.status));
        structured.insert("headers".into(), Value::Object(self.headers));
        let mut content = Vec::new();
        match json_body {
            Some(value) => {
                structured.insert("body".into(), value);
            }
            None => {
                let text = String::from_utf8_lossy(&self.body).into_owned();
                structured.insert("body".into(), Value::String(text));
            }
        }
        if self.cut {
            let note = format!(
                "the body was cut after {cap} bytes; ask for less (a smaller page, fewer fields)"
            );
            structured.insert("truncated".into(), Value::Bool(true));
            structured.insert("note".into(), Value::String(note));
        }
        let structured = Value::Object(structured);
        content.push(ContentBlock::text(structured.to_string()));
        let mut result = CallToolResult::success(content);
        result.structured_content = Some(structured);
        result.is_error = Some(self.status >= 400);
        result
    }
}

/// A refusal or failure of the gateway itself (throttled, needs reauthorization, provider
/// unreachable), as a tool error the model can read: its stable code and what it means.
fn gateway_error(err: ApiError) -> CallToolResult {
    let code = err.code();
    let detail = match &err {
        ApiError::Internal(error) => {
            let reference = crate::http::reference::new();
            tracing::error!(reference = %reference, error = ?error, "internal error in an MCP tool");
            format!("something went wrong on the gateway's side (reference {reference})")
        }
        other => other.to_string(),
    };
    let mut result = tool_error(format!("{code}: {detail}"));
    result.structured_content = Some(json!({ "error": code, "detail": detail }));
    result
}
