"""An agent that speaks Ollama's API through the official `ollama` Python client.

Env: EDGENT_URL (the daemon, as OLLAMA_HOST), MODEL, API (generate | chat), STREAM (1 | 0),
NUM_PREDICT. Prints one JSON object: the text parts in the order they came, the last part
(done, stats), and the X-Edgent-* headers of the answer.
"""

import json
import os

import ollama

headers = {}


def keep_headers(response):
    if response.request.url.path in ("/api/generate", "/api/chat"):
        for k, v in response.headers.items():
            if k.lower().startswith("x-edgent-"):
                headers[k.lower()] = v


client = ollama.Client(host=os.environ["EDGENT_URL"], event_hooks={"response": [keep_headers]})
model = os.environ["MODEL"]
api = os.environ.get("API", "generate")
stream = os.environ.get("STREAM", "1") == "1"
options = {"seed": 7, "temperature": 0, "num_predict": int(os.environ.get("NUM_PREDICT", "24"))}
prompt = "hello edge mesh"

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

print(json.dumps({"parts": parts, "last": last, "headers": headers}))
