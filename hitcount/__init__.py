"""hitcount: an exact hit counter. `GET /log` counts a hit; each wall-clock second becomes one record.

The public API for embedding is `Collector` (also `Server`, `serve`) and `Config`;
`Record` is what each second emits.
"""

from .collector import Collector
from .config import Config
from .records import Event, Record
from .server import Server, serve

__version__ = "0.1.0"

__all__ = ["Collector", "Config", "Event", "Record", "Server", "serve", "__version__"]
