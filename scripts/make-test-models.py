#!/usr/bin/env python3
"""Write the tiny test models for the real Ollama, with no model hub.

    python scripts/make-test-models.py OUT_DIR

writes, deterministically (same bytes every run):

  OUT_DIR/tiny.gguf        a random-weight llama: 2 layers, 64-dim, 4 heads, a few hundred
                           SentencePiece tokens with byte fallback; F32, about 0.3 MB
  OUT_DIR/tiny.Modelfile   FROM tiny.gguf, PARAMETER num_thread 1 (answers in milliseconds)
  OUT_DIR/huge.gguf        the same model declaring a context of 2^28 tokens
  OUT_DIR/huge.Modelfile   FROM huge.gguf, PARAMETER num_ctx 268435456: Ollama's memory
                           estimate for it (128 GiB of KV cache) makes it answer HTTP 500
                           {"error":"model requires more system memory (128.0 GiB) than is
                           available (...)"} on every request, as a real model too big does
  OUT_DIR/hugefile.Modelfile  FROM huge.gguf with no context of its own: it runs at the
                           Ollama's default context (OLLAMA_CONTEXT_LENGTH, 4096 unset), and
                           answers that out-of-memory error on an Ollama started with
                           OLLAMA_CONTEXT_LENGTH=268435456. Imported from this one Modelfile,
                           it has the same digest on every Ollama: the very model a requester
                           holds and cannot run, and a provider can
  OUT_DIR/tools.Modelfile  FROM tiny.gguf with a TEMPLATE that uses .Tools and .ToolCalls, so
                           Ollama says the model supports tools and parses a JSON object
                           {"name": ..., "arguments": {...}} in its output as a tool call.
                           The random weights emit one deterministically when the request's
                           `format` is a JSON schema that allows only that call (Ollama's
                           grammar then forces every byte but white space)

Import them with `ollama create NAME -f OUT_DIR/tiny.Modelfile` (the Rust test helper
tests/it/support/ollama.rs does so as `edgent-tiny` and `edgent-huge`). Needs the PyPI
packages gguf and numpy (tests/python/requirements.txt, scripts/python-venv.sh).
"""

import os
import sys

import numpy as np
from gguf import GGUFWriter, TokenType

N_EMBD = 64
N_LAYER = 2
N_HEAD = 4
N_FF = 128
TINY_CTX = 2048
HUGE_CTX = 2**28

WORDS = (
    "the of and to in is was for on that with as by at from it his an were are which be this "
    "has had not but or have one first new two its all their there after who they been more "
    "most other some time only into over can when made many would also such these like world "
    "hello edge mesh peer model agent answer token memory small fast node network"
).split()


def vocab():
    """SentencePiece pieces: <unk> <s> </s>, the 256 byte-fallback pieces, then text pieces."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        types.append(TokenType.BYTE)
    pieces = ["\u2581"]
    pieces += [c for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += ["\u2581" + c for c in "abcdefghijklmnopqrstuvwxyz"]
    pieces += [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,!?'-:;"]
    pieces += ["\u2581" + w for w in WORDS]
    seen = set(tokens)
    for p in pieces:
        if p not in seen:
            seen.add(p)
            tokens.append(p)
            types.append(TokenType.NORMAL)
    scores = [0.0] * 259 + [-float(i) for i in range(len(tokens) - 259)]
    return tokens, scores, types


def write_model(path, context_length):
    """One random-weight llama GGUF; the weights depend only on a fixed seed."""
    rng = np.random.RandomState(1234)
    tokens, scores, types = vocab()
    n_vocab = len(tokens)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.08).astype(np.float32)

    def ones(n):
        return np.ones((n,), dtype=np.float32)

    writer = GGUFWriter(path, "llama")
    writer.add_name("edgent-test-tiny")
    writer.add_context_length(context_length)
    writer.add_embedding_length(N_EMBD)
    writer.add_block_count(N_LAYER)
    writer.add_feed_forward_length(N_FF)
    writer.add_head_count(N_HEAD)
    writer.add_head_count_kv(N_HEAD)
    writer.add_rope_dimension_count(N_EMBD // N_HEAD)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(n_vocab)
    writer.add_file_type(0)  # all F32
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    writer.add_tensor("token_embd.weight", w(n_vocab, N_EMBD))
    for i in range(N_LAYER):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_q.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_k.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_v.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.attn_output.weight", w(N_EMBD, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", ones(N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", w(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", w(N_FF, N_EMBD))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", w(N_EMBD, N_FF))
    writer.add_tensor("output_norm.weight", ones(N_EMBD))
    writer.add_tensor("output.weight", w(n_vocab, N_EMBD))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def write_file(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make-test-models.py OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    write_model(os.path.join(out, "tiny.gguf"), TINY_CTX)
    write_file(
        os.path.join(out, "tiny.Modelfile"),
        f"FROM {os.path.join(os.path.abspath(out), 'tiny.gguf')}\n"
        "PARAMETER num_thread 1\n"
        f"PARAMETER num_ctx {TINY_CTX}\n",
    )
    write_model(os.path.join(out, "huge.gguf"), HUGE_CTX)
    write_file(
        os.path.join(out, "huge.Modelfile"),
        f"FROM {os.path.join(os.path.abspath(out), 'huge.gguf')}\n"
        "PARAMETER num_thread 1\n"
        f"PARAMETER num_ctx {HUGE_CTX}\n",
    )
    write_file(
        os.path.join(out, "hugefile.Modelfile"),
        f"FROM {os.path.join(os.path.abspath(out), 'huge.gguf')}\n"
        "PARAMETER num_thread 1\n",
    )
    write_file(
        os.path.join(out, "tools.Modelfile"),
        f"FROM {os.path.join(os.path.abspath(out), 'tiny.gguf')}\n"
        "PARAMETER num_thread 1\n"
        f"PARAMETER num_ctx {TINY_CTX}\n"
        f'TEMPLATE """{TOOLS_TEMPLATE}"""\n',
    )
    print(out)


# A chat template with tools: the tools' names, then each message (an assistant's tool
# calls as the JSON objects the model would write), then the assistant's turn.
TOOLS_TEMPLATE = (
    "{{- if .Tools }}Tools: {{ range .Tools }}{{ .Function.Name }} {{ end }}\n{{ end }}"
    "{{- range .Messages }}{{ .Role }}: {{ .Content }}"
    '{{ range .ToolCalls }}{"name": "{{ .Function.Name }}", "arguments": {{ .Function.Arguments }}}{{ end }}\n'
    "{{ end }}assistant: "
)


if __name__ == "__main__":
    main()
