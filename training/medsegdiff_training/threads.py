"""How many CPU threads a process computes with: one policy for the CLI, the plugin and benchmarks.

The policy looks at two things, without importing torch:

- **usable cores**: the CPUs of this process's affinity mask (``os.sched_getaffinity``), capped
  by a cgroup CPU quota where one is set (v2 ``cpu.max``, v1 ``cpu.cfs_quota_us`` over
  ``cpu.cfs_period_us``, on this process's cgroup or an ancestor), and shared between the
  ranks of a ``torchrun`` job on this machine (``LOCAL_WORLD_SIZE``);
- **busy cores**: how much of those CPUs other processes kept busy since this process last
  looked at ``/proc/stat`` (within 10 s; else during a 0.1 s look), this process's own CPU time
  left out; the one-minute load average where there is no ``/proc/stat``.

``auto`` is then the free cores (a core counts when at least 70 % of it is free), at least 1,
at most ``OMP_NUM_THREADS`` when that is set. Why not simply every core: PyTorch's CPU kernels
run as OpenMP teams that wait for their slowest thread, and a thread whose core another
process holds makes every operation wait for it (``benchmarks/bench_contention.py`` on a
busy 2-core machine: a fine-tune made 7 steps a minute on 2 threads, 79 on 1). A count
given by the user (``--threads N``) or by a parent process (:data:`ENV_THREADS`) is used as
it is.

Sampling and fine-tuning at once (the plugin's queue): :func:`split_for_finetune` gives a
fine-tune process started now its share of the free cores (:func:`finetune_environment`
passes it on, with OpenMP's passive wait, so that its idle threads sleep instead of spinning
on cores the viewer needs), and :func:`choose_threads` gives in-process sampling what is
left while that fine-tune runs (``choose_threads(reserved=its threads)``).

:func:`apply_threads` is the one place that sets torch's count. ``torch.set_num_threads`` is
global with PyTorch's native thread pool; with OpenMP (the official wheels) it sets the
calling thread's team size and the default of threads that start later, so a worker that
calls it at the start of each job computes with its own share.

Examples
--------
>>> auto_threads(CpuLoad(usable=4, busy=1.5))  # 2.5 free cores
2
>>> split_for_finetune(CpuLoad(usable=2, busy=0.0))
ThreadSplit(sampling=1, finetune=1)
>>> choose_threads(3).describe()
'3 threads (--threads)'
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

ENV_THREADS = "MEDSEGDIFF_THREADS"  # a count given by a parent process or the user
FREE_ENOUGH = 0.7  # a core at least this free counts as a free core
LOOK_S = 0.1  # how long measure_load watches /proc/stat
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC = Path("/proc")


@dataclass(frozen=True)
class CpuLoad:
    """The cores this process may use, and how many of them other work keeps busy."""

    usable: float
    busy: float = 0.0
    measured_by: str = "not measured"

    @property
    def free(self) -> float:
        return max(0.0, self.usable - self.busy)


@dataclass(frozen=True)
class ThreadChoice:
    """A thread count and where it came from (``auto``, ``--threads``, :data:`ENV_THREADS`)."""

    threads: int
    source: str
    load: CpuLoad | None = None

    def describe(self) -> str:
        """One line for a log: ``2 threads (auto: 2 usable cores, 0.1 busy with other work)``."""
        plural = "thread" if self.threads == 1 else "threads"
        if self.load is None:
            return f"{self.threads} {plural} ({self.source})"
        usable, busy = self.load.usable, self.load.busy
        measured = f"{usable:g} usable cores, {busy:.1f} busy with other work"
        return f"{self.threads} {plural} ({self.source}: {measured})"

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {"threads": self.threads, "source": self.source}
        if self.load is not None:
            record.update(
                usable_cores=round(self.load.usable, 2),
                busy_cores=round(self.load.busy, 2),
                measured_by=self.load.measured_by,
            )
        return record


@dataclass(frozen=True)
class ThreadSplit:
    """Threads for in-process sampling and for a fine-tune process running beside it."""

    sampling: int
    finetune: int


# --- what this process may use -------------------------------------------------------------------


def _ancestors(root: Path, path: str) -> list[Path]:
    """``root/a/b``, ``root/a``, ``root``: a quota set on any of them applies."""
    parts = [part for part in path.strip("/").split("/") if part]
    return [root.joinpath(*parts[:end]) for end in range(len(parts), -1, -1)]


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None


def _v2_quota(folder: Path) -> float | None:
    text = _read(folder / "cpu.max")  # "max 100000" or "150000 100000"
    if not text or text.split()[0] == "max":
        return None
    try:
        quota, period = (float(value) for value in text.split()[:2])
    except ValueError:
        return None
    return quota / period if period > 0 and quota > 0 else None


def _v1_quota(folder: Path) -> float | None:
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    try:
        quota_us, period_us = float(quota or "-1"), float(period or "0")
    except ValueError:
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def cgroup_cpu_quota(
    cgroup_root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC / "self/cgroup"
) -> float | None:
    """The tightest CPU quota (in cores) on this process's cgroups, or ``None`` without one.

    ``proc_cgroup`` lines read ``ID:CONTROLLERS:PATH``: ``0::PATH`` for cgroup v2 (quota in
    ``cpu.max``), ``N:cpu,cpuacct:PATH`` for v1 (mounted at ``cgroup_root/cpu,cpuacct`` or
    ``cgroup_root/cpu``).
    """
    text = _read(proc_cgroup)
    quotas: list[float] = []
    for line in (text or "").splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":
            found = [_v2_quota(folder) for folder in _ancestors(cgroup_root, path)]
        elif "cpu" in controllers.split(","):
            mounts = {cgroup_root / controllers, cgroup_root / "cpu", cgroup_root / "cpu,cpuacct"}
            found = [_v1_quota(f) for mount in mounts if mount.is_dir() for f in _ancestors(mount, path)]
        else:
            continue
        quotas += [quota for quota in found if quota is not None]
    return min(quotas) if quotas else None


def affinity_cpus() -> set[int]:
    """The CPUs this process may run on (every CPU where the OS cannot say)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def usable_cores(
    cgroup_root: Path = CGROUP_ROOT,
    proc_cgroup: Path = PROC / "self/cgroup",
    environ: Mapping[str, str] = os.environ,
    cpus: set[int] | None = None,
) -> float:
    """Cores this process may use: affinity, capped by a cgroup quota, shared by local ranks."""
    cores = float(len(cpus if cpus is not None else affinity_cpus()))
    quota = cgroup_cpu_quota(cgroup_root, proc_cgroup)
    if quota is not None:
        cores = min(cores, quota)
    local_ranks = _positive_int(environ.get("LOCAL_WORLD_SIZE"), "LOCAL_WORLD_SIZE") or 1
    return cores / local_ranks


