"""Every MCP tool through the official Python SDK's client (the `mcp`
package) against the real binary, as an assistant built on it would call
them: tools/list first (the SDK then checks each successful result's
structured content against the tool's output schema, with jsonschema), then
each tool once accepted and once refused. A refusal must come back as a tool
error (`is_error`, text starting with its code), never as an exception, and
its structured content must be valid against the same advertised schema.

Run by scripts/test.sh with the venv's python; PLANGRAPH_BIN names the
binary. Exits 1 when any step fails.
"""

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import traceback
import urllib.request

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

BIN = os.environ.get("PLANGRAPH_BIN", "/var/tmp/plangraph-target/debug/plangraph")

# A UUID no row has.
MISSING = "0192f0c1-7c1e-7a4e-9c1a-1b2c3d4e5f60"


class Server:
    """The binary on an ephemeral port with its own data directory."""

    def __init__(self):
        self.data_dir = tempfile.mkdtemp(prefix="plangraph-python-")
        self.log = open(os.path.join(self.data_dir, "stderr.log"), "w+")
        # Flags only: a PLANGRAPH_* variable of the caller's shell must not leak in.
        env = {name: value for name, value in os.environ.items() if not name.startswith("PLANGRAPH_")}
        self.process = subprocess.Popen(
            [BIN, "--data-dir", os.path.join(self.data_dir, "data"), "--listen", "127.0.0.1:0"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self.admin_key = None
        self.url = None
        for line in self.process.stdout:
            if line.startswith("pg_"):
                self.admin_key = line.strip()
            listening = re.search(r"listening on http://(\S+)/graphql", line)
            if listening:
                self.url = f"http://{listening.group(1)}"
                break
        if self.url is None or self.admin_key is None:
            log = self.stderr()
            self.stop()
            raise RuntimeError(f"plangraph did not start:\n{log}")
        # Its later output is only drained, so that a full pipe never blocks it.
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stderr(self):
        self.log.seek(0)
        return self.log.read()

    def gql(self, query, variables=None):
        """A GraphQL request as the admin; raises on any error."""
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers={"content-type": "application/json", "authorization": f"Bearer {self.admin_key}"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            body = json.load(response)
        if body.get("errors"):
            raise RuntimeError(f"GraphQL errors: {body['errors']}")
        return body["data"]

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)


class Agent:
    """An MCP client with the admin's key, recording which tools it saw
    accepted and refused."""

    def __init__(self, client):
        self.client = client
        self.accepted = set()
        self.refused_tools = set()

    @staticmethod
    def text_of(result):
        return "\n".join(block.text for block in result.content if block.type == "text")

    async def ok(self, tool, arguments):
        """A call that must succeed: its structured content, which the SDK has validated."""
        result = await self.client.call_tool(tool, arguments)
        assert not result.is_error, f"{tool} failed: {self.text_of(result)}"
        assert result.structured_content is not None, f"{tool} returned no structured content"
        self.accepted.add(tool)
        return result.structured_content

    async def refused(self, tool, arguments, code):
        """A call that must be refused with `code`, as a result: its `error` facts."""
        result = await self.client.call_tool(tool, arguments)
        text = self.text_of(result)
        assert result.is_error, f"{tool} should be refused: {text}"
        # The SDK checks only successes; a refusal is held to the same schema.
        await self.client.validate_tool_result(tool, result)
        error = result.structured_content["error"]
        assert error["code"] == code, error
        # `CODE: message`, or `CODE (REASON): message` when a reason tells
        # refusals of one code apart.
        headline = f"{code} ({error['reason']})" if error.get("reason") else code
        assert text == f"{headline}: {error['message']}", "the text and the structured error say the same"
        self.refused_tools.add(tool)
        return error


def expect(actual, expected):
    assert actual == expected, f"expected {expected!r}, got {actual!r}"


async def scenario(agent, state, tools):
    """(name, step) pairs, run in order: later steps use what earlier ones made."""

    async def list_projects():
        projects = (await agent.ok("list_projects", {}))["projects"]
        expect([(p["id"], p["role"]) for p in projects], [(state["project"], "owner")])
        error = await agent.refused("list_projects", {"unexpected": True}, "BAD_USER_INPUT")
        assert "unknown field `unexpected`" in error["message"], error

    async def create_feature():
        feature = (
            await agent.ok(
                "create_feature",
                {"project_id": state["project"], "title": "User Authentication", "spec_content": "# Sign in"},
            )
        )["feature"]
        expect(feature["current_version"], 1)
        state["feature"] = feature["id"]
        await agent.refused(
            "create_feature", {"project_id": MISSING, "title": "Ghost", "spec_content": "# Ghost"}, "NOT_FOUND"
        )

    async def list_features():
        listed = await agent.ok("list_features", {"project_id": state["project"]})
        expect(([f["title"] for f in listed["features"]], listed["total"]), (["User Authentication"], 1))
        error = await agent.refused("list_features", {"project_id": "proj_abc123"}, "BAD_USER_INPUT")
        expect(error["argument"], "project_id")

    async def get_feature():
        feature = (await agent.ok("get_feature", {"feature_id": state["feature"]}))["feature"]
        expect(feature["spec_content"], "# Sign in")
        await agent.refused("get_feature", {"feature_id": MISSING}, "NOT_FOUND")

    async def create_plan():
        async def create(title, status):
            arguments = {"feature_id": state["feature"], "title": title, "spec_content": f"# {title}", "status": status}
            return (await agent.ok("create_plan", arguments))["plan"]

        oauth = await create("OAuth", "ready")
        expect((oauth["status"], oauth["claimed_by"]), ("ready", None))
        state["oauth"] = oauth["id"]
        state["two_factor"] = (await create("2FA", "draft"))["id"]
        state["schema"] = (await create("Schema", "ready"))["id"]
        await agent.refused(
            "create_plan", {"feature_id": MISSING, "title": "Ghost", "spec_content": "# Ghost"}, "NOT_FOUND"
        )

    async def list_plans():
        listed = await agent.ok("list_plans", {"project_id": state["project"], "status_filter": "ready"})
        expect(([p["title"] for p in listed["plans"]], listed["total"]), (["OAuth", "Schema"], 2))
        # Malformed arguments are a tool error the model can correct.
        error = await agent.refused("list_plans", {"status_filter": "done"}, "BAD_USER_INPUT")
        assert error["message"].startswith("Invalid arguments for list_plans: unknown variant `done`"), error

    async def get_plan():
        plan = (await agent.ok("get_plan", {"plan_id": state["oauth"]}))["plan"]
        expect((plan["title"], plan["spec_content"], plan["spec_drift"]), ("OAuth", "# OAuth", None))
        error = await agent.refused("get_plan", {"plan_id": MISSING}, "NOT_FOUND")
        expect(error["message"], f"No plan with id {MISSING}")

    async def set_plan_status():
        error = await agent.refused(
            "set_plan_status", {"plan_id": state["two_factor"], "status": "completed"}, "INVALID_TRANSITION"
        )
        expect(error["current_status"], "draft")
        expect(error["allowed_transitions"], [{"status": "ready", "operation": "set_plan_status"}])
        change = await agent.ok("set_plan_status", {"plan_id": state["two_factor"], "status": "ready"})
        expect((change["plan"]["status"], change["previous_status"], change["feature_version"]), ("ready", "draft", None))

    async def claim_plan():
        plan = (await agent.ok("claim_plan", {"plan_id": state["oauth"]}))["plan"]
        expect(plan["status"], "claimed")
        state["first_token"] = plan["claim_token"]
        error = await agent.refused("claim_plan", {"plan_id": state["oauth"]}, "CONFLICT")
        expect(error["message"], "You have already claimed this plan")
        expect((error["current_status"], error["claimed_by"]), ("claimed", plan["claimed_by"]["id"]))

    async def update_plan():
        arguments = {"plan_id": state["oauth"], "spec_content": "# OAuth\n\nRoutes done.", "claim_token": state["first_token"]}
        plan = (await agent.ok("update_plan", arguments))["plan"]
        expect(plan["status"], "in_progress")
        error = await agent.refused("update_plan", {"plan_id": state["oauth"], "spec_content": " "}, "BAD_USER_INPUT")
        expect(error["argument"], "spec_content")

    async def release_plan():
        change = await agent.ok("release_plan", {"plan_id": state["oauth"], "claim_token": state["first_token"]})
        expect((change["plan"]["status"], change["previous_status"]), ("ready", "in_progress"))
        error = await agent.refused("release_plan", {"plan_id": state["oauth"]}, "INVALID_TRANSITION")
        expect(error["current_status"], "ready")

    async def heartbeat_plan():
        state["token"] = (await agent.ok("claim_plan", {"plan_id": state["oauth"]}))["plan"]["claim_token"]
        plan = (await agent.ok("heartbeat_plan", {"plan_id": state["oauth"], "claim_token": state["token"]}))["plan"]
        expect(plan["claim_token"], None)  # a token is in the claim's answer only
        error = await agent.refused(
            "heartbeat_plan", {"plan_id": state["oauth"], "claim_token": state["first_token"]}, "CONFLICT"
        )
        expect(error["reason"], "STALE_CLAIM")

    async def submit_work():
        arguments = {"plan_id": state["oauth"], "artifacts_markdown": "PR #1", "status": "review", "claim_token": state["token"]}
        change = await agent.ok("submit_work", arguments)
        expect((change["plan"]["status"], change["previous_status"]), ("review", "claimed"))
        error = await agent.refused(
            "submit_work",
            {"plan_id": state["two_factor"], "artifacts_markdown": "PR #2", "status": "review"},
            "INVALID_TRANSITION",
        )
        expect(error["current_status"], "ready")
        completed = await agent.ok("set_plan_status", {"plan_id": state["oauth"], "status": "completed"})
        expect(completed["feature_version"]["version"], 2)

    async def add_plan_dependency():
        arguments = {"plan_id": state["two_factor"], "blocked_by_plan_id": state["schema"]}
        expect((await agent.ok("add_plan_dependency", arguments))["plan"]["id"], state["two_factor"])
        error = await agent.refused(
            "add_plan_dependency",
            {"plan_id": state["schema"], "blocked_by_plan_id": state["two_factor"]},
            "BAD_USER_INPUT",
        )
        assert "would make a cycle" in error["message"], error

    async def claim_next_plan():
        plan = (await agent.ok("claim_next_plan", {"project_id": state["project"]}))["plan"]
        expect(plan["title"], "Schema")
        expect((await agent.ok("claim_next_plan", {"project_id": state["project"]}))["plan"], None)
        # A project that does not exist and one the caller is not in read alike.
        await agent.refused("claim_next_plan", {"project_id": MISSING}, "FORBIDDEN")

    async def remove_plan_dependency():
        arguments = {"plan_id": state["two_factor"], "blocked_by_plan_id": state["schema"]}
        expect((await agent.ok("remove_plan_dependency", arguments))["plan"]["id"], state["two_factor"])
        await agent.refused(
            "remove_plan_dependency", {"plan_id": MISSING, "blocked_by_plan_id": state["schema"]}, "NOT_FOUND"
        )

    async def set_plan_priority():
        plan = (await agent.ok("set_plan_priority", {"plan_id": state["two_factor"], "priority": 0}))["plan"]
        expect(plan["priority"], 0)
        error = await agent.refused("set_plan_priority", {"plan_id": state["two_factor"], "priority": 9}, "BAD_USER_INPUT")
        expect(error["argument"], "priority")

    async def update_feature():
        arguments = {"feature_id": state["feature"], "spec_content": "# Sign in\n\nWith a second factor.", "new_version": True}
        expect((await agent.ok("update_feature", arguments))["feature"]["current_version"], 3)
        await agent.refused("update_feature", {"feature_id": MISSING, "spec_content": "# Ghost"}, "NOT_FOUND")

    async def list_feature_versions():
        versions = (await agent.ok("list_feature_versions", {"feature_id": state["feature"]}))["versions"]
        implemented = [(v["version"], (v["implemented_by_plan"] or {}).get("title")) for v in versions]
        expect(implemented, [(1, None), (2, "OAuth"), (3, None)])
        await agent.refused("list_feature_versions", {"feature_id": MISSING}, "NOT_FOUND")

    async def get_spec_diff():
        diff = await agent.ok("get_spec_diff", {"plan_id": state["two_factor"]})
        expect((diff["from_version"], diff["to_version"]), (1, 3))
        assert diff["diff"]["added"] > 0, diff
        error = await agent.refused("get_spec_diff", {}, "BAD_USER_INPUT")
        assert error["message"].startswith("Give either plan_id"), error

    async def rebase_plan():
        plan = (await agent.ok("rebase_plan", {"plan_id": state["two_factor"]}))["plan"]
        expect((plan["based_on_version"], plan["spec_drift"]), (3, None))
        error = await agent.refused("rebase_plan", {"plan_id": state["oauth"]}, "CONFLICT")
        assert "cannot be rebased" in error["message"], error

    async def every_tool_both_ways():
        names = sorted(tool.name for tool in tools)
        expect(sorted(agent.accepted), names)
        expect(sorted(agent.refused_tools), names)

    return [
        ("list_projects", list_projects),
        ("create_feature", create_feature),
        ("list_features", list_features),
        ("get_feature", get_feature),
        ("create_plan", create_plan),
        ("list_plans, and a malformed call is a tool error", list_plans),
        ("get_plan", get_plan),
        ("set_plan_status", set_plan_status),
        ("claim_plan", claim_plan),
        ("update_plan", update_plan),
        ("release_plan", release_plan),
        ("heartbeat_plan, and a stale claim token is refused", heartbeat_plan),
        ("submit_work", submit_work),
        ("add_plan_dependency", add_plan_dependency),
        ("claim_next_plan, also when no plan is ready", claim_next_plan),
        ("remove_plan_dependency", remove_plan_dependency),
        ("set_plan_priority", set_plan_priority),
        ("update_feature", update_feature),
        ("list_feature_versions", list_feature_versions),
        ("get_spec_diff", get_spec_diff),
        ("rebase_plan", rebase_plan),
        ("every listed tool was called, accepted and refused", every_tool_both_ways),
    ]


async def run(server):
    state = {"project": server.gql('mutation { createProject(name: "Task Manager") { id } }')["createProject"]["id"]}
    failures = []
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with create_mcp_http_client(headers=headers) as http:
        async with streamable_http_client(f"{server.url}/mcp", http_client=http) as streams:
            read, write = streams[0], streams[1]
            async with ClientSession(read, write) as client:
                await client.initialize()
                tools = (await client.list_tools()).tools
                agent = Agent(client)
                try:
                    assert len(tools) > 20, f"{len(tools)} tools"
                    for tool in tools:
                        assert tool.output_schema and tool.output_schema.get("type") == "object", tool.name
                    print("ok - tools/list gives every tool an output schema")
                except AssertionError as error:
                    failures.append(("tools/list", error))
                    print(f"not ok - tools/list: {error}")
                for name, step in await scenario(agent, state, tools):
                    try:
                        await step()
                        print(f"ok - {name}")
                    except Exception as error:  # a step's failure, reported with the others
                        failures.append((name, error))
                        print(f"not ok - {name}: {error}")
                        traceback.print_exc()
    return failures


def main():
    server = Server()
    try:
        failures = asyncio.run(run(server))
    finally:
        log = server.stderr()
        server.stop()
    if failures:
        print(f"\n{len(failures)} step(s) failed; the server's log:\n{log}", file=sys.stderr)
        sys.exit(1)
    print("Python SDK: every tool accepted and refused as expected")


if __name__ == "__main__":
    main()
