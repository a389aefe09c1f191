"""The Aggregate & Report service: collectors PUT their per-second counts, anyone GETs exact totals.

Owns nothing itself; `service.Aggregator` wires `http`, `app` and a store from `store.open_store`.
The SQLite store needs only the stdlib; the Redis store needs the `hitcount[redis]` extra.
"""

from .service import Aggregator
from .store import Batch, Store, Window, open_store

__all__ = ["Aggregator", "Batch", "Store", "Window", "open_store"]
