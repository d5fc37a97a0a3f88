"""Remote embedding: an OpenAI-compatible `/v1/embeddings` endpoint (OpenAI, Ollama, vLLM, TEI,
Infinity) as a space's model, for those who run the model on a GPU server.

A space uses one with `model => 'endpoint:NAME'`, NAME a row of memex.endpoints (memex_admin
creates it with memex.create_endpoint). The same encoder serves the in-database path (embed,
embed_batch, embed_pending: one backend's requests) and `memex worker`. Requests carry
`batch_size` inputs each, `concurrency` of them in flight at once, at most `requests_per_minute`
started and `tokens_per_minute` sent per minute; a 429 or 5xx is retried with exponential
backoff (honouring Retry-After) by urllib3, `retries` times. An endpoint that cannot be
reached, or answers wrong, fails the whole call with an error naming its URL: nothing is stored
and the chunks stay pending.

The API key is never in a table: memex.set_endpoint_key writes it to a file of the database
server (mode 0600, owned by the server's OS user, in its data directory), read here; the
environment variable MEMEX_ENDPOINT_KEY_<NAME> (upper case, - as _) wins over the file, and is
how `memex worker` gets it. memex_app can read neither (docs/embedding.md, "Remote models").
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from memex_db.errors import InvalidParameter, MemexDbError

PREFIX = "endpoint:"
PROVIDER = "openai"
KEY_DIR = "memex_endpoint_keys"  # under the server's data directory (a backend's working dir)
OPTIONS = {  # name: (default, minimum, maximum)
    "batch_size": (32, 1, 2048),
    "concurrency": (4, 1, 64),
    "requests_per_minute": (0, 0, 1_000_000),  # 0: no limit
    "tokens_per_minute": (0, 0, 1_000_000_000),  # 0: no limit; WordPiece tokens sent
    "timeout_s": (30, 1, 600),
    "retries": (4, 0, 20),
    "dimensions": (0, 0, 16000),  # 0: the model's own; else asked for and checked
}


class RemoteFailed(MemexDbError):
    """The endpoint could not be reached or kept failing: 58000 system_error, with its URL."""

    sqlstate = "58000"


class RemoteInputRefused(MemexDbError):
    """The endpoint refused the input itself (HTTP 400, 413, 422: too long, malformed):
    54000 program_limit_exceeded, so a batch that holds it is split down to the chunk at fault
    (memex._embed_or_isolate) instead of failing the run."""

    sqlstate = "54000"


# Answers that refuse the request's content, not the client: the batch is what is wrong.
INPUT_REFUSED = (400, 413, 422)
# An answer is read up to this size: 256 vectors of 3,072 dimensions as JSON are about 16 MB;
# a server that streams more is not answering the request (a read of it all was unbounded).
MAX_ANSWER_BYTES = 64 << 20


class RemoteAnswerInvalid(MemexDbError):
    """The endpoint answered something that is not what was asked: 22000 data_exception."""

    sqlstate = "22000"


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str  # the API base, e.g. http://127.0.0.1:7997/v1 (…/embeddings is appended)
    model: str  # the model name the server knows
    options: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Any) -> Endpoint:
        options = row["options"]
        if isinstance(options, str):
            options = json.loads(options)
        return cls(name=row["name"], url=row["url"], model=row["model"],
                   options=check_options(options or {}))  # fmt: skip

    def option(self, name: str) -> int:
        return int(self.options.get(name, OPTIONS[name][0]))

    @property
    def embeddings_url(self) -> str:
        return self.url.rstrip("/") + "/embeddings"

    @property
    def shown_url(self) -> str:
        """The embeddings URL as messages print it: without credentials or a query string (an
        endpoint created before create_endpoint refused them may still hold one)."""
        return redacted(self.embeddings_url)

    def cache_key(self) -> str:
        """Changes with any of the row's columns: an altered endpoint is loaded again."""
        row = json.dumps([self.url, self.model, sorted(self.options.items())])
        return hashlib.sha256(row.encode()).hexdigest()[:16]

    def signature(self) -> str:
        """What a space's model hash is over: the server can change weights behind a name
        without memex seeing it (docs/embedding.md says so)."""
        wanted = self.option("dimensions")
        return hashlib.sha256(
            f"{self.url.rstrip('/')}\0{self.model}\0{wanted}".encode()
        ).hexdigest()


def redacted(url: str) -> str:
    """A URL without its user:password@ and its query string or fragment."""
    url = re.sub(r"^(https?://)[^/@]*@", r"\1", url)
    return re.split(r"[?#]", url, maxsplit=1)[0]


def endpoint_name(model: str) -> str | None:
    return model[len(PREFIX) :] if model.startswith(PREFIX) else None


