"""Peak memory of a piece of work: CUDA's allocator counter, or the process's resident set."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch


def _rss_bytes() -> int:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_memory_mib(work: Callable[[], object], device: torch.device) -> tuple[object, float]:
    """Run ``work`` and return (its result, peak extra memory in MiB).

    On CUDA: ``torch.cuda.max_memory_allocated`` above the starting allocation. On the CPU:
    the resident set sampled every 5 ms above its value at the start (an upper bound on the
    tensors' share, since it also counts allocator caching).
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        result = work()
        torch.cuda.synchronize(device)
        return result, (torch.cuda.max_memory_allocated(device) - start) / 2**20
    start, peak, running = _rss_bytes(), [0], [True]

    def sample() -> None:
        while running[0]:
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        result = work()
    finally:
        running[0] = False
        thread.join()
    return result, max(peak[0] - start, 0) / 2**20
