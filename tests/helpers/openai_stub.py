"""A small real HTTP server speaking the OpenAI chat-completions API, scripted to fail on demand
(a real llama.cpp server cannot be made to return 429, hang or cut a stream when a test wants)."""

from __future__ import annotations

import http.server
import json
import re
import threading
import time


def send_json(handler, status: int, body) -> None:
    """One JSON reply with its length (the test servers' non-streaming answers)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


class LoopbackServer:
    """A threaded HTTP server on a free 127.0.0.1 port serving `handler`; `url` ends in /v1."""

    def _serve(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        handler.log_message = lambda *args: None
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Stub(LoopbackServer):
    """Serves /v1/chat/completions on 127.0.0.1. `script` holds one action per request (the last one
    repeats): "answer" (stream the sentence of the prompt that holds `needle`, else `reply`),
    ("status", code), ("slow", seconds), "garbage", "cut"."""

    def __init__(self, reply: str = "I cannot answer from the given information.", needle: str | None = None) -> None:
        self.reply, self.needle = reply, needle
        self.script: list = ["answer"]
        self.requests: list[dict] = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                action = stub.script[min(len(stub.requests), len(stub.script)) - 1]
                stub.act(self, action, body)

        self._serve(Handler)

    def text_for(self, body: dict) -> str:
        prompt = body["messages"][-1]["content"]
        if self.needle:
            for sentence in re.split(r"(?<=[。!?！？])\s*|(?<=\.)\s+", prompt):
                if self.needle in sentence and "<document" not in sentence:
                    return sentence.strip()
        return self.reply

    def act(self, handler, action, body: dict) -> None:
        kind, arg = (action, None) if isinstance(action, str) else action
        if kind == "status":
            send_json(handler, arg, {"error": {"message": f"status {arg}", "type": "test"}})
            return
        if kind == "slow":
            time.sleep(arg)
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Connection", "close")
        handler.end_headers()
        if kind == "garbage":
            handler.wfile.write(b"data: {this is not json\n\n")
            handler.wfile.flush()
            return
        words = re.findall(r"\S+\s*", self.text_for(body))
        if kind == "cut":
            words = words[: max(1, len(words) // 2)]
        for i, word in enumerate(words):
            chunk = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
                     "choices": [{"index": 0, "delta": {"content": word}, "finish_reason": None}]}
            handler.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            handler.wfile.flush()
        if kind == "cut":  # the server dies: the connection closes without the end of the stream
            handler.wfile.write(b"data: {\"id\": \"x\", \"choi")
            handler.wfile.flush()
            handler.close_connection = True
            return
        end = {"id": "x", "object": "chat.completion.chunk", "created": 0, "model": body["model"],
               "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        handler.wfile.write(f"data: {json.dumps(end)}\n\ndata: [DONE]\n\n".encode())
        handler.wfile.flush()
