#!/usr/bin/env python3
"""Starts the real lightrag-server (the installed 1.5.7, unchanged) with one
test hook, so a test can make it slow to enqueue what it accepted.

LightRAG answers an insert with 200 once a background task holds the
documents; that task writes their doc_status rows later (its enqueue step,
`apipeline_enqueue_documents`), and only then do the names count for the 409
check and show in the document list. On a loaded server that step can lag by
seconds. The hook makes the lag happen on demand: before the step, the server
asks the fake LLM (`FAKE_LLM_CONTROL`) `POST /_control/enqueue_gate` with the
file paths and sleeps the "delay" it answers (0 unless a test switched slow
enqueueing on for a marker). With no `FAKE_LLM_CONTROL`, nothing changes.

Usage (in the folder of the server's .env): serve.py, like lightrag-server.
"""
import asyncio
import json
import os
import sys
import urllib.request

from lightrag.api.lightrag_server import main
from lightrag.lightrag import LightRAG

CONTROL = os.environ.get("FAKE_LLM_CONTROL", "").rstrip("/")
ENQUEUE = LightRAG.apipeline_enqueue_documents


def asked_delay(paths):
    request = urllib.request.Request(
        CONTROL + "/_control/enqueue_gate",
        data=json.dumps({"file_paths": paths}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as answer:
        return float(json.loads(answer.read() or b"{}").get("delay") or 0)


async def gated_enqueue(self, *args, **kwargs):
    # apipeline_enqueue_documents(input, ids=None, file_paths=None, ...)
    paths = kwargs.get("file_paths", args[2] if len(args) > 2 else None)
    if CONTROL and paths:
        paths = [paths] if isinstance(paths, str) else list(paths)
        try:
            delay = await asyncio.to_thread(asked_delay, paths)
        except Exception:
            delay = 0.0
        if delay > 0:
            await asyncio.sleep(delay)
    return await ENQUEUE(self, *args, **kwargs)


LightRAG.apipeline_enqueue_documents = gated_enqueue

if __name__ == "__main__":
    sys.exit(main())
