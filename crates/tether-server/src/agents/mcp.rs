//! The MCP server at `/mcp` (Streamable HTTP, through the official Rust SDK `rmcp`), in
//! stateless mode: no session lives in one instance's memory, every POST carries its whole
//! request, so any instance behind a balancer can answer any request. `rmcp` negotiates the
//! handshake revisions it knows (2025-06-18, 2025-11-25, and 2026-07-28, which is stateless
//! by design). `GET` (a server-to-client stream) and `DELETE` (ending a session) have no
//! meaning without sessions; `rmcp` answers them 405 as the transport spec allows.
//!
//! Each request has passed [`super::principal::require_agent`]: its [`Principal`] is in the
//! HTTP request's extensions, which `rmcp` hands to the handler with the request parts. The
//! handler is built per request and holds nothing but the gateway's state.

use std::borrow::Cow;
use std::sync::Arc;

use axum::Router;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use serde_json::{Value, json};
use tether_store::{AgentAccess, Store};

use super::principal::Principal;
use super::tools;
use crate::state::AppState;

/// The `/mcp` routes (POST, GET, DELETE), behind the agent-token edge.
pub fn router<S: Store>(state: &AppState<S>) -> Router<AppState<S>> {
    let handler_state = state.clone();
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_max_request_body_bytes(state.config.mcp.max_request_bytes)
        // `Host` is whatever an operator's balancer sends, so it is not checked; `Origin`,
        // which browsers set and DNS rebinding cannot forge, is checked by `super::origin`
        // ahead of the token, to answer problem+json like every other refusal.
        .disable_allowed_hosts()
        .disable_allowed_origins();
    let service = StreamableHttpService::new(
        move || {
            Ok(McpHandler {
                state: handler_state.clone(),
            })
        },
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .route_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::principal::require_agent::<S>,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            super::origin::require_allowed_origin::<S>,
        ))
}

/// Answers one MCP request for the principal in its HTTP request.
pub struct McpHandler<S: Store> {
    state: AppState<S>,
}

/// The principal `require_agent` put in the HTTP request's extensions.
fn principal(context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    context
        .extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Principal>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("no agent principal on the request", None))
}

fn schema(value: Value) -> Arc<JsonObject> {
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

impl<S: Store> McpHandler<S> {
    /// What a model needs to know of the integrations this principal reaches: the
    /// provider's name, its API documentation and the base URL paths are relative to.
    fn integrations_text(&self, principal: &Principal) -> String {
        let mut text = String::new();
        for integration in self.state.integrations.all() {
            if !principal.reaches(integration.key.as_str()) {
                continue;
            }
            let provider = &integration.provider;
            text.push_str("\n- integration `");
            text.push_str(integration.key.as_str());
            text.push_str("`: ");
            text.push_str(&provider.display_name);
            if let Some(base) = integration
                .api_base_url
                .as_ref()
                .map(|b| b.text().to_owned())
                .or_else(|| provider.api.base_url.clone())
            {
                text.push_str(", paths are relative to ");
                text.push_str(&base);
            }
            if let Some(docs) = &provider.docs_url {
                text.push_str(", API documentation: ");
                text.push_str(docs);
            }
        }
        text
    }

    fn tools(&self, principal: &Principal) -> Vec<Tool> {
        let methods: &[&str] = match principal.access {
            AgentAccess::Read => &["GET", "HEAD"],
            AgentAccess::Write => &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
        };
        let list = Tool::new(
            "list_connections",
            "Lists the CRM connections this agent may use (id, integration, provider, status, \
             account). Use a connection's id with crm_request.",
            schema(json!({"type": "object", "properties": {}, "additionalProperties": false})),
        )
        .with_annotations(ToolAnnotations::new().read_only(true));
        let mut description = String::from(
            "Calls the CRM's own REST API through one connection, with the user's credentials \
             added by the gateway (never shown to you). `path` is relative to the integration's \
             API base URL. Answers the status, a few headers and the body (JSON as structured \
             content; long bodies are cut, with a note).",
        );
        if principal.access == AgentAccess::Read {
            description.push_str(" This token is read-only: GET and HEAD only.");
        }
        let integrations = self.integrations_text(principal);
        if !integrations.is_empty() {
            description.push_str(" Integrations:");
            description.push_str(&integrations);
        }
        let request = Tool::new(
            "crm_request",
            description,
            schema(json!({
                "type": "object",
                "properties": {
                    "connection_id": {"type": "string", "description": "A connection id from list_connections"},
                    "method": {"type": "string", "enum": methods},
                    "path": {"type": "string", "description": "The API path, e.g. /v1/contacts"},
                    "query": {
                        "type": "object",
                        "description": "Query parameters",
                        "additionalProperties": {"type": ["string", "number", "boolean"]}
                    },
                    "body": {"description": "A JSON body, for POST, PUT and PATCH"}
                },
                "required": ["connection_id", "method", "path"],
                "additionalProperties": false
            })),
        )
        .with_annotations(
            ToolAnnotations::new()
                .read_only(principal.access == AgentAccess::Read)
                .open_world(true),
        );
        vec![list, request]
    }
}

impl<S: Store> ServerHandler for McpHandler<S> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("tether", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tether reaches the user's CRM accounts for you: list_connections names them, \
                 crm_request calls a CRM's API through one of them.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let principal = principal(&context)?;
        Ok(ListToolsResult::with_all_items(self.tools(&principal)))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let principal = principal(&context)?;
        let arguments = request.arguments.unwrap_or_default();
        let result = match request.name.as_ref() {
            "list_connections" => tools::list_connections(&self.state, &principal).await,
            "crm_request" => tools::crm_request(&self.state, &principal, arguments).await,
            other => {
                self.state.metrics.mcp_tool_call("unknown", "refused");
                return Err(ErrorData::invalid_params(
                    Cow::Owned(format!("no tool is named {other:?}")),
                    None,
                ));
            }
        };
        Ok(result.into())
    }
}

/// A tool's answer when it could not do what was asked (`isError`, so the model reads why).
pub(crate) fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}
