"""The thread policy: usable cores (affinity, cgroup quota), busy cores, the choice, the split.

cgroup trees and ``/proc/stat`` snapshots are real files written in ``tmp_path`` and read
through the policy's path parameters; affinity is the real one of a child process. No
wall-clock asserts: the only measurements checked are bounds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from medsegdiff_training.cli import main
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.threads import (
    ENV_THREADS,
    CpuLoad,
    CpuMonitor,
    ThreadChoice,
    ThreadSplit,
    apply_threads,
    auto_threads,
    busy_cores,
    cgroup_cpu_quota,
    choose_threads,
    cpu_ticks,
    finetune_environment,
    measure_load,
    parse_threads,
    split_for_finetune,
    thread_record,
    usable_cores,
)

TRAINING = Path(__file__).resolve().parents[2] / "training"


@pytest.fixture
def torch_threads():
    """Whatever a test sets, the session's torch threads come back afterwards."""
    threads = torch.get_num_threads()
    yield threads
    torch.set_num_threads(threads)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# --- usable cores: cgroup quotas and affinity ----------------------------------------------------


def test_a_cgroup_v2_quota_on_the_process_or_an_ancestor_caps_the_cores(tmp_path):
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(self_cgroup, "0::/user.slice/job\n")
    write(root / "user.slice" / "job" / "cpu.max", "max 100000\n")  # no quota on the leaf
    write(root / "user.slice" / "cpu.max", "150000 100000\n")  # 1.5 cores on its parent
    assert cgroup_cpu_quota(root, self_cgroup) == 1.5
    write(root / "user.slice" / "job" / "cpu.max", "50000 100000\n")  # the tighter one wins
    assert cgroup_cpu_quota(root, self_cgroup) == 0.5
    assert usable_cores(root, self_cgroup, environ={}, cpus={0, 1, 2, 3}) == 0.5


def test_a_cgroup_v1_quota_is_read_from_the_cpu_controller_and_minus_one_means_none(tmp_path):
    root, self_cgroup = tmp_path / "cgroup", tmp_path / "proc-self-cgroup"
    write(self_cgroup, "5:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    job = root / "cpu,cpuacct" / "docker" / "abc"
    write(job / "cpu.cfs_quota_us", "200000\n")
    write(job / "cpu.cfs_period_us", "100000\n")
    write(root / "memory" / "docker" / "abc" / "cpu.cfs_quota_us", "10000\n")  # not the cpu controller
    assert cgroup_cpu_quota(root, self_cgroup) == 2.0
    assert usable_cores(root, self_cgroup, environ={}, cpus=set(range(8))) == 2.0
    write(job / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(root, self_cgroup) is None
    assert usable_cores(root, self_cgroup, environ={}, cpus=set(range(8))) == 8.0


def test_without_a_cgroup_the_affinity_decides_and_local_ranks_share_it(tmp_path):
    nowhere = tmp_path / "no-such-file"
    assert cgroup_cpu_quota(tmp_path, nowhere) is None
    affinity = len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path, nowhere, environ={}) == affinity
    assert usable_cores(tmp_path, nowhere, environ={"LOCAL_WORLD_SIZE": "2"}) == affinity / 2
    with pytest.raises(ConfigError, match="LOCAL_WORLD_SIZE must be a whole number"):
        usable_cores(tmp_path, nowhere, environ={"LOCAL_WORLD_SIZE": "zero"})


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="pins a process to a CPU (Linux)")
def test_a_process_pinned_to_one_cpu_chooses_one_thread():
    first = min(os.sched_getaffinity(0))
    script = (
        "from medsegdiff_training.threads import choose_threads, usable_cores\n"
        "choice = choose_threads('auto', environ={})\n"
        "print(usable_cores(), choice.threads, choice.source)\n"
    )
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TRAINING), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        preexec_fn=lambda: os.sched_setaffinity(0, {first}),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert done.stdout.split() == ["1.0", "1", "auto"]


# --- busy cores --------------------------------------------------------------------------------------

STAT = """cpu  {total}
cpu0 {cpu0} 0 0 {idle0} 0 0 0 0 0 0
cpu1 {cpu1} 0 0 {idle1} 0 0 0 0 0 0
cpu2 900 0 0 100 0 0 0 0 0 0
intr 12345
ctxt 678
"""


