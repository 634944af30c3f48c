"""Measuring: a monotonic clock synchronised on CUDA, and peak memory per device."""

from __future__ import annotations

import os
import resource
import threading
import time

import torch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Clock:
    """``lap()`` returns seconds since the previous lap, after synchronising the device."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        sync(device)
        self.start = self.last = time.perf_counter()

    def lap(self) -> float:
        sync(self.device)
        now = time.perf_counter()
        dt, self.last = now - self.last, now
        return dt

    def since_start(self) -> float:
        sync(self.device)
        return time.perf_counter() - self.start


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the high-water mark is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory of a run: ``torch.cuda.max_memory_allocated`` on CUDA; on CPU the growth of the
    process's resident set above its level at the start, sampled every ``interval`` seconds."""

    def __init__(self, device: torch.device, interval: float = 0.002) -> None:
        self.device = device
        self.interval = interval
        self.kind = "cuda_max_memory_allocated" if device.type == "cuda" else "cpu_peak_rss_growth_sampled_2ms"
        self._stop = threading.Event()
        self._peak = 0
        self._base = 0

    def __enter__(self) -> "PeakMemory":
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._base = self._peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, _rss_bytes())

    def __exit__(self, *exc) -> None:
        if self.device.type != "cuda":
            self._stop.set()
            self._thread.join()
            self._peak = max(self._peak, _rss_bytes())

    @property
    def peak_bytes(self) -> int:
        if self.device.type == "cuda":
            return int(torch.cuda.max_memory_allocated(self.device))
        return max(0, self._peak - self._base)
