"""Differential test of the byte-offset logic (raw head measurement, the switch to the careful parser
mid-read, carry-over between reads): random request streams near every limit, fed whole and in a
random chunking on a fake transport, must get the same answers and the same count, every 2xx must be
a counted hit, and where exactly one outcome is right, it must be the oracle's.
`HITCOUNT_DIFF_SEEDS=20000` for a deeper run (seeded: a failure names its seed)."""

from __future__ import annotations

import os
import random
import time
from typing import Any

import pytest

from hitcount.config import Config
from hitcount.counter import Slots
from hitcount.protocol import HitProtocol, Site

from .fakes import Transport
from .wire import sniff

URL, HEAD, FIELDS, BODY = 64, 400, 8, 300
CONFIG = Config(
    methods=("GET", "HEAD", "PUT", "POST"),
    limit_max_url=URL,
    limit_max_head=HEAD,
    limit_max_headers=FIELDS,
    limit_max_body=BODY,
)
SEEDS = int(os.environ.get("HITCOUNT_DIFF_SEEDS", "3000"))


def feed(reads: list[bytes]) -> tuple[list[int], int]:
    slots = Slots.anonymous(1)
    site: Any = Site(CONFIG, slots.counter(0), time.time())
    proto = HitProtocol(site)
    t = Transport()
    proto.connection_made(t)
    for r in reads:
        proto.data_received(r)
    return [x.status for x in sniff(bytes(t.data)) if x.status >= 200], slots.total()


def body(rng: random.Random) -> bytes:
    if rng.random() < 0.5:  # bytes that look like heads and blank lines
        parts = [b"\r\n", b"\r\n\r\n", b"GET /log HTTP/1.1\r\n", b"x", b"\n"]
        return b"".join(rng.choice(parts) for _ in range(rng.randint(0, 30)))[: BODY - 10]
    return bytes(rng.randrange(256) for _ in range(rng.choice([0, 1, 10, 100, 290])))


def request(rng: random.Random) -> tuple[bytes, int, bool, bool, bool]:
    """(bytes, status, closes after, sure, double): `sure` is False near a limit or over two of
    them; `double` is True over two (then either refusal is right, and which one may depend on
    where the reads end)."""
    method = rng.choice([b"GET"] * 4 + [b"HEAD", b"PUT", b"POST", b"DELETE", b"OPTIONS"])
    target = rng.choice([b"/log", b"/log?a=1", b"/x", b"/log/y", b"/"])
    if rng.random() < 0.1:
        target = b"/log?" + b"u" * rng.choice([URL - 6, URL - 5, URL - 4, URL + 20])
    version = rng.choice([b"1.1"] * 4 + [b"1.0"])
    many = rng.random() < 0.3
    n = rng.choice([0, 1, 3, FIELDS - 2, FIELDS - 1, FIELDS, FIELDS + 1]) if many else rng.randint(0, 3)
    fields = [b"Host: h"] + [b"X-%d: %s" % (i, b"v" * rng.choice([0, 1, 5, 20])) for i in range(n)]
    if rng.random() < 0.05:
        fields.append(b"X-Big: " + b"b" * rng.choice([200, 300, 350, 500]))
    conn = rng.choice([b"", b"", b"", b"close", b"keep-alive"])
    if conn:
        fields.append(b"Connection: " + conn)
    payload, size, expect = b"", 0, False
    if method in (b"PUT", b"POST"):
        raw = body(rng)
        size = len(raw)
        if rng.random() < 0.5:
            fields.append(b"Transfer-Encoding: chunked")
            chunks, i = [], 0
            while i < size:
                piece = raw[i : i + rng.randint(1, 50)]
                i += len(piece)
                ext = rng.choice([b"", b";a=b", b';q="z"'])
                chunks.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
            payload = b"".join(chunks) + b"0\r\n" + rng.choice([b"", b"T: v\r\n"]) + b"\r\n"
        else:
            fields.append(b"Content-Length: %d" % size)
            payload = raw
        expect = bool(size) and rng.random() < 0.3
        if expect:
            fields.append(b"Expect: 100-continue")
    rng.shuffle(fields)
    lead = rng.choice([b""] * 8 + [b"\r\n", b"\r\n\r\n"])
    line = b"%s %s HTTP/%s\r\n" % (method, target, version)
    head = line + b"".join(f + b"\r\n" for f in fields) + b"\r\n"
    on_log = target == b"/log" or target.startswith(b"/log?")
    status = (204 if method != b"DELETE" and method != b"OPTIONS" else 405) if on_log else 404
    closes = conn == b"close" or (version == b"1.0" and conn != b"keep-alive")
    over = [len(target) > URL, len(fields) > FIELDS, len(head) > HEAD, size > BODY]
    if any(over):
        status, closes = (414, 431, 431, 413)[over.index(True)], True
    near = abs(len(target) - URL) <= 2 or abs(len(head) - HEAD) <= 40 or len(fields) == FIELDS
    if expect and version == b"1.1" and status in (404, 405):
        closes = True
    return lead + head + payload, status, closes, not near and sum(over) <= 1, sum(over) > 1


@pytest.mark.parametrize("block", range(6))
def test_whole_and_chunked_agree_with_each_other_and_the_oracle(block: int) -> None:
    for seed in range(block * SEEDS // 6, (block + 1) * SEEDS // 6):
        rng = random.Random(seed)
        reqs = [request(rng) for _ in range(rng.randint(1, 8))]
        stream = b"".join(r[0] for r in reqs)
        k = min(len(stream) + 1, rng.choice([1, 2, 3, 6, 20]))
        cuts = [0, *sorted(rng.sample(range(len(stream) + 1), k)), len(stream)]
        chunks = [stream[a:b] for a, b in zip(cuts, cuts[1:], strict=False) if b > a]
        whole, split = feed([stream]), feed(chunks)
        if whole != split and any(r[4] for r in reqs):  # the last refusal may be either one
            assert whole[1] == split[1] and whole[0][:-1] == split[0][:-1], f"seed {seed}"
            assert {whole[0][-1], split[0][-1]} <= {413, 414, 431}, f"seed {seed}"
        else:
            assert whole == split, f"seed {seed}"
        assert whole[0].count(204) == whole[1], f"seed {seed}"  # HEAD counts in CONFIG
        if all(r[3] for r in reqs):
            expected, hits = [], 0
            for _, status, closes, _, _ in reqs:
                expected.append(status)
                hits += status == 204
                if closes:
                    break
            assert whole == (expected, hits), f"seed {seed}"
