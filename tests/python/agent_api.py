"""The agent's whole API through an official client: JSON mode, a JSON schema, a tool-calling
round trip, an image, embeddings.

Env: CLIENT (ollama | openai), EDGENT_URL, MODEL, STREAM (1 | 0), CASE (json | schema |
tools | image | embed), and for `tools` TOOL_SCHEMA (the JSON schema the answer must
follow, so the tiny test model writes the call) and TOOL_RESULT (the tool's answer sent
back). Prints one JSON object: `text`, `tool_calls` ([{id, name, arguments}]),
`finish_reason` (OpenAI), `prompt_tokens`; for `tools` also `second` (the answer after the
tool's result went back) and `messages` (the conversation sent the second time); for
`embed`, `vectors` (one list per route: embed, embeddings for Ollama; embeddings for
OpenAI). Or `status` and `error` when the client raised an HTTP error.
"""

import json
import os

import ollama
import openai

client_name = os.environ["CLIENT"]
model = os.environ["MODEL"]
stream = os.environ.get("STREAM", "0") == "1"
case = os.environ["CASE"]
url = os.environ["EDGENT_URL"]
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
SCHEMA = {"type": "object", "properties": {"answer": {"enum": ["yes"]}}, "required": ["answer"]}
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "the weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
# Enough tokens for the tiny model to close its JSON; an image case stops early (a
# random model repeating one token is stopped by Ollama with no done line).
LIMIT = 8 if case == "image" else 300
OPTIONS = {"seed": 7, "temperature": 0, "num_predict": LIMIT}


def ollama_chat(client, messages, **kw):
    res = client.chat(model=model, messages=messages, stream=stream, options=OPTIONS, **kw)
    out = {"text": "", "tool_calls": [], "prompt_tokens": None}
    for part in res if stream else [res]:
        out["text"] += part.message.content or ""
        for c in part.message.tool_calls or []:
            out["tool_calls"].append(
                {"id": getattr(c, "id", None), "name": c.function.name, "arguments": dict(c.function.arguments)}
            )
        if part.done:
            out["prompt_tokens"] = part.prompt_eval_count
    return out


def openai_chat(client, messages, **kw):
    res = client.chat.completions.create(
        model=model, messages=messages, stream=stream, max_tokens=LIMIT, seed=7, temperature=0, **kw
    )
    out = {"text": "", "tool_calls": [], "finish_reason": None, "prompt_tokens": None}
    if stream:
        calls = {}
        for c in res:
            if c.usage:
                out["prompt_tokens"] = c.usage.prompt_tokens
            if not c.choices:
                continue
            ch = c.choices[0]
            out["text"] += ch.delta.content or ""
            for t in ch.delta.tool_calls or []:
                call = calls.setdefault(t.index, {"id": t.id, "name": "", "arguments": ""})
                call["name"] += t.function.name or ""
                call["arguments"] += t.function.arguments or ""
            out["finish_reason"] = ch.finish_reason or out["finish_reason"]
        for _, c in sorted(calls.items()):
            out["tool_calls"].append({"id": c["id"], "name": c["name"], "arguments": json.loads(c["arguments"])})
    else:
        ch = res.choices[0]
        out["text"] = ch.message.content or ""
        out["finish_reason"] = ch.finish_reason
        out["prompt_tokens"] = res.usage.prompt_tokens
        for t in ch.message.tool_calls or []:
            out["tool_calls"].append(
                {"id": t.id, "name": t.function.name, "arguments": json.loads(t.function.arguments)}
            )
    return out


def run():
    user = [{"role": "user", "content": "hello edge mesh"}]
    if client_name == "ollama":
        client = ollama.Client(host=url)
        if case == "json":
            return ollama_chat(client, user, format="json")
        if case == "schema":
            return ollama_chat(client, user, format=SCHEMA)
        if case == "image":
            return ollama_chat(client, [{"role": "user", "content": "what is this", "images": [PNG]}])
        if case == "tools":
            schema = json.loads(os.environ["TOOL_SCHEMA"])
            first = ollama_chat(client, user, tools=[WEATHER], format=schema)
            call = first["tool_calls"][0]
            messages = user + [
                {"role": "assistant", "content": "", "tool_calls": [
                    {"function": {"name": call["name"], "arguments": call["arguments"]}}]},
                {"role": "tool", "tool_name": call["name"], "content": os.environ["TOOL_RESULT"]},
            ]
            first["second"] = ollama_chat(client, messages, tools=[WEATHER])
            first["messages"] = messages
            return first
        if case == "embed":
            a = client.embed(model=model, input=["hello edge mesh", "peer"])
            b = client.embeddings(model=model, prompt="hello edge mesh")
            return {"vectors": [list(a.embeddings[0]), list(a.embeddings[1]), list(b.embedding)]}
    else:
        client = openai.OpenAI(
            base_url=url + "/v1", api_key=os.environ.get("EDGENT_API_TOKEN", "unused"), max_retries=0
        )
        extra = {"stream_options": {"include_usage": True}} if stream else {}
        if case == "json":
            return openai_chat(client, user, response_format={"type": "json_object"}, **extra)
        if case == "schema":
            fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": SCHEMA}}
            return openai_chat(client, user, response_format=fmt, **extra)
        if case == "image":
            parts = [
                {"type": "text", "text": "what is this"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64," + PNG}},
            ]
            return openai_chat(client, [{"role": "user", "content": parts}], **extra)
        if case == "tools":
            schema = json.loads(os.environ["TOOL_SCHEMA"])
            fmt = {"type": "json_schema", "json_schema": {"name": "call", "schema": schema}}
            first = openai_chat(client, user, tools=[WEATHER], response_format=fmt, **extra)
            call = first["tool_calls"][0]
            messages = user + [
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": call["id"], "type": "function",
                     "function": {"name": call["name"], "arguments": json.dumps(call["arguments"])}}]},
                {"role": "tool", "tool_call_id": call["id"], "content": os.environ["TOOL_RESULT"]},
            ]
            first["second"] = openai_chat(client, messages, tools=[WEATHER], **extra)
            first["messages"] = messages
            return first
        if case == "embed":
            a = client.embeddings.create(model=model, input=["hello edge mesh", "peer"])
            return {"vectors": [list(d.embedding) for d in a.data]}
    raise SystemExit(f"unknown case {case}")


try:
    out = run()
except ollama.ResponseError as e:
    out = {"status": e.status_code, "error": e.error}
except openai.APIStatusError as e:
    body = e.body if isinstance(e.body, dict) else {}
    out = {"status": e.status_code, "error": body.get("message") or str(e)}

print(json.dumps(out))
