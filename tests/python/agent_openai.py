"""An agent that speaks the OpenAI API through the official `openai` Python client.

Env: EDGENT_URL (the daemon; base_url is EDGENT_URL/v1), MODEL, API (chat | completions),
STREAM (1 | 0), NUM_PREDICT. Prints one JSON object: the text parts in the order they came,
the finish reason, and the X-Edgent-* headers of the answer.
"""

import json
import os

import httpx
import openai

headers = {}


def keep_headers(response):
    if response.request.url.path.endswith(("/chat/completions", "/completions")):
        for k, v in response.headers.items():
            if k.lower().startswith("x-edgent-"):
                headers[k.lower()] = v


client = openai.OpenAI(
    base_url=os.environ["EDGENT_URL"] + "/v1",
    api_key=os.environ.get("EDGENT_API_TOKEN", "unused"),
    http_client=httpx.Client(event_hooks={"response": [keep_headers]}),
    max_retries=0,
)
model = os.environ["MODEL"]
api = os.environ.get("API", "chat")
stream = os.environ.get("STREAM", "1") == "1"
n = int(os.environ.get("NUM_PREDICT", "24"))
prompt = "hello edge mesh"

parts = []
finish = None
if api == "chat":
    res = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        stream=stream,
        max_tokens=n,
        seed=7,
        temperature=0,
    )
    for c in res if stream else [res]:
        for choice in c.choices:
            text = choice.delta.content if stream else choice.message.content
            parts.append(text or "")
            finish = choice.finish_reason or finish
else:
    res = client.completions.create(
        model=model, prompt=prompt, stream=stream, max_tokens=n, seed=7, temperature=0
    )
    for c in res if stream else [res]:
        for choice in c.choices:
            parts.append(choice.text or "")
            finish = choice.finish_reason or finish

print(json.dumps({"parts": parts, "finish": finish, "headers": headers}))
