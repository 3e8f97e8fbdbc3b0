//! Agents: agent tokens minted, listed and revoked by the app, and the MCP server at `/mcp`
//! over real HTTP (raw JSON-RPC, Streamable HTTP): the 401 challenge, the handshake, the tools,
//! and what a token may not reach (another user's connection, a write with a read token).

use serde_json::{Value, json};
use tether_test_support::eventually;

use crate::helpers::*;

/// `POST /v1/agent-tokens`; returns (id, token).
async fn mint(app: &TestApp, body: Value) -> (String, String) {
    let response = app
        .api(reqwest::Method::POST, "v1/agent-tokens")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    (
        created["id"].as_str().unwrap().to_owned(),
        created["token"].as_str().unwrap().to_owned(),
    )
}

/// `GET /v1/agent-tokens` of `end_user`.
async fn list_tokens(app: &TestApp, end_user: &str) -> Value {
    app.api(reqwest::Method::GET, "v1/agent-tokens")
        .query(&[("end_user_id", end_user)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// One JSON-RPC request to `/mcp` with `token` (if any).
async fn mcp(app: &TestApp, token: Option<&str>, method: &str, params: Value) -> reqwest::Response {
    let mut request = app
        .http
        .post(app.url("mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    // After the handshake, each request names the negotiated revision.
    if method != "initialize" {
        request = request.header("mcp-protocol-version", "2025-11-25");
    }
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The `result` of a JSON-RPC call that must succeed at the HTTP level.
async fn mcp_result(app: &TestApp, token: &str, method: &str, params: Value) -> Value {
    let response = mcp(app, Some(token), method, params).await;
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{method}: {text}");
    let message: Value =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("a JSON-RPC response, not {text}"));
    assert!(message.get("error").is_none(), "{message}");
    message["result"].clone()
}

async fn call(app: &TestApp, token: &str, tool: &str, arguments: Value) -> Value {
    mcp_result(
        app,
        token,
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
    )
    .await
}

fn text_of(result: &Value) -> String {
    result["content"][0]["text"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn agent_tokens_are_minted_listed_and_revoked() {
    let app = spawn_app().await;
    let (id, token) = mint(
        &app,
        json!({"end_user_id": "ada", "access": "read", "integrations": ["crm"], "expires_in": 600}),
    )
    .await;
    assert!(id.starts_with("agt_"), "{id}");
    assert!(token.starts_with("tat_"), "{token}");

    let listed = list_tokens(&app, "ada").await;
    let tokens = listed["agent_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["id"], id.as_str());
    assert_eq!(tokens[0]["access"], "read");
    assert_eq!(tokens[0]["integrations"], json!(["crm"]));
    assert_eq!(tokens[0]["status"], "active");
    assert!(
        !listed.to_string().contains(&token),
        "the token is shown once"
    );

    let revoke = |id: String| {
        let app = &app;
        async move {
            app.api(reqwest::Method::DELETE, &format!("v1/agent-tokens/{id}"))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(revoke(id.clone()).await, 204);
    // Revoking again is no error; an unknown id is.
    assert_eq!(revoke(id.clone()).await, 204);
    assert_eq!(revoke("agt_unknown".into()).await, 404);
    let listed = list_tokens(&app, "ada").await;
    assert_eq!(listed["agent_tokens"][0]["status"], "revoked");
    // The revoked token is refused at once.
    assert_eq!(
        mcp(&app, Some(&token), "tools/list", json!({}))
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn bad_token_requests_are_problems() {
    let app = spawn_app().await;
    for (body, status, code) in [
        (
            json!({"end_user_id": "ada", "access": "read", "integrations": ["nope"]}),
            422,
            "integration_not_found",
        ),
        (
            json!({"end_user_id": "ada", "access": "admin"}),
            400,
            "invalid_access",
        ),
        (
            json!({"end_user_id": "ada", "access": "read", "expires_in": 5}),
            400,
            "invalid_expires_in",
        ),
        (
            json!({"end_user_id": "ada", "access": "read", "expires_in": 365 * 86400}),
            400,
            "invalid_expires_in",
        ),
        (
            json!({"end_user_id": "", "access": "read"}),
            400,
            "invalid_end_user",
        ),
    ] {
        let response = app
            .api(reqwest::Method::POST, "v1/agent-tokens")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{body}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], code, "{body}");
    }
    // Without the app's key: no token.
    let response = app
        .http
        .post(app.url("v1/agent-tokens"))
        .json(&json!({"end_user_id": "ada", "access": "read"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn mcp_without_a_valid_token_gets_the_challenge() {
    let app = spawn_app().await;
    let metadata = app.url(".well-known/oauth-protected-resource/mcp");
    let challenge = |response: &reqwest::Response| {
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned()
    };

    let response = mcp(&app, None, "tools/list", json!({})).await;
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    assert_eq!(header, format!("Bearer resource_metadata=\"{metadata}\""));

    // The app's API key is no agent token.
    let response = mcp(&app, Some(&app.api_key), "tools/list", json!({})).await;
    assert_eq!(response.status(), 401);
    assert_eq!(
        challenge(&response),
        format!("Bearer resource_metadata=\"{metadata}\", error=\"invalid_token\"")
    );
    let problem: Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "invalid_token");
}

#[tokio::test]
async fn mcp_lists_tools_and_connections_and_calls_the_crm() {
    let app = spawn_app().await;
    let id = app.connect("ada").await;
    let (token_id, token) = mint(&app, json!({"end_user_id": "ada", "access": "write"})).await;

    let init = mcp_result(
        &app,
        &token,
        "initialize",
        json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "test", "version": "1"}
        }),
    )
    .await;
    assert_eq!(init["protocolVersion"], "2025-06-18");
    assert_eq!(init["serverInfo"]["name"], "tether");
    assert!(init["capabilities"]["tools"].is_object(), "{init}");

    let tools = mcp_result(&app, &token, "tools/list", json!({})).await;
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["list_connections", "crm_request"]);
    let description = tools["tools"][1]["description"].as_str().unwrap();
    assert!(description.contains("integration `crm`"), "{description}");

    let listed = call(&app, &token, "list_connections", json!({})).await;
    let connections = listed["structuredContent"]["connections"]
        .as_array()
        .unwrap();
    assert_eq!(connections.len(), 1);
    assert_eq!(connections[0]["id"], id.as_str());
    assert_eq!(connections[0]["integration"], "crm");
    assert_eq!(connections[0]["status"], "active");

    let deals = call(
        &app,
        &token,
        "crm_request",
        json!({"connection_id": id, "method": "GET", "path": "/v1/deals"}),
    )
    .await;
    assert_eq!(deals["isError"], false, "{deals}");
    let answer = &deals["structuredContent"];
    assert_eq!(answer["status"], 200);
    assert!(
        answer["headers"]["content-type"]
            .as_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert!(
        !answer["body"]["deals"].as_array().unwrap().is_empty(),
        "{answer}"
    );

    // A write with a JSON body and a query, through the same proxy path.
    let echoed = call(
        &app,
        &token,
        "crm_request",
        json!({
            "connection_id": id, "method": "POST", "path": "v1/echo",
            "query": {"page": 2, "q": "a b"}, "body": {"name": "Deal"}
        }),
    )
    .await;
    let echo = &echoed["structuredContent"]["body"];
    assert_eq!(echo["method"], "POST", "{echoed}");
    assert_eq!(echo["path"], "/v1/echo");
    assert!(echo["query"].to_string().contains("page"), "{echo}");
    assert!(
        echo["headers"]["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ")
    );

    // A path that leaves the base URL is refused by the proxy's own check.
    let escape = call(
        &app,
        &token,
        "crm_request",
        json!({"connection_id": id, "method": "GET", "path": "/../oauth/token"}),
    )
    .await;
    assert_eq!(escape["isError"], true);
    assert!(text_of(&escape).contains("invalid_proxy_path"), "{escape}");

    // Each call is in the connection's history, with the token's id and no body.
    let history = eventually(LIMIT, "the agent calls in the history", || async {
        let body: Value = app
            .api(reqwest::Method::GET, &format!("v1/connections/{id}/events"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let calls: Vec<Value> = body["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "agent_call")
            .cloned()
            .collect();
        (calls.len() == 3).then_some(calls)
    })
    .await;
    let details: Vec<&str> = history
        .iter()
        .map(|e| e["detail"].as_str().unwrap())
        .collect();
    assert!(
        details
            .iter()
            .any(|d| d.contains("GET /v1/deals: HTTP 200") && d.contains(&token_id)),
        "{details:?}"
    );
    assert!(!history.iter().any(|e| e.to_string().contains("Deal\"")));
    assert!(!history.iter().any(|e| e.to_string().contains(&token)));
}

#[tokio::test]
async fn a_token_reaches_only_its_users_connections_and_access() {
    let app = spawn_app().await;
    let ada = app.connect("ada").await;
    let bob = app.connect("bob").await;
    let (_, read) = mint(&app, json!({"end_user_id": "ada", "access": "read"})).await;

    // Ada's token lists Ada's connection only.
    let listed = call(&app, &read, "list_connections", json!({})).await;
    let ids: Vec<&str> = listed["structuredContent"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [ada.as_str()]);

    // Bob's connection is "not found", exactly like an id that does not exist.
    let before = app.seed.control.api_calls();
    let other = call(
        &app,
        &read,
        "crm_request",
        json!({"connection_id": bob, "method": "GET", "path": "/v1/deals"}),
    )
    .await;
    let missing = call(
        &app,
        &read,
        "crm_request",
        json!({"connection_id": "conn_0123456789abcdef0123456789abcdef", "method": "GET", "path": "/v1/deals"}),
    )
    .await;
    assert_eq!(other["isError"], true);
    assert_eq!(other, missing);

    // A read token cannot write, and the provider is not called.
    let post = call(
        &app,
        &read,
        "crm_request",
        json!({"connection_id": ada, "method": "POST", "path": "/v1/deals", "body": {}}),
    )
    .await;
    assert_eq!(post["isError"], true);
    assert!(text_of(&post).contains("read-only"), "{post}");
    assert_eq!(app.seed.control.api_calls(), before);

    // A token limited to other integrations does not see the connection at all.
    let (_, scoped) = mint(
        &app,
        json!({"end_user_id": "ada", "access": "write", "integrations": []}),
    )
    .await;
    let listed = call(&app, &scoped, "list_connections", json!({})).await;
    assert_eq!(listed["structuredContent"]["connections"], json!([]));
    let scoped_call = call(
        &app,
        &scoped,
        "crm_request",
        json!({"connection_id": ada, "method": "GET", "path": "/v1/deals"}),
    )
    .await;
    assert_eq!(scoped_call, missing);
}

/// The transport's DNS-rebinding defence: a browser page of another origin is refused with
/// 403 before its token is even looked up; Tether's own origin and requests without `Origin`
/// (MCP clients that are not browsers) pass.
#[tokio::test]
async fn mcp_refuses_a_browser_origin_it_does_not_know() {
    let app = spawn_app().await;
    let (_, token) = mint(&app, json!({"end_user_id": "alice", "access": "read"})).await;
    let with_origin = |origin: &str| {
        app.http
            .post(app.url("mcp"))
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("origin", origin)
            .bearer_auth(&token)
            .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}))
    };

    let refused = with_origin("http://evil.example.com").send().await.unwrap();
    assert_eq!(refused.status(), 403);
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let problem: Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "origin_not_allowed");
    assert_eq!(
        with_origin("null").send().await.unwrap().status(),
        403,
        "an opaque origin (a sandboxed page) is no origin Tether knows"
    );

    let own = app.url("").origin().ascii_serialization();
    let accepted = with_origin(&own).send().await.unwrap();
    assert_eq!(accepted.status(), 200, "Tether's own origin {own}");
    assert_eq!(
        mcp(&app, Some(&token), "tools/list", json!({}))
            .await
            .status(),
        200
    );
}
