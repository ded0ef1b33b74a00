#!/usr/bin/env python3
"""A tiny OpenAI-compatible LLM and embedding server for running a real
LightRAG offline in tests (stdlib only).

- POST /v1/chat/completions: entity-extraction prompts get rows in LightRAG's
  delimiter format (entity<|#|>Name<|#|>Type<|#|>Description, relation<|#|>...,
  then <|COMPLETE|>) built from the first three capitalised words of the input
  text (below a connector document's labels, see `content_part`; the LightRAG
  simulator applies the same rule), so documents reach `processed`; other
  prompts get a short plain answer.
- POST /v1/embeddings: deterministic unit vectors (base64 float32 or floats).
- POST /_control/fail {"marker": "..."}: extraction of any text containing the
  marker answers 400 (not retried by the OpenAI client), so LightRAG marks that
  document failed. DELETE /_control/fail recovers. GET /_control/stats counts.
- POST /_control/slow_enqueue {"marker": "...", "seconds": 8}: the LightRAG
  servers started by tests/lightrag/serve.py ask POST /_control/enqueue_gate
  {"file_paths": [...]} before they enqueue accepted documents and wait the
  answered "delay": `seconds` when a path contains the marker, else 0 (counted
  per marker in stats "gated"). DELETE /_control/slow_enqueue switches it off.

Usage: fake_llm.py --port 0 --port-file PATH [--dim 64]
"""
import argparse
import base64
import hashlib
import json
import os
import re
import struct
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STATE = {"fail_markers": set(), "chat": 0, "embeddings": 0, "failed": 0, "slow_enqueue": {}, "gated": {}}
LOCK = threading.Lock()
DIM = 64

INPUT_RE = re.compile(r"---Input Text---\s*```\s*(.*?)```", re.S)


# A line of a document's header ("Type: record", "When: ...", "## Transcript"):
# its words are the connector's labels, not what the memory is about.
LABEL_LINE_RE = re.compile(r"^\s*(#|[A-Za-z][A-Za-z ]{0,30}:)")


def content_part(text):
    """The part of a chunk whose capitalised words name entities: after the
    first blank line when there is one (the connector's documents put their
    labels above it), without label lines; the whole text otherwise."""
    if "\n\n" in text:
        text = text.split("\n\n", 1)[1]
    return "\n".join(line for line in text.splitlines() if not LABEL_LINE_RE.match(line))


def extraction_rows(text):
    words = re.findall(r"\b[A-Z][a-zA-Z]{2,}\b", content_part(text))
    names = []
    for word in words:
        if word not in names:
            names.append(word)
        if len(names) == 3:
            break
    if not names:
        names = ["Memory"]
    rows = [f"entity<|#|>{n}<|#|>Concept<|#|>{n} is mentioned in the memory." for n in names]
    for a, b in zip(names, names[1:]):
        rows.append(f"relation<|#|>{a}<|#|>{b}<|#|>mentioned together<|#|>{a} and {b} appear in the same memory.")
    rows.append("<|COMPLETE|>")
    return "\n".join(rows)


def vector(text):
    seed = hashlib.sha256(text.encode("utf-8", "replace")).digest()
    raw = []
    while len(raw) < DIM:
        seed = hashlib.sha256(seed).digest()
        raw.extend(b / 255.0 - 0.5 for b in seed)
    raw = raw[:DIM]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


def enqueue_delay(paths):
    """The longest delay asked for a marker one of `paths` contains."""
    delay = 0.0
    with LOCK:
        for marker, seconds in STATE["slow_enqueue"].items():
            if marker and any(marker in str(p) for p in paths):
                delay = max(delay, seconds)
                STATE["gated"][marker] = STATE["gated"].get(marker, 0) + 1
    return delay


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _json(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self):
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {}

    def do_GET(self):
        if self.path.startswith("/_control/stats"):
            with LOCK:
                self._json(200, {k: (sorted(v) if isinstance(v, set) else v) for k, v in STATE.items()})
        elif self.path.startswith("/v1/models"):
            self._json(200, {"object": "list", "data": [{"id": "fake-llm", "object": "model"}]})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_DELETE(self):
        if self.path.startswith("/_control/fail"):
            with LOCK:
                STATE["fail_markers"].clear()
            self._json(200, {"ok": True})
        elif self.path.startswith("/_control/slow_enqueue"):
            with LOCK:
                STATE["slow_enqueue"].clear()
            self._json(200, {"ok": True})
        else:
            self._json(404, {"error": {"message": "not found"}})

    def do_POST(self):
        body = self._body()
        if self.path.startswith("/_control/fail"):
            with LOCK:
                STATE["fail_markers"].add(str(body.get("marker", "")))
            self._json(200, {"ok": True})
        elif self.path.startswith("/_control/slow_enqueue"):
            with LOCK:
                STATE["slow_enqueue"][str(body.get("marker", ""))] = float(body.get("seconds", 0))
            self._json(200, {"ok": True})
        elif self.path.startswith("/_control/enqueue_gate"):
            self._json(200, {"delay": enqueue_delay(body.get("file_paths") or [])})
        elif self.path.startswith("/v1/chat/completions"):
            self.chat(body)
        elif self.path.startswith("/v1/embeddings"):
            self.embeddings(body)
        else:
            self._json(404, {"error": {"message": "not found"}})

    def chat(self, body):
        messages = body.get("messages") or []
        prompt = "\n".join(
            m["content"] if isinstance(m.get("content"), str) else json.dumps(m.get("content"))
            for m in messages
        )
        with LOCK:
            STATE["chat"] += 1
            markers = set(STATE["fail_markers"])
        match = INPUT_RE.search(prompt)
        if match:
            text = match.group(1)
            if any(m and m in text for m in markers):
                with LOCK:
                    STATE["failed"] += 1
                self._json(400, {"error": {"message": "fake LLM told to fail this text", "type": "invalid_request_error"}})
                return
            content = extraction_rows(text)
        elif "keywords" in prompt.lower() and "json" in prompt.lower():
            content = json.dumps({"high_level_keywords": ["memory"], "low_level_keywords": ["note"]})
        else:
            content = "A short summary."
        self._json(200, {
            "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": body.get("model", "fake"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        })

    def embeddings(self, body):
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        inputs = inputs or []
        with LOCK:
            STATE["embeddings"] += 1
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(inputs):
            vec = vector(str(text))
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if as_base64 else vec
            data.append({"object": "embedding", "index": i, "embedding": emb})
        self._json(200, {"object": "list", "data": data, "model": body.get("model", "fake"),
                         "usage": {"prompt_tokens": 1, "total_tokens": 1}})


def main():
    global DIM
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--dim", type=int, default=64)
    args = parser.parse_args()
    DIM = args.dim
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)
    print(f"fake-llm listening on http://{args.host}:{port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
