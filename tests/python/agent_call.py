"""One chat call through an official client, with any extra fields, that reports errors.

Env: CLIENT (ollama | openai), EDGENT_URL, MODEL, STREAM (1 | 0), MESSAGES (JSON list,
default one user message), KWARGS (JSON object: extra arguments of the client's chat call,
e.g. {"think": true} or {"tools": [...]}). Prints one JSON object: `text` (the answer's
text, when it came) or `status` and `error` (the HTTP status and message of the error the
client raised).
"""

import json
import os

import ollama
import openai

client_name = os.environ["CLIENT"]
model = os.environ["MODEL"]
stream = os.environ.get("STREAM", "0") == "1"
messages = json.loads(os.environ.get("MESSAGES", '[{"role": "user", "content": "hello edge mesh"}]'))
kwargs = json.loads(os.environ.get("KWARGS", "{}"))

out = {}
try:
    if client_name == "ollama":
        client = ollama.Client(host=os.environ["EDGENT_URL"])
        options = {"seed": 7, "temperature": 0, "num_predict": 8}
        res = client.chat(model=model, messages=messages, stream=stream, options=options, **kwargs)
        out["text"] = "".join(p.message.content or "" for p in (res if stream else [res]))
    else:
        client = openai.OpenAI(
            base_url=os.environ["EDGENT_URL"] + "/v1",
            api_key=os.environ.get("EDGENT_API_TOKEN", "unused"),
            max_retries=0,
        )
        res = client.chat.completions.create(
            model=model, messages=messages, stream=stream, max_tokens=8, seed=7, temperature=0, **kwargs
        )
        if stream:
            out["text"] = "".join(c.choices[0].delta.content or "" for c in res if c.choices)
        else:
            out["text"] = res.choices[0].message.content
except ollama.ResponseError as e:
    out = {"status": e.status_code, "error": e.error}
except openai.APIStatusError as e:
    body = e.body if isinstance(e.body, dict) else {}
    out = {"status": e.status_code, "error": body.get("message") or str(e)}

print(json.dumps(out))
