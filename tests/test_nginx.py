"""The load-balancer example, run for real: nginx in front of two collectors, counts add up exactly."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from pathlib import Path

import uvloop

from .load import load
from .support import ROOT, Proc, check_series, connect, free_port, records, track

EXAMPLE = ROOT / "examples" / "nginx" / "hitcount-lb.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def _nginx_conf(tmp: Path, listen: int, ports: list[int]) -> Path:
    text = EXAMPLE.read_text()
    text = text.replace("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{listen};")
    text = text.replace("127.0.0.1:3000 ", f"127.0.0.1:{ports[0]} ").replace(
        "127.0.0.1:3002 ", f"127.0.0.1:{ports[1]} "
    )
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    assert body.count("127.0.0.1:") == 3, "the example's addresses changed; update this test"
    assert f":{listen};" in body and all(f":{p} " in body for p in ports)
    conf = tmp / "nginx.conf"
    conf.write_text(text)
    return conf


def _wait_listening(port: int, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        assert proc.poll() is None, "nginx exited"
        try:
            connect(port, timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("nginx did not start")


def test_two_collectors_behind_nginx_count_exactly(tmp_path: Path) -> None:
    assert Path(NGINX).exists(), "nginx is required (apt-get install nginx-light; .ci/run does it)"
    collectors = []
    for name in ("c1", "c2"):
        d = tmp_path / name
        d.mkdir()
        collectors.append(Proc(d, ["--server-id", name]).start())
    listen = free_port()
    conf = _nginx_conf(tmp_path, listen, [c.port for c in collectors])
    nginx = track(
        subprocess.Popen(
            [NGINX, "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"], stderr=subprocess.PIPE
        )
    )
    try:
        _wait_listening(listen, nginx)
        acked = uvloop.run(load(listen, [(20, 500, 1), (10, 500, 4)]))
    finally:
        nginx.terminate()
        nginx.wait(20)
        codes = [c.stop() for c in collectors]
    assert acked == 15_000 and codes == [0, 0]
    per = []
    for c in collectors:
        recs = records(c.log)
        check_series(recs)
        per.append(sum(r["count"] for r in recs))
    assert sum(per) == acked
    assert min(per) > 0, f"one collector got nothing: {per}"
    assert not re.search(r"\[(error|crit|alert|emerg)\]", (tmp_path / "nginx-error.log").read_text())
