"""What the benchmarks share: the machine's description, growth ratios, cProfile reports."""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
from collections.abc import Callable


def cpu() -> str:
    """The CPU model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            return next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def cores() -> int:
    """The cores this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def load() -> str:
    return ", ".join(f"{value:.2f}" for value in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"


def growth(rows: list[dict], key: str) -> float:
    """Time per node at the largest size over time per node at the smallest."""
    first, last = rows[0], rows[-1]
    return (last[key] / last["nodes"]) / (first[key] / first["nodes"])


def profiled(call: Callable[[], object], limit: int = 25) -> str:
    """Run ``call`` under cProfile; the top ``limit`` functions by own time."""
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        call()
    finally:
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(limit)
    return out.getvalue()
