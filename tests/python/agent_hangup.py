"""An agent that starts a long streamed generation and hangs up after a few lines.

Env: EDGENT_URL, MODEL, LINES (how many NDJSON lines to read before closing), OPTIONS
(JSON, merged into the options). Prints one JSON object: the lines read and the X-Edgent-*
headers.
"""

import json
import os

import httpx

body = {
    "model": os.environ["MODEL"],
    "prompt": "hello edge mesh",
    "stream": True,
    "options": {"seed": 7, "temperature": 0, "num_predict": 1000000},
}
body["options"].update(json.loads(os.environ.get("OPTIONS", "{}")))
lines = []
with httpx.Client(timeout=60) as client:
    with client.stream("POST", os.environ["EDGENT_URL"] + "/api/generate", json=body) as r:
        headers = {k.lower(): v for k, v in r.headers.items() if k.lower().startswith("x-edgent-")}
        for line in r.iter_lines():
            if line.strip():
                lines.append(json.loads(line))
            if len(lines) >= int(os.environ.get("LINES", "3")):
                break
print(json.dumps({"lines": lines, "headers": headers}))
