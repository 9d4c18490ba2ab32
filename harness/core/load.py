"""Load accounting: how much of the machine was busy with work that is not this run's.

Interleaving cancels drift that slows every backend alike; a neighbour taking a core does
not slow them alike (a two-thread OpenMP backend stalls at every barrier, a thread pool less
so), and no pairing cancels it. So every timed round is measured for the CPU the machine
spent outside the run: the system-wide busy time (``/proc/stat``), minus the CPU time of the
run's own processes (every thread of the parent and of each worker, in nanoseconds from
``schedstat``), plus the time the hypervisor stole. What the host does to the guest shows in
none of those counters, so each round also times a fixed canary workload, on as many
threads as the backends compute with: a host that stalls one of the guest's cores slows
every barrier of a multi-thread backend while one-thread work goes on unhindered.

Off Linux none of this can be read; the samples are then None, and nothing is invented.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

PROC = Path("/proc")
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01


@dataclass(frozen=True)
class CpuSample:
    """Cumulative CPU counters at one instant, in seconds."""

    wall: float
    busy: float  # every CPU's non-idle time, steal excluded
    steal: float  # time the hypervisor ran something else while this guest wanted to run
    own: Mapping[int, float]  # thread id -> CPU time, for every live thread of the run's processes


@dataclass(frozen=True)
class RoundLoad:
    """What one round saw of the machine."""

    foreign_cores: float  # CPU used outside the run, plus steal, over the round's wall time
    canary_s: float  # the canary's time at the start of the round
    wall_s: float = 0.0  # the round's wall time


class MeteredRound:
    """The account of one round, begun before it: a pause for the last round's spinning
    threads to end, the canary, the counters; ``end`` reads them again after it."""

    def __init__(self, meter: LoadMeter, settle_s: float) -> None:
        time.sleep(settle_s)
        self.canary_s = canary_s()
        self._meter = meter
        self._before = meter.sample()

    def end(self) -> RoundLoad | None:
        """What the round saw; None where the counters could not be read."""
        after = self._meter.sample()
        if self._before is None or after is None:
            return None
        return RoundLoad(foreign_cores(self._before, after), self.canary_s,
                         after.wall - self._before.wall)


def _system_times() -> tuple[float, float] | None:
    """(busy, steal) seconds summed over every CPU, from the first line of /proc/stat."""
    try:
        fields = (PROC / "stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq) * _TICK_S, steal * _TICK_S


def thread_cpu_s(pid: int) -> dict[int, float]:
    """Thread id -> CPU seconds, for every live thread of ``pid`` (schedstat, nanoseconds);
    empty if it is gone."""
    times: dict[int, float] = {}
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return times
    for task in tasks:
        try:
            times[int(task.name)] = int((task / "schedstat").read_text().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            continue
    return times


def process_cpu_s(pid: int) -> float:
    """CPU seconds of every live thread of ``pid``; 0 if it is gone."""
    return sum(thread_cpu_s(pid).values())


class LoadMeter:
    """Samples the counters around each round; the run's processes are ``pids``."""

    def __init__(self, pids: Iterable[int]) -> None:
        self.pids = tuple(dict.fromkeys(pids))
        # Without its threads' schedstat (a kernel built without it) the run's own time would
        # read as nothing, and all of it as outside work.
        self.available = _system_times() is not None and bool(thread_cpu_s(os.getpid()))

    def sample(self) -> CpuSample | None:
        system = _system_times()
        if system is None:
            return None
        busy, steal = system
        own = {tid: cpu for pid in self.pids for tid, cpu in thread_cpu_s(pid).items()}
        return CpuSample(time.perf_counter(), busy, steal, own)


def own_cpu_s(before: CpuSample, after: CpuSample) -> float:
    """The run's CPU time between two samples: each thread alive at the second one, less what
    it had at the first (a thread started between them: all of its time). A thread that ended
    between them (a worker closed when its backend failed) takes with it its time, which
    then counts as outside the run: erring towards a contended round, never a clean one, and
    by that thread's time in the round only, not by all it spent before."""
    return sum(cpu - before.own.get(tid, 0.0) for tid, cpu in after.own.items())


def foreign_cores(before: CpuSample, after: CpuSample) -> float:
    """Cores' worth of CPU spent outside the run between two samples (never below zero)."""
    wall = after.wall - before.wall
    if wall <= 0:
        return 0.0
    outside = (after.busy - before.busy) - own_cpu_s(before, after)
    return max(0.0, outside + (after.steal - before.steal)) / wall


CANARY_MATRIX = torch.from_numpy(
    np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32))


def canary_threads() -> int:
    """The threads the canary runs on: torch's intra-op pool, the backends' own setting."""
    return torch.get_num_threads()


def torch_gemm() -> None:
    """The canary's work: ``CANARY_MATRIX`` squared by torch, on ``canary_threads()``."""
    torch.mm(CANARY_MATRIX, CANARY_MATRIX)


def canary_s(gemm: Callable[[], None] = torch_gemm, warm_up: int = 10, repeats: int = 5) -> float:
    """The fastest of a few calls of a fixed GEMM (the canary's own unless another is given,
    to compare it with) in this process, after a few more to bring the cores up to speed:
    how fast the machine is now."""
    for _ in range(warm_up):
        gemm()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        gemm()
        best = min(best, time.perf_counter() - start)
    return best


# Fewer rounds than this say too little about the host to judge its steadiness by.
MIN_CANARY_ROUNDS = 20


def pooled_canaries(per_row: Iterable[Sequence[float | None]]) -> list[float]:
    """Every kept round's canary once, from rows that each carry their rounds' canaries:
    backends timed in the same rounds carry the same ones, which count once."""
    rounds = {tuple(canaries) for canaries in per_row}
    return [c for canaries in rounds for c in canaries if c is not None]


def canary_spread(canaries_s: Iterable[float]) -> float | None:
    """How much the host changed the machine's speed over a set of rounds: the canary's
    upper-quartile time over its lower-quartile time (1: steady). Quartiles, not extremes:
    one slow canary is a moment, a wide middle half is a host that keeps changing speed.
    None below ``MIN_CANARY_ROUNDS`` rounds."""
    times = np.asarray(list(canaries_s), dtype=np.float64)
    if times.size < MIN_CANARY_ROUNDS:
        return None
    low, high = np.percentile(times, [25, 75])
    return float(high / low)


def past_limit(spread: float | None, limit: float) -> bool:
    """Whether a canary spread says the host was unsteady (None, too few rounds: it cannot)."""
    return spread is not None and spread > limit


@dataclass(frozen=True)
class ProcessShare:
    """A process outside the run, and how much CPU it used over a window of the run."""

    pid: int
    name: str
    cores: float  # its CPU time over the window's wall time


def process_times() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU seconds so far) for every process the system shows."""
    found: dict[int, tuple[str, float]] = {}
    for entry in PROC.iterdir() if PROC.is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        # The name sits in parentheses and may itself hold spaces or parentheses.
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text[text.rindex(")") + 2:].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) * _TICK_S)
    return found


def busiest(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
            wall_s: float, exclude: Iterable[int], limit: int = 3) -> list[ProcessShare]:
    """The processes outside ``exclude`` that used the most CPU between two snapshots."""
    skip = set(exclude)
    shares = [ProcessShare(pid, name, (cpu - before[pid][1]) / wall_s)
              for pid, (name, cpu) in after.items()
              if pid in before and pid not in skip and wall_s > 0]
    return sorted((s for s in shares if s.cores > 0), key=lambda s: -s.cores)[:limit]