def stat(cpu0: int, idle0: int, cpu1: int, idle1: int) -> str:
    return STAT.format(total="1 2 3 4", cpu0=cpu0, idle0=idle0, cpu1=cpu1, idle1=idle1)


def test_cpu_ticks_sum_busy_and_total_time_of_the_chosen_cpus_only():
    text = stat(cpu0=300, idle0=700, cpu1=50, idle1=950)
    assert cpu_ticks(text, {0, 1}) == (350, 2000)
    assert cpu_ticks(text, {2}) == (900, 1000)
    assert cpu_ticks(text, {7}) == (0, 0)


def test_busy_cores_are_what_the_cpus_did_between_two_looks(tmp_path):
    proc = tmp_path / "proc"
    write(proc / "stat", stat(cpu0=1000, idle0=1000, cpu1=1000, idle1=1000))

    def meanwhile(seconds: float) -> None:  # cpu0 fully busy, cpu1 half busy, 100 ticks each
        time.sleep(seconds)  # this process sleeps, as while it looks at the real /proc/stat
        write(proc / "stat", stat(cpu0=1100, idle0=1000, cpu1=1050, idle1=1050))

    busy, how = busy_cores({0, 1}, 0.1, proc, sleep=meanwhile)
    assert busy == pytest.approx(1.5, abs=0.05)  # less this process's own CPU time (almost none)
    assert how.startswith("/proc/stat over 0.1")
    busy, _ = busy_cores({1}, 0.1, proc, sleep=lambda _s: None)  # nothing moved
    assert busy == 0.0


def test_a_recent_look_serves_as_the_first_so_a_worker_waits_for_nothing(tmp_path):
    proc, sleeps = tmp_path / "proc", []
    write(proc / "stat", stat(cpu0=1000, idle0=1000, cpu1=1000, idle1=1000))

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds)
        write(proc / "stat", stat(cpu0=1100, idle0=1000, cpu1=1050, idle1=1050))

    monitor = CpuMonitor(proc, look_s=0.05, max_age_s=10.0, sleep=sleep)
    assert monitor.busy({0, 1})[0] == pytest.approx(1.5, abs=0.1) and sleeps == [0.05]
    write(proc / "stat", stat(cpu0=1200, idle0=1000, cpu1=1050, idle1=1150))  # then: cpu0 busy, cpu1 idle
    time.sleep(0.06)  # a job of this process's, sleeping
    busy, how = monitor.busy({0, 1})
    assert busy == pytest.approx(1.0, abs=0.1) and sleeps == [0.05]  # since the last look, no wait
    assert how.startswith("/proc/stat over 0.")
    stale = CpuMonitor(proc, look_s=0.05, max_age_s=0.0, sleep=sleep)
    stale.busy({0, 1})
    stale.busy({0, 1})
    assert len(sleeps) == 3  # a look older than max_age_s is not used


def test_the_real_measurement_stays_within_the_usable_cores():
    load = measure_load(monitor=CpuMonitor(look_s=0.05))
    assert 1 <= load.usable <= os.cpu_count()
    assert 0.0 <= load.busy <= load.usable and load.measured_by.startswith("/proc/stat")


# --- the choice and the split -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("usable", "busy", "reserved", "cap", "expected"),
    [
        (2, 0.0, 0, None, 2),  # an idle 2-core machine: both cores, as torch's default
        (2, 0.2, 0, None, 2),  # a core 90 % free still counts
        (2, 0.5, 0, None, 1),  # half a core taken: one thread, or every step waits for it
        (2, 2.0, 0, None, 1),  # everything busy: still one
        (2, 0.0, 1, None, 1),  # a fine-tune of ours holds one core, not yet computing
        (2, 1.0, 1, None, 1),  # ... and once it computes (counted once)
        (8, 1.0, 4, None, 4),
        (8, 0.0, 0, 3, 3),  # OMP_NUM_THREADS caps it
        (1.5, 0.0, 0, None, 1),  # a 1.5-core quota: one thread never throttled mid-step
    ],
)
def test_auto_threads_are_the_free_cores(usable, busy, reserved, cap, expected):
    assert auto_threads(CpuLoad(usable, busy), reserved, cap) == expected


