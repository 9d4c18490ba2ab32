"""Peak resident-memory growth over a block of code, sampled by a background thread."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_bytes() -> int:
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakRss:
    """``with PeakRss() as m: ...`` then ``m.growth_mb``: the peak RSS above the start."""

    def __init__(self, interval_s: float = 0.002) -> None:
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self.start_bytes = 0
        self.peak_bytes = 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, current_rss_bytes())
            time.sleep(self._interval)

    def __enter__(self) -> PeakRss:
        self.start_bytes = self.peak_bytes = current_rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_bytes = max(self.peak_bytes, current_rss_bytes())

    @property
    def growth_mb(self) -> float:
        return (self.peak_bytes - self.start_bytes) / 2**20
