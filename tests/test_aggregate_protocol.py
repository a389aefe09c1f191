"""AggProtocol on a fake transport: any byte split, answers in request order, handlers run in order."""

from __future__ import annotations

import asyncio
import json

import pytest

from hitcount.aggregator.http import AggProtocol, Answer, Connections, Request, answer_json

from .support import Response


class FakeTransport:
    def __init__(self) -> None:
        self.out = b""
        self.closed = False
        self.eof = False

    def set_write_buffer_limits(self, high: int, low: int) -> None:
        pass

    def write(self, data: bytes) -> None:
        self.out += data

    def is_closing(self) -> bool:
        return self.closed

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def parse(out: bytes) -> list[Response]:
    resps = []
    while out:
        head, _, rest = out.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
        n = int(headers.get("content-length", "0"))
        resps.append(Response(int(lines[0].split()[1]), headers, rest[:n]))
        out = rest[n:]
    return resps


BODY = json.dumps({"server": "a", "counts": [[1, 2]]}).encode()
WIRE = (
    b"PUT /logBatch HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
    + b"GET /count?since=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    + b"PUT /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
)


@pytest.mark.parametrize("step", [1, 7, len(WIRE)])
async def test_any_split_answers_in_order(step: int) -> None:
    seen: list[Request] = []

    async def handler(req: Request) -> Answer:
        seen.append(req)
        # the first request is the slowest: its answer must still come first
        await asyncio.sleep(0.05 if len(seen) == 1 else 0)
        return answer_json(200, {"n": len(seen), "body": req.body.decode()})

    proto = AggProtocol(Connections(handler))
    t = FakeTransport()
    proto.connection_made(t)
    for i in range(0, len(WIRE), step):
        proto.data_received(WIRE[i : i + step])
    for _ in range(50):
        await asyncio.sleep(0.01)
        if len(parse(t.out)) == 3:
            break
    resps = parse(t.out)
    assert [json.loads(r.body) for r in resps] == [
        {"n": 1, "body": BODY.decode()},
        {"n": 2, "body": ""},
        {"n": 3, "body": "abc"},
    ]
    assert [(r.method, r.target) for r in seen] == [
        ("PUT", "/logBatch"),
        ("GET", "/count?since=1"),
        ("PUT", "/x"),
    ]
    assert all(r.headers["content-type"] == "application/json" for r in resps)
    assert not t.closed