def test_choose_threads_follows_the_command_line_then_the_parent_then_the_measurement():
    idle = CpuLoad(4, 0.0, "test")
    assert choose_threads(3, environ={ENV_THREADS: "1"}, load=idle) == ThreadChoice(3, "--threads")
    assert choose_threads("auto", environ={ENV_THREADS: "2"}, load=idle) == ThreadChoice(2, ENV_THREADS)
    assert choose_threads("auto", environ={}, load=idle) == ThreadChoice(4, "auto", idle)
    assert choose_threads("auto", environ={"OMP_NUM_THREADS": "1"}, load=idle).threads == 1
    assert choose_threads("auto", environ={}, load=idle, reserved=1).threads == 3
    text = choose_threads("auto", environ={}, load=CpuLoad(2, 1.04, "test")).describe()
    assert text == "1 thread (auto: 2 usable cores, 1.0 busy with other work)"
    with pytest.raises(ConfigError, match="MEDSEGDIFF_THREADS must be a whole number of threads, 1 or more"):
        choose_threads("auto", environ={ENV_THREADS: "many"}, load=idle)
    assert parse_threads("AUTO") == "auto" and parse_threads("2") == 2
    for wrong in ("0", "-1", "1.5", ""):
        with pytest.raises(ConfigError, match="--threads must be a whole number"):
            parse_threads(wrong)


def test_sampling_and_a_fine_tune_share_the_free_cores():
    assert split_for_finetune(CpuLoad(2, 0.0)) == ThreadSplit(sampling=1, finetune=1)
    assert split_for_finetune(CpuLoad(3, 0.0)) == ThreadSplit(sampling=1, finetune=2)
    assert split_for_finetune(CpuLoad(8, 0.0)) == ThreadSplit(sampling=4, finetune=4)
    assert split_for_finetune(CpuLoad(8, 4.0)) == ThreadSplit(sampling=2, finetune=2)
    assert split_for_finetune(CpuLoad(2, 2.0)) == ThreadSplit(sampling=1, finetune=1)
    assert finetune_environment(3) == {ENV_THREADS: "3", "OMP_NUM_THREADS": "3", "OMP_WAIT_POLICY": "PASSIVE"}


def test_applying_a_choice_sets_torch_and_the_record_says_how(torch_threads):
    load = CpuLoad(2, 0.3, "/proc/stat over 0.1 s")
    apply_threads(ThreadChoice(1, "auto", load))
    assert torch.get_num_threads() == 1
    assert thread_record(1) == {
        "threads": 1,
        "source": "auto",
        "usable_cores": 2,
        "busy_cores": 0.3,
        "measured_by": "/proc/stat over 0.1 s",
    }
    assert thread_record(2) == {"threads": 2, "source": "set outside the thread policy"}


# --- the command line ---------------------------------------------------------------------------


@pytest.fixture
def dataset(tmp_path, blob_data) -> Path:
    return blob_data.folder(tmp_path / "data", 3)


def test_threads_auto_is_the_default_logged_once_and_kept_in_the_training_record(
    capsys, tmp_path, dataset, monkeypatch, torch_threads
):
    monkeypatch.delenv(ENV_THREADS, raising=False)  # the session's one thread: measure instead
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    common = ["--images", dataset / "images", "--masks", dataset / "masks", "--config", "tiny"]
    common += ["--steps", "2", "--batch-size", "2", "--val-fraction", "0", "--device", "cpu"]
    code = main([str(a) for a in ["train", *common, "--out", tmp_path / "auto"]])
    err = capsys.readouterr().err
    assert code == 0, err
    logged = [line for line in err.splitlines() if "busy with other work" in line]
    assert len(logged) == 1 and logged[0].startswith("medsegdiff: ")
    record = json.loads((tmp_path / "auto" / "final" / "config.json").read_text())["training"]["threads"]
    assert record["source"] == "auto" and record["measured_by"].startswith("/proc/stat")
    assert f"medsegdiff: {record['threads']} thread" in logged[0]
    assert 1 <= record["threads"] <= len(os.sched_getaffinity(0))

    code = main([str(a) for a in ["--threads", "1", "train", *common, "--out", tmp_path / "one"]])
    err = capsys.readouterr().err
    assert code == 0 and "busy with other work" not in err  # the user's count: used, not logged
    record = json.loads((tmp_path / "one" / "final" / "config.json").read_text())["training"]["threads"]
    assert record == {"threads": 1, "source": "--threads"}


def test_a_wrong_thread_count_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--threads", "0", "info"])
    assert stop.value.code == 2
    assert "argument --threads: '0': use auto or a whole number, 1 or more" in capsys.readouterr().err
