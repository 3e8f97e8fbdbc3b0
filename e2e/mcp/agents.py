"""An independent MCP client against Tether: the official Python SDK (`mcp`, pinned in
requirements.txt) over Streamable HTTP with an agent token.

Starts `tether demo` on loopback (binary: $TETHER_BIN), connects two end users to the demo CRM
through the real OAuth flow (the emulator signs in by itself), mints agent tokens through the
API, then checks: the tools are listed; list_connections names only the token's user's
connection; crm_request reaches the CRM through the emulator; user A's token cannot reach user
B's connection (the same answer as an id that does not exist); a read token cannot POST; a
revoked token is refused with 401. Exits non-zero on the first failure; stops the demo by pid.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlencode

import httpx2
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

MISSING = "conn_0123456789abcdef0123456789abcdef"


def start_demo(binary: str, work: str, *extra: str) -> tuple[subprocess.Popen, dict]:
    """Starts `tether demo` on a free loopback port (with `extra` options); returns it and
    its `TETHER_DEMO` line."""
    out = open(os.path.join(work, "demo.out"), "w+")
    err = open(os.path.join(work, "demo.err"), "w+")
    demo = subprocess.Popen(
        [binary, "demo", "--listen", "127.0.0.1:0", *extra],
        stdout=out,
        stderr=err,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        out.seek(0)
        for line in out:
            if line.startswith("TETHER_DEMO "):
                return demo, json.loads(line.split(" ", 1)[1])
        if demo.poll() is not None:
            break
        time.sleep(0.1)
    err.seek(0)
    demo.kill()
    sys.exit("tether demo did not start:\n" + err.read())


def connect(api: httpx2.Client, base: str, end_user: str) -> str:
    """Connects `end_user` to the demo CRM like a browser; returns the connection id."""
    session = api.post(
        "/v1/connect/sessions", json={"end_user": {"id": end_user}}
    ).raise_for_status().json()
    token = dict(httpx2.URL(session["connect_url"]).params)["session"]
    with httpx2.Client(follow_redirects=True, timeout=30) as browser:
        browser.get(base.rstrip("/") + "/connect/crm?" + urlencode({"session": token}))
    listed = api.get("/v1/connections", params={"end_user_id": end_user}).json()
    ids = [c["id"] for c in listed["connections"]]
    check(len(ids) == 1, f"{end_user} has one connection: {listed}")
    return ids[0]


def mint(api: httpx2.Client, body: dict) -> dict:
    response = api.post("/v1/agent-tokens", json=body)
    check(response.status_code == 201, f"token minted: {response.text}")
    return response.json()


def check(condition: bool, what: str) -> None:
    if not condition:
        raise AssertionError(what)
    print("ok -", what.split(":")[0])


async def with_session(mcp_url: str, token: str, work):
    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        async with streamable_http_client(mcp_url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


async def agent_checks(mcp_url: str, write_token: str, read_token: str, alice: str, bob: str):
    async def as_writer(session: ClientSession):
        tools = await session.list_tools()
        names = sorted(tool.name for tool in tools.tools)
        check(names == ["crm_request", "list_connections"], f"tools listed: {names}")

        listed = await session.call_tool("list_connections", {})
        connections = listed.structured_content["connections"]
        check(
            [c["id"] for c in connections] == [alice],
            f"list_connections names only the token's user's connection: {connections}",
        )

        deals = await session.call_tool(
            "crm_request", {"connection_id": alice, "method": "GET", "path": "/v1/deals"}
        )
        answer = deals.structured_content
        check(
            not deals.is_error and answer["status"] == 200 and answer["body"]["deals"],
            f"crm_request reaches the CRM through the emulator: {answer}",
        )

        created = await session.call_tool(
            "crm_request",
            {
                "connection_id": alice,
                "method": "POST",
                "path": "/v1/deals",
                "body": {"title": "From an agent"},
            },
        )
        check(
            created.structured_content["status"] < 300,
            f"a write token can POST: {created.structured_content}",
        )

        other = await session.call_tool(
            "crm_request", {"connection_id": bob, "method": "GET", "path": "/v1/deals"}
        )
        missing = await session.call_tool(
            "crm_request", {"connection_id": MISSING, "method": "GET", "path": "/v1/deals"}
        )
        check(
            other.is_error and other.content == missing.content,
            f"user A's token cannot reach user B's connection: {other.content}",
        )

    async def as_reader(session: ClientSession):
        post = await session.call_tool(
            "crm_request",
            {"connection_id": alice, "method": "POST", "path": "/v1/deals", "body": {}},
        )
        check(post.is_error, f"a read token cannot POST: {post.content}")
        get = await session.call_tool(
            "crm_request", {"connection_id": alice, "method": "GET", "path": "/v1/deals"}
        )
        check(not get.is_error, f"a read token can GET: {get.structured_content}")

    await with_session(mcp_url, write_token, as_writer)
    await with_session(mcp_url, read_token, as_reader)


def main() -> None:
    binary = os.environ.get("TETHER_BIN", "target/debug/tether")
    with tempfile.TemporaryDirectory() as work:
        demo, info = start_demo(binary, work)
        try:
            base = info["base_url"]
            api = httpx2.Client(
                base_url=base,
                headers={"Authorization": f"Bearer {info['api_key']}"},
                timeout=30,
            )
            alice = connect(api, base, "alice")
            bob = connect(api, base, "bob")
            writer = mint(api, {"end_user_id": "alice", "access": "write"})
            reader = mint(api, {"end_user_id": "alice", "access": "read", "integrations": ["crm"]})
            mcp_url = base.rstrip("/") + "/mcp"
            asyncio.run(agent_checks(mcp_url, writer["token"], reader["token"], alice, bob))

            revoked = api.delete(f"/v1/agent-tokens/{reader['id']}")
            check(revoked.status_code == 204, f"token revoked: {revoked.status_code}")
            refused = httpx2.post(
                mcp_url,
                headers={
                    "Authorization": f"Bearer {reader['token']}",
                    "Accept": "application/json, text/event-stream",
                },
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}},
            )
            check(
                refused.status_code == 401
                and 'error="invalid_token"' in refused.headers["www-authenticate"],
                f"a revoked token gets 401: {refused.status_code}",
            )
        finally:
            demo.terminate()
            try:
                demo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                demo.kill()
    print("mcp: all checks passed")


if __name__ == "__main__":
    main()
