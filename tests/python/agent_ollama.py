"""An agent that speaks Ollama's API through the official `ollama` Python client.

Env: EDGENT_URL (the daemon, as OLLAMA_HOST), MODEL, API (generate | chat), STREAM (1 | 0),
NUM_PREDICT, OPTIONS (JSON, merged into the options), PROMPT (default "hello edge mesh").
Prints one JSON object: the text parts in the order they came, the last part (done, stats)
as the client parsed it, the last line as it came over the wire (`raw_last`: the client's
models drop fields Ollama does not define, such as edgent's `edgent` receipt of a paid
answer), and the X-Edgent-* headers of the answer.
"""

import json
import os

import httpx
import ollama

headers = {}
raw = bytearray()


class TeeStream(httpx.SyncByteStream):
    """The answer's bytes as they pass to the client, kept in `raw`."""

    def __init__(self, inner):
        self.inner = inner

    def __iter__(self):
        for b in self.inner:
            raw.extend(b)
            yield b

    def close(self):
        self.inner.close()


class Tee(httpx.BaseTransport):
    """httpx's own transport, with the generation answers' bytes kept."""

    def __init__(self):
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request):
        resp = self.inner.handle_request(request)
        if request.url.path in ("/api/generate", "/api/chat"):
            resp.stream = TeeStream(resp.stream)
        return resp

    def close(self):
        self.inner.close()


def keep_headers(response):
    if response.request.url.path in ("/api/generate", "/api/chat"):
        for k, v in response.headers.items():
            if k.lower().startswith("x-edgent-"):
                headers[k.lower()] = v


client = ollama.Client(
    host=os.environ["EDGENT_URL"], event_hooks={"response": [keep_headers]}, transport=Tee()
)
model = os.environ["MODEL"]
api = os.environ.get("API", "generate")
stream = os.environ.get("STREAM", "1") == "1"
options = {"seed": 7, "temperature": 0, "num_predict": int(os.environ.get("NUM_PREDICT", "24"))}
options.update(json.loads(os.environ.get("OPTIONS", "{}")))
prompt = os.environ.get("PROMPT", "hello edge mesh")

if api == "generate":
    res = client.generate(model=model, prompt=prompt, stream=stream, options=options)
else:
    res = client.chat(
        model=model, messages=[{"role": "user", "content": prompt}], stream=stream, options=options
    )

parts = []
last = None
for part in res if stream else [res]:
    parts.append(part.response if api == "generate" else part.message.content)
    last = part.model_dump(mode="json", exclude_none=True)

lines = [l for l in bytes(raw).splitlines() if l.strip()]
raw_last = json.loads(lines[-1]) if lines else None
print(json.dumps({"parts": parts, "last": last, "raw_last": raw_last, "headers": headers}))
