"""Classes 7 and 8: output encoding, signals, library noise, killed writers, early name checks."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import nibabel
import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.cli.training_options import report_cancelled
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import CorrectionsError
from medsegdiff_training.registry import ModelRegistry

SAMPLING = ("--steps", "1", "--ensemble", "1", "--device", "cpu")


def test_a_file_name_that_is_not_utf8_is_printed_not_crashed_on(tmp_path, run_process, registry):
    folder = tmp_path / "in"
    folder.mkdir()
    name = os.fsdecode(b"scan-\xff\xfe.png")
    Image.fromarray(np.full((40, 36), 90, np.uint8)).save(folder / name)
    done = run_process(
        "predict", folder, "--out", tmp_path / "out", "--model", "good", "--registry", registry.root,
        *SAMPLING, env={"PYTHONIOENCODING": "utf-8:strict"},  # as a UTF-8 desktop terminal
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Traceback" not in done.stderr
    assert b"scan-\xff\xfe.png" in done.stdout  # the name as its bytes, usable in a pipe
    assert (tmp_path / "out" / name).is_file()


def test_sigterm_while_the_command_is_still_importing_is_a_clean_cancel(tmp_path):
    # SIGTERM arrives while torch and the CLI are being imported: the moment the old
    # handler-in-the-command missed (exit 143, no word).
    script = (
        "import builtins, os, signal, sys\n"
        "real = builtins.__import__\n"
        "def importing(name, *args, **kwargs):\n"
        "    if name == 'torch':\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(name, *args, **kwargs)\n"
        "builtins.__import__ = importing\n"
        "sys.argv = ['medsegdiff', 'info']\n"
        "from medsegdiff_training.launch import main\n"
        "sys.exit(main())\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, env=environment, timeout=300)
    assert done.returncode == 130, done.stderr
    assert done.stderr.decode().strip() == "Interrupted."


def test_library_log_lines_do_not_come_before_the_one_line_error(tmp_path, run_process, registry):
    # a real process: under pytest, log records go to pytest's handler instead of stderr
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + (99999).to_bytes(4, "little"))  # first page far beyond the end
    nifti = tmp_path / "odd.nii"
    image = nibabel.Nifti1Image(np.zeros((20, 20), np.uint8), np.eye(4))
    image.header["pixdim"][1:3] = 0  # nibabel logs "pixdim[1,2,3] should be non-zero"
    nibabel.save(image, nifti)
    nifti.write_bytes(nifti.read_bytes()[:360])  # and the data is cut short
    for path in (broken, nifti):
        done = run_process(
            "predict", path, "--out", tmp_path / "out", "--model", "good", "--registry", registry.root
        )
        lines = [line for line in done.stderr.decode().splitlines() if not line.startswith("Segmenting")]
        assert done.returncode == 1 and len(lines) == 1, done.stderr
        assert lines[0].startswith("medsegdiff: error: ") and path.name in lines[0]


@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n", b"", b"\x00" * 64])
def test_an_error_never_has_an_empty_reason(content, tmp_path, run_cli, registry):
    image = tmp_path / "image.png"
    image.write_bytes(content)
    outcome = run_cli(
        "predict", image, "--out", tmp_path / "o", "--model", "good", "--registry", registry.root
    )
    reason = outcome.one_line_error().split(f"{image}:", 1)[-1].strip()
    assert len(reason) > 3


@pytest.mark.parametrize("with_state", [False, True])
def test_the_resumable_state_is_mentioned_only_when_it_was_written(with_state, tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    if with_state:
        (run_dir / "state").mkdir()
    report_cancelled(argparse.Namespace(progress_json=False), 0, run_dir)
    err = capsys.readouterr().err
    assert ("resumable state is in" in err) is with_state
    assert ("No training state was saved" in err) is not with_state


def test_a_checkpoint_moved_into_staging_by_a_killed_add_goes_back(tmp_path, make_checkpoint):
    checkpoint = make_checkpoint(tmp_path / "run" / "final")
    root = tmp_path / "registry"
    script = (
        "import os, signal, sys\n"
        "import medsegdiff_training.registry as r\n"
        "r._now = lambda: os.kill(os.getpid(), signal.SIGKILL)  # dies after the move, before publishing\n"
        "r.ModelRegistry(sys.argv[1]).add(sys.argv[2], name='lost', move=True)\n"
    )
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run(
        [sys.executable, "-c", script, str(root), str(checkpoint)], env=environment, check=False
    )
    assert child.returncode == -9
    assert not checkpoint.exists() and list(root.glob(".staging-*"))  # where the kill left it
    registry = ModelRegistry(root)
    assert "lost" not in registry.names()  # the next start puts it back
    assert (checkpoint / "model.safetensors").is_file() and not list(root.glob(".staging-*"))
    assert registry.add(checkpoint, name="found").name == "found"


@pytest.mark.parametrize("name", ["default", "../escape", "good", " spaced"])
def test_a_bad_register_name_is_refused_before_training_starts(name, tmp_path, run_cli, registry):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.full((40, 36), 90, np.uint8)).save(images / "a.png")
    line = run_cli(
        "train", "--images", images, "--masks", images, "--out", tmp_path / "run", "--steps", "1",
        "--config", "tiny", "--register", name, "--registry", registry.root,
    ).one_line_error()  # fmt: skip
    assert "name" in line
    assert not (tmp_path / "run").exists()  # nothing was trained


def test_a_bad_finetune_name_is_refused_before_training_starts(tmp_path, run_cli, registry):
    store = CorrectionsStore(tmp_path / "store")
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 5:20] = 1
    store.add(np.ones((40, 50)), labels)
    line = run_cli(
        "finetune", "--store", store.root, "--parent", "good", "--name", "good", "--steps", "1",
        "--registry", registry.root, "--run-dir", tmp_path / "run", "--device", "cpu",
    ).one_line_error()  # fmt: skip
    assert "exists already" in line and not (tmp_path / "run").exists()


def test_a_store_that_cannot_be_written_is_one_clear_error_and_loses_nothing(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the store's parent should be")
    labels = np.zeros((40, 50), np.uint8)
    labels[5:20, 5:20] = 1
    with pytest.raises(CorrectionsError, match="Could not write"):
        CorrectionsStore(blocker / "store").add(np.ones((40, 50)), labels)
    assert blocker.read_text().startswith("a file")


def test_models_list_json_stays_valid_with_odd_metrics(tmp_path, run_cli, registry):
    record = json.loads((registry.root / "good" / "version.json").read_text())
    record["metrics"] = {"validation_dice": [0.9], "nested": {"a": {"b": 1}}, "nan": float("nan")}
    (registry.root / "good" / "version.json").write_text(json.dumps(record))
    listed = run_cli("models", "list", "--json", "--registry", registry.root)
    assert listed.code == 0 and json.loads(listed.out)["versions"]
    assert run_cli("models", "list", "--registry", registry.root).code == 0