def check_options(options: dict[str, Any]) -> dict[str, int]:
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise InvalidParameter(f"unknown endpoint options: {', '.join(unknown)}",
                               hint=f"known: {', '.join(OPTIONS)}")  # fmt: skip
    checked = {}
    for name, value in options.items():
        _default, low, high = OPTIONS[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidParameter(f"endpoint option {name} must be an integer in {low}..{high}, "
                                   f"not {value!r}")  # fmt: skip
        checked[name] = value
    return checked


def env_key_name(endpoint: str) -> str:
    return "MEMEX_ENDPOINT_KEY_" + endpoint.upper().replace("-", "_")


def key_path(endpoint: str) -> str:
    return os.path.join(os.getcwd(), KEY_DIR, endpoint)


def api_key(endpoint: str) -> str | None:
    from_env = os.environ.get(env_key_name(endpoint))
    if from_env:
        return from_env
    try:
        with open(key_path(endpoint), encoding="utf-8") as handle:
            return handle.read().strip() or None
    except FileNotFoundError:
        return None


def store_key(endpoint: str, key: str | None) -> bool:
    """Writes (or with an empty key removes) the endpoint's key file; True when one is kept."""
    folder = os.path.dirname(key_path(endpoint))
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    path = key_path(endpoint)
    if not key:
        if os.path.exists(path):
            os.unlink(path)
        return False
    temp = path + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    os.replace(temp, path)  # a reader sees the old key or the new one, never half of one
    return True


class RateLimit:
    """At most `per_minute` request starts in any 60 s (evenly spaced); 0: no limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self.clock = clock
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = self.clock()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            time.sleep(start - now)


class TokenBudget:
    """At most `per_minute` tokens sent in any minute: a bucket of one minute's tokens, filled
    continuously; a request waits until its tokens are there (one larger than the bucket waits
    for a full bucket and empties it). 0: no limit."""

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic):
        self.per_minute = per_minute
        self.clock = clock
        self.level = float(per_minute)
        self.at = clock()
        self.lock = threading.Lock()

    def take(self, tokens: int) -> None:
        if not self.per_minute:
            return
        with self.lock:  # requests wait in turn: the bucket is never promised twice
            now = self.clock()
            self.level = min(self.per_minute, self.level + (now - self.at) * self.per_minute / 60)
            self.at = now
            wanted = min(tokens, self.per_minute)
            if self.level < wanted:
                wait = (wanted - self.level) * 60 / self.per_minute
                time.sleep(wait)
                self.level, self.at = wanted, now + wait
            self.level -= wanted


class RemoteEncoder:
    """An Encoder (models.Encoder) over an OpenAI-compatible embeddings endpoint."""

    provider = PROVIDER
    threads = 1
    token_budget = 0
    max_tokens = 512

    def __init__(self, endpoint: Endpoint, breakdown: dict[str, float]):
        import urllib3

        self.endpoint = endpoint
        self.retry = urllib3.Retry(
            total=endpoint.option("retries"), connect=endpoint.option("retries"),
            backoff_factor=0.5, backoff_max=20, status_forcelist=(429, 500, 502, 503, 504),
            allowed_methods=None, respect_retry_after_header=True, raise_on_status=False,
        )  # fmt: skip
        self.http = urllib3.PoolManager(
            maxsize=endpoint.option("concurrency"),
            timeout=urllib3.Timeout(
                connect=min(10, endpoint.option("timeout_s")), read=endpoint.option("timeout_s")
            ),
        )
        self.limit = RateLimit(endpoint.option("requests_per_minute"))
        self.budget = TokenBudget(endpoint.option("tokens_per_minute"))
        self._counter: Any = None
        self.dimensions = 0
        started = time.perf_counter()
        self.dimensions = len(self._request(["dimension probe"])[0])
        breakdown["probe_request"] = time.perf_counter() - started
        wanted = endpoint.option("dimensions")
        if wanted and self.dimensions != wanted:
            raise RemoteAnswerInvalid(
                f"embedding endpoint {endpoint.shown_url} returned {self.dimensions}-"
                f"dimension vectors for model {endpoint.model!r}, but endpoint "
                f"{endpoint.name!r} asks for {wanted}",
                hint="the server ignores the dimensions parameter: drop the option, or serve a "
                "model with that many dimensions",
            )

    def set_threads(self, threads: int) -> None:
        pass  # the work is on the server; concurrency is the endpoint's option

    def encode(self, texts: list[str], batch_size: int) -> list[list[float]]:
        size = self.endpoint.option("batch_size")
        batches = [texts[i : i + size] for i in range(0, len(texts), size)]
        workers = min(self.endpoint.option("concurrency"), len(batches))
        if workers <= 1:
            results = [self._request(b) for b in batches]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(self._request, batches))
        return [vector for batch in results for vector in batch]

    def _request(self, texts: list[str]) -> list[list[float]]:
        body: dict[str, Any] = {"input": texts, "model": self.endpoint.model,
                                "encoding_format": "float"}  # fmt: skip
        if self.endpoint.option("dimensions"):
            body["dimensions"] = self.endpoint.option("dimensions")
        headers = {"Content-Type": "application/json"}
        key = api_key(self.endpoint.name)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.endpoint.shown_url  # what messages print; the request goes to the real one
        if self.budget.per_minute:
            self.budget.take(self._tokens(texts))
        self.limit.wait()
        try:
            response = self.http.request("POST", self.endpoint.embeddings_url,
                                         body=json.dumps(body).encode(),
                                         headers=headers, retries=self.retry,
                                         preload_content=False)  # fmt: skip
            data = response.read(MAX_ANSWER_BYTES + 1)
            response.release_conn()
        except Exception as exc:  # urllib3's MaxRetryError and friends: the reason is inside
            reason = getattr(exc, "reason", None) or exc
            raise RemoteFailed(
                f"embedding endpoint {url} unreachable: {reason}",
                hint=f"check that the server of endpoint {self.endpoint.name!r} runs and that "
                "the database server can reach it (memex.endpoints holds its URL)",
            ) from None
        if len(data) > MAX_ANSWER_BYTES:
            raise RemoteAnswerInvalid(
                f"embedding endpoint {url} answered more than {MAX_ANSWER_BYTES >> 20} MB for "
                f"{len(texts)} texts: not an embeddings response",
                hint="lower the endpoint's batch_size option if its vectors are that large",
            )
        if response.status in INPUT_REFUSED:
            raise RemoteInputRefused(
                f"embedding endpoint {url} refused the input: HTTP {response.status}: "
                f"{data[:300].decode('utf-8', 'replace')}",
                hint="a text over the server's input limit, or one it cannot read",
            )
        if response.status != 200:
            raise RemoteFailed(
                f"embedding endpoint {url} answered HTTP {response.status}: "
                f"{data[:300].decode('utf-8', 'replace')}",
                hint="401/403: set the key with memex.set_endpoint_key; 404: check the URL "
                "(the API base, ending in /v1) and the model name",
            )
        return self._vectors(url, texts, data)

    def _tokens(self, texts: list[str]) -> int:
        """The texts' tokens as the budget counts them: the bundled WordPiece tokenizer, the
        one that cut these chunks (the server's own tokenizer is on another machine)."""
        if self._counter is None:
            from memex_db import providers

            self._counter = providers.for_model(PREFIX + self.endpoint.name).tokenizer("")[0]
        return sum(len(e.ids) for e in self._counter.encode_batch(texts))

    def _vectors(self, url: str, texts: list[str], raw: bytes) -> list[list[float]]:
        try:
            data = sorted(json.loads(raw)["data"], key=lambda item: int(item.get("index", 0)))
            vectors = [[float(x) for x in item["embedding"]] for item in data]
        except (ValueError, KeyError, TypeError) as exc:
            raise RemoteAnswerInvalid(
                f"embedding endpoint {url} answered something that is not an embeddings "
                f"response ({type(exc).__name__}: {exc})"
            ) from None
        if len(vectors) != len(texts):
            raise RemoteAnswerInvalid(f"embedding endpoint {url} returned {len(vectors)} vectors "
                                      f"for {len(texts)} inputs")  # fmt: skip
        for vector in vectors:
            if self.dimensions and len(vector) != self.dimensions:
                raise RemoteAnswerInvalid(
                    f"embedding endpoint {url} returned a {len(vector)}-dimension vector; model "
                    f"{self.endpoint.model!r} gave {self.dimensions} when loaded",
                    hint="the model behind the endpoint changed: serve the old one again, or "
                    "re-embed into a new space (CALL memex.reembed)",
                )
        return [_unit(v, url) for v in vectors]


def _unit(vector: list[float], url: str) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    if not norm or not math.isfinite(norm):
        raise RemoteAnswerInvalid(f"embedding endpoint {url} returned a zero or non-finite vector")
    return [x / norm for x in vector]


# The row an Endpoint is made from; {} is the driver's placeholder ($1 in plpy, %s in psycopg).
ROW_SQL = "select name, url, model, options from memex.endpoints where name = {}"


def required(model: str, endpoint: Endpoint | None) -> Endpoint:
    """The endpoint an `endpoint:NAME` model needs: the row passed in, or 22023."""
    name = endpoint_name(model)
    if endpoint is None or endpoint.name != name:
        raise no_endpoint(str(name))
    return endpoint


def endpoint_for(model: str, fetch_row: Callable[[str], dict[str, Any] | None]) -> Endpoint | None:
    """The memex.endpoints row an `endpoint:NAME` model names, read by `fetch_row(name)`
    (ROW_SQL through plpy in a backend, through psycopg in memex worker); None for a local
    model, 22023 for an unknown endpoint."""
    name = endpoint_name(model)
    if name is None:
        return None
    row = fetch_row(name)
    if row is None:
        raise no_endpoint(name)
    return Endpoint.from_row(row)


def no_endpoint(name: str) -> InvalidParameter:
    return InvalidParameter(f"unknown endpoint {name!r}",
                            hint="create it with memex.create_endpoint (memex_admin)")  # fmt: skip
