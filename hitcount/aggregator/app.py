"""The aggregator's routes: PUT /logBatch (one second, or a JSON batch), GET /count, /livez, /readyz.

Owns: `App` (request → validated call on the store → JSON answer) and the query parsing rules.
Imports `store` (validation, types), `http` (Request, answers), `records` (Event for the error log).
Must not: touch the store's files or sockets itself, or answer 204 before the store has returned.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable
from urllib.parse import parse_qsl

from ..records import Event
from .http import Answer, Request, answer_json
from .store import BadInput, Store, Window, check_batch

DIGITS = re.compile(r"[0-9]{1,19}")
ROUTES = {"/logBatch": ("PUT", "POST"), "/count": ("GET",), "/livez": ("GET",), "/readyz": ("GET",)}
NO_CONTENT: Answer = (204, b"", b"")


class App:
    """Routes requests to the store. `clock` is injected so tests can pin "now"."""

    def __init__(
        self, store: Store, log: Callable[[Event], None], *, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self._log = log
        self._clock = clock

    async def __call__(self, req: Request) -> Answer:
        path, _, query = req.target.partition("?")
        methods = ROUTES.get(path)
        if methods is None:
            return answer_json(404, {"error": f"no such path: {path}"})
        if req.method not in methods:
            allow = ", ".join(methods).encode()
            return answer_json(405, {"error": f"use {' or '.join(methods)}"}, b"Allow: %s\r\n" % allow)
        try:
            params = _params(query)
            if path == "/logBatch":
                return await self._log_batch(params, req.body)
            if path == "/count":
                return await self._count(params)
        except BadInput as exc:
            return answer_json(400, {"error": str(exc)})
        except OSError as exc:  # redis-py's connection errors are OSErrors too
            return self._unavailable(exc)
        except Exception as exc:
            if type(exc).__module__.startswith(("redis", "sqlite3")):
                return self._unavailable(exc)
            raise
        return answer_json(200, {"status": "ok"})

    async def _log_batch(self, params: dict[str, str], body: bytes) -> Answer:
        now = self._clock()
        if body.strip():
            if set(params) - {"server", "run"}:
                raise BadInput("send either a JSON body or timestamp/count parameters, not both")
            try:
                doc = json.loads(body)
            except (ValueError, RecursionError):
                raise BadInput("body is not valid JSON") from None
            if not isinstance(doc, dict):
                raise BadInput('body must be {"server": S, "counts": [[timestamp, count], ...]}')
            server = doc.get("server", params.get("server"))
            run = doc.get("run", params.get("run", ""))
            batch = check_batch(server, run, doc.get("counts"), now)
        else:
            _only(params, {"timestamp", "server", "count", "run"})
            for name in ("timestamp", "server", "count"):
                if name not in params:
                    raise BadInput(f"missing parameter: {name}")
            item = [_int(params, "timestamp"), _int(params, "count")]
            batch = check_batch(params["server"], params.get("run", ""), [item], now)
        await self.store.put(batch, now)
        return NO_CONTENT

    async def _count(self, params: dict[str, str]) -> Answer:
        _only(params, {"since", "until", "by"})
        now = self._clock()
        if "since" in params:
            since = _int(params, "since")
            until = _int(params, "until") if "until" in params else math.floor(now) + 1
        else:  # the last complete second
            since = math.floor(now) - 1
            until = _int(params, "until") if "until" in params else since + 1
        by = params.get("by")
        if by not in (None, "server"):
            raise BadInput("by must be 'server'")
        if until < since:
            raise BadInput("until must not be before since")
        if until - since > self.store.retention:
            raise BadInput(f"window longer than the retention ({self.store.retention} s)")
        return answer_json(200, _window_json(await self.store.window(since, until, by == "server")))

    def _unavailable(self, exc: BaseException) -> Answer:
        self._log(
            Event(self._clock(), "error", "store_unavailable", f"store failed: {exc}", {"error": repr(exc)})
        )
        return answer_json(503, {"error": f"store unavailable: {exc}"}, b"Retry-After: 1\r\n")


def _params(query: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query), errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise BadInput("malformed query string") from None
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise BadInput(f"parameter given twice: {name}")
        params[name] = value
    return params


def _only(params: dict[str, str], allowed: set[str]) -> None:
    extra = sorted(set(params) - allowed)
    if extra:
        raise BadInput(f"unknown parameter: {extra[0]}")


def _int(params: dict[str, str], name: str) -> int:
    text = params[name]
    if not DIGITS.fullmatch(text):
        raise BadInput(f"{name} must be a whole non-negative number: {text!r}")
    return int(text)


def _window_json(w: Window) -> dict[str, object]:
    out: dict[str, object] = {"since": w.since, "until": w.until, "total": w.total, "series": w.series}
    if w.servers is not None:
        out["servers"] = w.servers
    return out
