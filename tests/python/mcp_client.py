"""An MCP host's side of edgent's MCP server, with the official MCP Python SDK.

tests/mcp.rs runs one scenario per call and asserts on what it prints: one JSON object
on stdout with what the client saw (tool schemas, results, progress notifications,
HTTP statuses). The script itself asserts nothing beyond the protocol working.

Scenarios:
  stdio      --edgent BIN --api URL --model M --prompt P [--missing-model X]
  http       --url URL/mcp --model M --prompt P
  http-origin --url URL/mcp --origin ORIGIN
  stdio-stream --edgent BIN --api URL --model M --prompt P --num-predict N
             one streamed delegate with a progress callback: the result and every
             progress notification (value, message) in the order they arrived
  stdio-cancel --edgent BIN --api URL --model M --prompt P --provider-api URL
             start delegate, cancel the call (anyio cancel scope: the SDK sends
             notifications/cancelled) once the provider's /jobs shows the job running,
             then, with the session still open, poll the provider's /jobs until its job
             has ended; prints that job and a `status` call made after
"""

import argparse
import json
import sys
import time
import urllib.error
import urllib.request

import anyio
import mcp.types as types
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client


def result_json(r: types.CallToolResult) -> dict:
    return {
        "is_error": bool(r.is_error),
        "text": "".join(c.text for c in r.content if isinstance(c, types.TextContent)),
        "structured": r.structured_content,
    }


async def delegate(session: ClientSession, model: str, prompt: str) -> dict:
    progress: list = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": p, "message": message})

    r = await session.call_tool(
        "delegate", {"model": model, "prompt": prompt}, progress_callback=on_progress
    )
    out = result_json(r)
    out["progress"] = progress
    return out


def stdio_params(args) -> StdioServerParameters:
    return StdioServerParameters(
        command=args.edgent,
        args=["mcp"],
        env={"EDGENT_API_URL": args.api, "RUST_LOG": "info"},
    )


async def scenario_stdio(args) -> dict:
    out: dict = {}
    async with stdio_client(stdio_params(args)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            out["tools"] = {
                t.name: {"description": t.description, "input_schema": t.input_schema}
                for t in tools.tools
            }
            out["delegate"] = await delegate(session, args.model, args.prompt)
            if args.missing_model:
                r = await session.call_tool(
                    "delegate", {"model": args.missing_model, "prompt": args.prompt}
                )
                out["missing"] = result_json(r)
            out["jobs"] = result_json(await session.call_tool("jobs", {"limit": 5}))
            out["status"] = result_json(await session.call_tool("status", {}))
            out["list_models"] = result_json(await session.call_tool("list_models", {}))
    return out


async def scenario_http(args) -> dict:
    async with streamable_http_client(args.url) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = await session.list_tools()
            return {
                "tools": sorted(t.name for t in tools.tools),
                "delegate": await delegate(session, args.model, args.prompt),
            }


async def scenario_stdio_stream(args) -> dict:
    progress: list = []

    async def on_progress(p: float, total: float | None, message: str | None) -> None:
        progress.append({"progress": p, "message": message})

    async with stdio_client(stdio_params(args)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            r = await session.call_tool(
                "delegate",
                {
                    "model": args.model,
                    "prompt": args.prompt,
                    "options": {"seed": 7, "temperature": 0, "num_predict": args.num_predict},
                },
                progress_callback=on_progress,
            )
            out = result_json(r)
            out["progress"] = progress
            return out


def provider_jobs(url: str) -> list:
    with urllib.request.urlopen(url + "/jobs", timeout=10) as r:
        return json.loads(r.read())


async def scenario_stdio_cancel(args) -> dict:
    out: dict = {}

    async with stdio_client(stdio_params(args)) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            async with anyio.create_task_group() as tg:
                call = anyio.CancelScope()

                async def delegate_call() -> None:
                    with call:
                        r = await session.call_tool(
                            "delegate", {"model": args.model, "prompt": args.prompt}
                        )
                        out["result_before_cancel"] = result_json(r)

                tg.start_soon(delegate_call)
                # Cancel once the provider is running the job.
                running = await poll_provider_job(args.provider_api, ("running",))
                out["provider_job_running"] = running is not None
                call.cancel()
            out["cancelled"] = call.cancelled_caught
            # The session stays open (the server process lives on) while the provider's
            # job is watched: what ends it is the cancel, not the host going away.
            out["provider_job"] = await poll_provider_job(
                args.provider_api, ("completed", "failed", "cancelled")
            )
            out["status_after"] = result_json(await session.call_tool("status", {}))
    return out


async def poll_provider_job(url: str, states: tuple) -> dict | None:
    """The provider's first job in one of `states`, polled for up to 30 s (None if none)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        jobs = await anyio.to_thread.run_sync(provider_jobs, url)
        found = [j for j in jobs if j.get("state") in states]
        if found:
            return found[0]
        await anyio.sleep(0.05)
    return None


def scenario_http_origin(args) -> dict:
    """A browser page's request: the initialize POST with a foreign Origin."""
    body = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "page", "version": "1"},
            },
        }
    ).encode()
    statuses = {}
    for name, origin in (("foreign", args.origin), ("none", None)):
        req = urllib.request.Request(args.url, data=body, method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Accept", "application/json, text/event-stream")
        if origin:
            req.add_header("Origin", origin)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                statuses[name] = r.status
        except urllib.error.HTTPError as e:
            statuses[name] = e.code
    return {"status": statuses}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("scenario")
    p.add_argument("--edgent")
    p.add_argument("--api")
    p.add_argument("--url")
    p.add_argument("--model")
    p.add_argument("--prompt")
    p.add_argument("--missing-model")
    p.add_argument("--origin")
    p.add_argument("--num-predict", type=int, default=300)
    p.add_argument("--provider-api")
    args = p.parse_args()
    if args.scenario == "stdio":
        out = anyio.run(scenario_stdio, args)
    elif args.scenario == "http":
        out = anyio.run(scenario_http, args)
    elif args.scenario == "stdio-stream":
        out = anyio.run(scenario_stdio_stream, args)
    elif args.scenario == "stdio-cancel":
        out = anyio.run(scenario_stdio_cancel, args)
    elif args.scenario == "http-origin":
        out = scenario_http_origin(args)
    else:
        sys.exit(f"unknown scenario {args.scenario}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
