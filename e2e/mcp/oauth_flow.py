"""MCP authorization end to end, with the official Python MCP SDK as the client.

Starts `tether demo` with a sign-in URL pointing at a tiny test app served by this script.
The SDK's OAuthClientProvider discovers everything from the MCP server's 401 (protected
resource metadata, authorization server metadata), registers itself (dynamic client
registration), and sends "the browser" (the redirect handler below, which follows redirects
the way a browser would) to the authorization endpoint with PKCE and a resource indicator.
Tether sends that browser to the test app's sign-in page, which reads the request and
approves it through the API with the app's key for one end user; Tether then redirects to the
client with a code, the SDK exchanges it, and calls tools on /mcp with the token it got.

Exits non-zero on any failure. Loopback only; stops what it starts.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2
from mcp import ClientSession
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken

END_USER = "mcp-oauth-user"
REDIRECT_URI = "http://127.0.0.1:9/callback"  # never served: the redirect is read, not followed
DEADLINE_SECONDS = 120


class App:
    """The test app: its API key and Tether's base URL, known once the demo has started."""

    base_url = ""
    api_key = ""
    approvals = 0


def api(method: str, path: str, body: dict | None = None) -> dict:
    request = urllib.request.Request(
        urllib.parse.urljoin(App.base_url, path),
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {App.api_key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"{}")


class SignIn(BaseHTTPRequestHandler):
    """The app's sign-in page: "signs the user in", shows what is asked, approves it."""

    def do_GET(self):  # noqa: N802 (the standard library's name)
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        request = query.get("tether_request", [""])[0]
        quoted = urllib.parse.quote(request, safe="")
        asked = api("GET", f"/v1/agent-authorizations/{quoted}")
        assert asked["scope"], asked
        assert asked["redirect_host"] == "127.0.0.1", asked
        decision = api(
            "POST",
            f"/v1/agent-authorizations/{quoted}/approve",
            {"end_user_id": END_USER, "access": "read"},
        )
        App.approvals += 1
        self.send_response(302)
        self.send_header("Location", decision["redirect_to"])
        self.end_headers()

    def log_message(self, *args):
        pass


class MemoryStorage:
    """Token storage for the SDK, in memory."""

    def __init__(self):
        self.tokens: OAuthToken | None = None
        self.client: OAuthClientInformationFull | None = None

    async def get_tokens(self):
        return self.tokens

    async def set_tokens(self, tokens):
        self.tokens = tokens

    async def get_client_info(self):
        return self.client

    async def set_client_info(self, client_info):
        self.client = client_info


class Browser:
    """Follows the authorization redirects like a browser, until one goes to the client."""

    def __init__(self):
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, url: str) -> None:
        async with httpx2.AsyncClient(follow_redirects=False, timeout=30) as http:
            for _ in range(5):
                response = await http.get(url)
                assert response.status_code in (302, 303), (response.status_code, response.text[:500])
                url = response.headers["location"]
                if url.startswith(REDIRECT_URI):
                    params = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
                    assert "error" not in params, params
                    self.result = AuthorizationCodeResult(
                        code=params["code"], state=params.get("state"), iss=params.get("iss")
                    )
                    return
        raise AssertionError("the authorization never came back to the client")

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def start_demo(sign_in_url: str) -> subprocess.Popen:
    binary = os.environ.get("TETHER_BIN", "target/debug/tether")
    process = subprocess.Popen(
        [binary, "demo", "--listen", "127.0.0.1:0", "--mcp-sign-in-url", sign_in_url],
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in process.stdout:
        if line.startswith("TETHER_DEMO "):
            demo = json.loads(line[len("TETHER_DEMO "):])
            App.base_url = demo["base_url"]
            App.api_key = demo["api_key"]
            # Keep reading the banner so the demo never blocks on a full pipe.
            threading.Thread(target=lambda: [None for _ in process.stdout], daemon=True).start()
            return process
    raise AssertionError(f"tether demo exited with {process.wait()} before it was ready")


async def flow() -> None:
    # A connection of the end user the app will approve, so a tool has something to list.
    imported = api(
        "POST",
        "/v1/connections",
        {
            "integration": "crm",
            "end_user": {"id": END_USER},
            "credentials": {"access_token": "imported-token", "expires_in": 3600},
        },
    )
    server_url = urllib.parse.urljoin(App.base_url, "/mcp")
    browser = Browser()
    storage = MemoryStorage()
    provider = OAuthClientProvider(
        server_url=server_url,
        client_metadata=OAuthClientMetadata(
            client_name="Tether e2e MCP client",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )
    async with create_mcp_http_client(auth=provider) as http:
        async with streamable_http_client(server_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                assert {"list_connections", "crm_request"} <= tools, tools
                result = await session.call_tool("list_connections", {})
                assert not result.is_error, result
                text = json.dumps(result.structured_content) + "".join(
                    getattr(c, "text", "") for c in result.content
                )
                assert imported["id"] in text, text
    assert App.approvals == 1, App.approvals
    assert storage.tokens is not None and storage.tokens.access_token.startswith("tat_")
    assert storage.tokens.refresh_token, "a refresh token was issued"
    print(f"ok: OAuth (DCR + PKCE + resource) then list_connections as {END_USER}")


def main() -> int:
    app = ThreadingHTTPServer(("127.0.0.1", 0), SignIn)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    sign_in_url = f"http://127.0.0.1:{app.server_address[1]}/sign-in"
    demo = start_demo(sign_in_url)
    try:
        asyncio.run(asyncio.wait_for(flow(), DEADLINE_SECONDS))
        return 0
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
        app.shutdown()


if __name__ == "__main__":
    sys.exit(main())