# --- what else is busy ---------------------------------------------------------------------------


def cpu_ticks(stat_text: str, cpus: set[int]) -> tuple[int, int]:
    """(busy, total) jiffies of ``cpus`` from ``/proc/stat``'s ``cpuN`` lines.

    Busy is user, nice, system, irq, softirq and steal; idle and iowait are free time.
    """
    busy = total = 0
    for line in stat_text.splitlines():
        name, *values = line.split()
        if not name.startswith("cpu") or name == "cpu" or int(name[3:]) not in cpus:
            continue
        ticks = [int(value) for value in values[:8]] + [0] * max(0, 8 - len(values))
        user, nice, system, idle, iowait, irq, softirq, steal = ticks[:8]
        busy += user + nice + system + irq + softirq + steal
        total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


@dataclass(frozen=True)
class _Look:
    stat: str
    own_cpu_s: float  # this process's CPU time (every thread) at the look
    at: float  # time.perf_counter() at the look


class CpuMonitor:
    """Busy cores between two looks at ``/proc/stat``, this process's own CPU time left out.

    A previous look at most ``max_age_s`` old (and at least ``look_s``) serves as the first
    one, so that a worker asking before every job waits for nothing: what others did during
    its last job is the measurement. Otherwise it looks, sleeps ``look_s`` and looks again.
    Safe to share between threads.
    """

    def __init__(
        self,
        proc: Path = PROC,
        look_s: float = LOOK_S,
        max_age_s: float = 10.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.proc, self.look_s, self.max_age_s, self.sleep = proc, look_s, max_age_s, sleep
        self._last: _Look | None = None
        self._lock = threading.Lock()

    def _look(self) -> _Look | None:
        stat = _read(self.proc / "stat")
        return None if stat is None else _Look(stat, time.process_time(), time.perf_counter())

    def busy(self, cpus: set[int]) -> tuple[float, str]:
        """Cores of ``cpus`` other processes kept busy, and how that was measured.

        Without ``/proc/stat`` (macOS): the one-minute load average, this process included.
        """
        with self._lock:
            now = self._look()
            if now is None:
                if hasattr(os, "getloadavg"):
                    share = len(cpus) / (os.cpu_count() or len(cpus))
                    return min(float(len(cpus)), os.getloadavg()[0] * share), "load average"
                return 0.0, "not measured"
            first = self._last
            if first is None or not self.look_s <= now.at - first.at <= self.max_age_s:
                first = now
                self.sleep(self.look_s)
                now = self._look() or first
            self._last = now
        interval = max(now.at - first.at, 1e-6)
        (busy_a, total_a), (busy_b, total_b) = cpu_ticks(first.stat, cpus), cpu_ticks(now.stat, cpus)
        how = f"/proc/stat over {interval:.1f} s"
        if total_b <= total_a:
            return 0.0, how + " (no ticks)"
        everyone = len(cpus) * (busy_b - busy_a) / (total_b - total_a)
        own = (now.own_cpu_s - first.own_cpu_s) / interval
        return min(float(len(cpus)), max(0.0, everyone - own)), how


_MONITOR = CpuMonitor()  # one per process: workers share its last look


def busy_cores(
    cpus: set[int],
    look_s: float = LOOK_S,
    proc: Path = PROC,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[float, str]:
    """Cores of ``cpus`` that other processes keep busy over a fresh ``look_s`` look."""
    return CpuMonitor(proc, look_s, sleep=sleep).busy(cpus)


def measure_load(
    cgroup_root: Path = CGROUP_ROOT,
    environ: Mapping[str, str] = os.environ,
    monitor: CpuMonitor | None = None,
) -> CpuLoad:
    """This process's usable cores and the share of them that other work keeps busy now.

    ``monitor`` (default: this process's) watches ``/proc/stat``. Busy cores are scaled to
    the usable share where a quota (or local ranks) leaves this process fewer cores than its
    affinity mask names: the other work is taken to be spread evenly over the CPUs.
    """
    monitor = monitor or _MONITOR
    cpus = affinity_cpus()
    usable = usable_cores(cgroup_root, monitor.proc / "self/cgroup", environ, cpus)
    busy, how = monitor.busy(cpus)
    return CpuLoad(usable, busy * usable / len(cpus), how)


# --- the choice ----------------------------------------------------------------------------------


def _positive_int(text: str | None, name: str) -> int | None:
    if text is None or not str(text).strip():
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of threads, 1 or more, not {text!r}.")
    return value


def auto_threads(load: CpuLoad, reserved: float = 0.0, cap: int | None = None) -> int:
    """The free cores of ``load`` as a thread count (at least 1, at most ``cap``).

    ``reserved`` cores belong to work this process started (a fine-tune process): they
    count as busy whether or not that work has begun computing, and only once when it has
    (it is then part of ``load.busy``).
    """
    free = load.usable - max(load.busy, reserved)
    threads = max(1, min(math.floor(free + 1 - FREE_ENOUGH), math.floor(load.usable)))
    return min(threads, cap) if cap else threads


def parse_threads(text: str | int) -> str | int:
    """``"auto"`` or a positive count, from a command line's ``--threads``."""
    if isinstance(text, str) and text.strip().lower() == "auto":
        return "auto"
    count = _positive_int(str(text), "--threads")
    if count is None:  # an empty text
        raise ConfigError(f"--threads must be a whole number of threads, 1 or more, not {text!r}.")
    return count


def choose_threads(
    requested: str | int = "auto",
    environ: Mapping[str, str] = os.environ,
    load: CpuLoad | None = None,
    reserved: float = 0.0,
) -> ThreadChoice:
    """The thread count for ``requested`` (``auto`` or a count); see the module's rules.

    ``auto`` takes :data:`ENV_THREADS` when a parent process (or the user) set it, else
    measures (``load``, or :func:`measure_load` now), capped by ``OMP_NUM_THREADS``;
    ``reserved`` as in :func:`auto_threads`.
    """
    requested = parse_threads(requested)
    if isinstance(requested, int):
        return ThreadChoice(requested, "--threads")
    given = _positive_int(environ.get(ENV_THREADS), ENV_THREADS)
    if given is not None:
        return ThreadChoice(given, ENV_THREADS)
    cap = _positive_int(environ.get("OMP_NUM_THREADS"), "OMP_NUM_THREADS")
    load = load if load is not None else measure_load(environ=environ)
    return ThreadChoice(auto_threads(load, reserved, cap), "auto", load)


def split_for_finetune(load: CpuLoad) -> ThreadSplit:
    """Share the free cores between in-process sampling and a fine-tune process started now.

    Half each (the fine-tune gets the odd core), at least 1 each. The sampling half stays
    held while the fine-tune runs: the queue pre-segments whenever the annotator moves on.
    """
    free = auto_threads(load)
    sampling = max(1, free // 2)
    return ThreadSplit(sampling=sampling, finetune=max(1, free - sampling))


def finetune_environment(threads: int) -> dict[str, str]:
    """Environment variables for a fine-tune process given ``threads``.

    OpenMP reads its wait policy once, when torch loads: passive makes idle threads sleep
    instead of spinning on cores that the viewer and the sampling worker need.
    """
    return {ENV_THREADS: str(threads), "OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE"}


# --- applying it ---------------------------------------------------------------------------------

_applied: ThreadChoice | None = None  # torch's thread count is process state; so is its reason


def apply_threads(choice: ThreadChoice) -> ThreadChoice:
    """Set torch's CPU thread count to ``choice`` (in the calling thread; see the module)."""
    global _applied
    import torch

    torch.set_num_threads(choice.threads)
    _applied = choice
    return choice


def thread_record(threads_now: int) -> dict[str, Any]:
    """What a checkpoint's training record says about threads: the count and how it was chosen."""
    if _applied is not None and _applied.threads == threads_now:
        return _applied.to_dict()
    return {"threads": threads_now, "source": "set outside the thread policy"}
