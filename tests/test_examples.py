"""The README's runnable examples really run."""

from __future__ import annotations

import ast
import subprocess
import sys

from .support import ROOT, child_env


def test_embed_example_runs_and_counts() -> None:
    r = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "embed.py"), "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("serving on http://127.0.0.1:") and lines[-1] == "total 200"
    recs = [ast.literal_eval(line) for line in lines[1:-1]]
    assert sum(rec["count"] for rec in recs) == 200 and recs[-1]["partial"] is True
