"""hitcount's benchmark harness: hitcount against its peers, every figure from one run.

Owns nothing at import time; `python bench/run.py` (or `python -m bench.run`) is the entry point.
Must not: be imported by the `hitcount` package, or send traffic anywhere but loopback.
"""
