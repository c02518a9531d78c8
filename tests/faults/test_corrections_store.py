"""Classes 2 and 3: the corrections store never reads outside itself and never loses an entry silently."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.config import named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import CorrectionsError


def _labels(value: int = 1) -> np.ndarray:
    labels = np.zeros((40, 50), np.uint8)
    labels[10:20, 10:30] = value
    return labels


@pytest.fixture
def store(tmp_path: Path) -> CorrectionsStore:
    """A store with three entries."""
    store = CorrectionsStore(tmp_path / "store")
    for value in (1, 2, 3):
        store.add(np.full((40, 50), value, np.float32), _labels(), model_version="default")
    return store


def _lines(store: CorrectionsStore) -> list[bytes]:
    return store.manifest_path.read_bytes().splitlines()


def _write(store: CorrectionsStore, lines: list[bytes], newline_at_end: bool = True) -> None:
    store.manifest_path.write_bytes(b"\n".join(lines) + (b"\n" if newline_at_end else b""))


# -- path escape ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_id", ["/etc", "../outside", "..", "a/../../outside", "entries/../../outside", ".hidden"]
)
def test_a_manifest_id_never_leads_outside_the_store(bad_id, store, tmp_path, caplog):
    # a complete-looking entry outside the store, which a naive reader would train on
    outside = tmp_path / "outside"
    (outside).mkdir()
    for name in ("entry.json", "image.tif", "labels.tif"):
        (outside / name).write_bytes(b"secret")
    record = json.loads(_lines(store)[0])
    record["id"] = bad_id if bad_id != "/etc" else str(outside)
    _write(store, [*_lines(store), json.dumps(record).encode()])
    ids = [entry.id for entry in store.entries()]
    assert len(ids) == 3 and all(".." not in i and not i.startswith("/") for i in ids)
    assert "line 4" in caplog.text
    assert len(store.training_pairs()) == 3


def test_an_entry_folder_that_is_a_link_to_elsewhere_is_not_read(store, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    first = store.entries()[0]
    for item in first.path.iterdir():
        (outside / item.name).write_bytes(item.read_bytes())
    (store.root / "entries" / "20990101-000000-deadbeef").symlink_to(outside)
    record = dict(first.manifest, id="20990101-000000-deadbeef")
    _write(store, [*_lines(store), json.dumps(record).encode()])
    assert "20990101-000000-deadbeef" not in [entry.id for entry in store.entries()]


def test_an_entry_file_linked_to_elsewhere_is_refused(store, tmp_path):
    secret = tmp_path / "secret.tif"
    secret.write_bytes((store.entries()[0].path / "labels.tif").read_bytes())
    target = store.entries()[1]
    (target.path / "labels.tif").unlink()
    (target.path / "labels.tif").symlink_to(secret)
    with pytest.raises(CorrectionsError, match="outside"):
        store.read(target)


# -- silent loss ------------------------------------------------------------------------


def _damage(kind: str, lines: list[bytes]) -> tuple[list[bytes], bool]:
    """The damaged manifest lines and whether it ends with a newline."""
    first, second, third = lines
    if kind == "bad-json":
        return [first, b'{"id": "2026', second, third], True
    if kind == "bad-utf8":
        return [first, second[:20] + b"\xff\xfe" + second[20:], third], True
    if kind == "list":
        return [first, b"[" + second + b"]", third], True
    if kind == "zero-filled":
        return [first, b"\x00" * len(second), third], True
    if kind == "truncated":
        return [first, second[: len(second) // 2], third], True
    if kind == "joined":
        return [first + second, third], True
    if kind == "duplicated":
        return [first, second, second, third], True
    if kind == "torn-last":
        return [first, second, third[:-10]], False
    raise AssertionError(kind)


DAMAGE = ["bad-json", "bad-utf8", "list", "zero-filled", "truncated", "joined", "duplicated", "torn-last"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_manifest_line_loses_no_entry_and_is_reported(kind, store, caplog):
    before = [entry.id for entry in store.entries()]
    lines, newline = _damage(kind, _lines(store))
    _write(store, lines, newline)
    with caplog.at_level(logging.WARNING):
        after = [entry.id for entry in store.entries()]
    assert sorted(after) == sorted(before)  # nothing lost
    assert "line" in caplog.text and "corrections repair" in caplog.text
    assert len(store.as_dataset(named_config("tiny"))) == 3  # fine-tuning sees all three


@pytest.mark.parametrize("kind", ["deleted", "directory", "all-zero"])
def test_an_unreadable_manifest_loses_no_entry(kind, store, caplog):
    before = sorted(entry.id for entry in store.entries())
    size = store.manifest_path.stat().st_size
    store.manifest_path.unlink()
    if kind == "directory":
        store.manifest_path.mkdir()
    elif kind == "all-zero":
        store.manifest_path.write_bytes(b"\x00" * size)
    assert sorted(entry.id for entry in store.entries()) == before
    assert "recovered from its folder" in caplog.text


@pytest.mark.parametrize("kind", DAMAGE)
def test_check_reports_and_repair_rebuilds_the_manifest_keeping_the_damaged_one(kind, store, run_cli):
    before = sorted(entry.id for entry in store.entries())
    lines, newline = _damage(kind, _lines(store))
    _write(store, lines, newline)
    damaged = store.manifest_path.read_bytes()
    check = run_cli("corrections", "check", "--store", store.root)
    assert check.code == 1 and "line" in check.out and "Traceback" not in check.err, check.err
    repair = run_cli("corrections", "repair", "--store", store.root)
    assert repair.code == 0 and "kept as" in repair.out, repair.err
    kept = list(store.root.glob("manifest.jsonl.damaged-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged
    assert sorted(json.loads(line)["id"] for line in _lines(store)) == before
    again = run_cli("corrections", "check", "--store", store.root)
    assert again.code == 0 and "clean" in again.out


def test_check_of_a_missing_store_is_one_line(tmp_path, run_cli):
    assert (
        "no corrections store"
        in run_cli("corrections", "check", "--store", tmp_path / "none").one_line_error()
    )


def test_partial_folders_of_killed_writers_are_removed_by_the_next_writer(store, tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(gone.stdout)
    partial = store.root / "entries" / f".20261127-000000-0badf00d.partial-{dead_pid}-abc"
    partial.mkdir()
    (partial / "image.tif").write_bytes(b"half")
    live = store.root / "entries" / f".20261127-000000-0badf00e.partial-{os.getpid()}-abc"
    live.mkdir()
    assert partial in store.check().stale_partials and live not in store.check().stale_partials
    store.add(np.ones((40, 50)), _labels())
    assert not partial.exists() and live.exists()  # a live writer's folder is left alone
    assert len(store.entries()) == 4


def _python(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    """``script`` in its own process, importing the package this test imported."""
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, sys.path))}
    return subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, env=environment, check=False, timeout=120
    )


def test_a_writer_killed_mid_export_leaves_nothing_visible_and_is_cleaned_up(store):
    script = (
        "import os, signal, sys, numpy as np\n"
        "import medsegdiff_training.corrections as c\n"
        "real = c._write_tiff\n"
        "def dying(path, array):\n"
        "    real(path, array)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "c._write_tiff = dying\n"
        "labels = np.zeros((40, 50), np.uint8); labels[5:9, 5:9] = 1\n"
        "c.CorrectionsStore(sys.argv[1]).add(np.ones((40, 50)), labels)\n"
    )
    child = _python(script, str(store.root))
    assert child.returncode == -9
    # what the kill left: one hidden partial folder, in entries/ (the same file system)
    (left,) = (store.root / "entries").glob(".*.partial-*")
    assert left.name.startswith(".") and left.is_dir()
    assert len(store.entries()) == 3
    store.add(np.ones((40, 50)), _labels())
    assert not list((store.root / "entries").glob(".*partial*")) and len(store.entries()) == 4


def test_a_full_disk_mid_export_leaves_no_trace_and_says_so(store):
    """A real write error (a file-size limit: EFBIG, as a full disk gives ENOSPC) mid-entry."""
    before = store.manifest_path.read_bytes()
    script = (
        "import resource, signal, sys, numpy as np\n"
        "from medsegdiff_training.corrections import CorrectionsStore\n"
        "from medsegdiff_training.errors import CorrectionsError\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails instead of killing\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))\n"
        "image = np.random.default_rng(0).random((200, 200)).astype(np.float32)\n"
        "labels = np.zeros((200, 200), np.uint8); labels[50:90, 50:90] = 1\n"
        "try:\n"
        "    CorrectionsStore(sys.argv[1]).add(image, labels)\n"
        "except CorrectionsError as error:\n"
        "    print(error); sys.exit(3)\n"
    )
    child = _python(script, str(store.root))
    message = child.stdout.decode().strip()
    assert child.returncode == 3, child.stderr.decode()
    assert "Could not write the correction into" in message and "Earlier corrections are unharmed" in message
    assert "\n" not in message
    # nothing of the failed entry is left, not even a hidden partial folder; nothing lost
    assert sorted(p.name for p in (store.root / "entries").iterdir()) == sorted(e.id for e in store.entries())
    assert len(store.entries()) == 3 and store.manifest_path.read_bytes() == before
