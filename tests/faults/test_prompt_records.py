"""Issue 28, classes 4 (second half), 5, 6 and 7: what a correction records is checked, and read right.

- A malformed prompts record (``extra.prompts`` a list or a string, ``extra`` a list,
  ``labels_present`` holding text) is refused by ``add()``, flagged by ``corrections check``
  and skipped by ``finetune`` with a warning naming the entry (the other entries train).
- A recorded box for a slice the volume lacks, or one without labels, is said by ``finetune``.
- ``corrections check`` finds a truncated ``image.tif`` and names a lost ``labels.tif``.
- ``PromptedSegmentation.prompts_record()`` writes what the store reads: a correction recorded
  from it fine-tunes on its box crops.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.config import named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import CorrectionsError
from medsegdiff_training.finetune import finetune
from medsegdiff_training.finetune_options import FinetuneOptions
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import DEFAULT_CROP_RULE, Box
from medsegdiff_training.train_config import TrainConfig

STEPS = ("--steps", "1", "--batch-size", "1", "--device", "cpu")
GOOD_PROMPTS = {"boxes": [{"slice": 0, "box": [5.0, 5.0, 25.0, 25.0]}], "labels": "objects"}


def _labels(shape=(40, 50)) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[..., 5:20, 5:20] = 1
    return labels


def _set_record(store: CorrectionsStore, entry_id: str, change) -> None:
    """Edit an entry's record by hand, in the manifest and in its folder alike."""
    lines = store.manifest_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    for record in records:
        if record["id"] == entry_id:
            change(record)
            (store.root / "entries" / entry_id / "entry.json").write_text(json.dumps(record))
    store.manifest_path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("medsegdiff: warning: ")]


def _finetune(run_cli, store, registry, tmp_path):
    return run_cli(
        "finetune", "--store", store.root, "--parent", "good", "--registry", registry.root,
        "--run-dir", tmp_path / "run", *STEPS,
    )  # fmt: skip


MALFORMED = {
    "prompts-list": lambda r: r["extra"].update(prompts=[[5, 5, 25, 25]]),
    "prompts-string": lambda r: r["extra"].update(prompts="boxes"),
    "extra-list": lambda r: r.update(extra=[GOOD_PROMPTS]),
    "labels-present-text": lambda r: r.update(labels_present=["one"]),
    "box-bare-list": lambda r: r["extra"]["prompts"].update(boxes=[[5, 5, 25, 25]]),
}


@pytest.mark.parametrize("extra", [{"prompts": [[5, 5, 25, 25]]}, {"prompts": "boxes"}, [GOOD_PROMPTS]])
def test_add_refuses_a_malformed_prompts_record(extra, tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    with pytest.raises(CorrectionsError, match="prompts|extra"):
        store.add(np.ones((40, 50)), _labels(), extra=extra)
    assert len(store) == 0


@pytest.mark.parametrize("kind", MALFORMED)
def test_a_malformed_record_is_flagged_and_finetune_skips_it_by_name(kind, tmp_path, run_cli, registry):
    store = CorrectionsStore(tmp_path / "store")
    good = store.add(np.ones((40, 50)), _labels(), extra={"prompts": GOOD_PROMPTS})
    bad = store.add(np.ones((40, 50)) * 2, _labels(), extra={"prompts": GOOD_PROMPTS})
    _set_record(store, bad.id, MALFORMED[kind])
    check = run_cli("corrections", "check", "--store", store.root)
    assert check.code == 1 and bad.id in check.out and "malformed" in check.out, check.out
    outcome = _finetune(run_cli, store, registry, tmp_path)
    assert outcome.code == 0, outcome.err
    assert any(bad.id in line and "malformed" in line for line in _warnings(outcome.err)), outcome.err
    version = outcome.out.split()[1]  # "Registered NAME (parent good) ..."
    record = json.loads((registry.root / version / "version.json").read_text())
    assert record["metrics"]["corrections"] == 1  # the good entry trained, the malformed one did not
    assert [e.id for e in store.entries()] == [good.id]


def test_a_box_for_a_slice_the_volume_lacks_is_said_by_finetune(tmp_path, run_cli, registry):
    store = CorrectionsStore(tmp_path / "store")
    volume_prompts = {"boxes": [{"slice": 1, "box": [5.0, 5.0, 25.0, 25.0]}], "labels": "objects"}
    beyond = {"slice": 7, "box": [1.0, 1.0, 9.0, 9.0]}
    with pytest.raises(CorrectionsError, match="slice 7"):
        store.add(np.ones((3, 40, 50)), _labels((3, 40, 50)), extra={"prompts": {"boxes": [beyond]}})
    entry = store.add(np.ones((3, 40, 50)), _labels((3, 40, 50)), extra={"prompts": volume_prompts})
    store.add(np.ones((40, 50)), _labels())
    _set_record(store, entry.id, lambda r: r["extra"]["prompts"]["boxes"].append(beyond))
    outcome = _finetune(run_cli, store, registry, tmp_path)
    assert outcome.code == 0, outcome.err
    assert any(entry.id in line and "slice 7" in line for line in _warnings(outcome.err)), outcome.err


def test_a_box_on_a_slice_without_labels_is_said_not_dropped(tmp_path, caplog):
    store = CorrectionsStore(tmp_path / "store")
    labels = _labels((3, 40, 50))
    labels[1] = 0  # slice 1 holds no labels: it is not a training sample
    prompts = {"boxes": [{"slice": 1, "box": [5.0, 5.0, 25.0, 25.0]}], "labels": "objects"}
    entry = store.add(np.ones((3, 40, 50)), labels, extra={"prompts": prompts})
    with caplog.at_level(logging.WARNING):
        data = store.as_dataset(named_config("tiny"), crop_rule=DEFAULT_CROP_RULE)
    assert len(data) == 2 and f"{entry.id}[1]" in caplog.text


def test_check_finds_a_truncated_image(tmp_path, run_cli):
    store = CorrectionsStore(tmp_path / "store")
    store.add(np.random.default_rng(0).random((40, 50)), _labels())
    entry = store.add(np.random.default_rng(1).random((40, 50)), _labels())
    image = entry.path / "image.tif"
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    check = run_cli("corrections", "check", "--store", store.root)
    assert check.code == 1, check.out
    problems = [line for line in check.out.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and entry.id in problems[0] and "image.tif" in problems[0]
    assert "1 entries" in check.out  # the readable one


def test_check_names_a_lost_labels_file(tmp_path, run_cli):
    store = CorrectionsStore(tmp_path / "store")
    entry = store.add(np.ones((40, 50)), _labels())
    (entry.path / "labels.tif").unlink()
    check = run_cli("corrections", "check", "--store", store.root)
    assert check.code == 1 and "lacks labels.tif" in check.out and "is missing" not in check.out, check.out


def test_a_correction_recorded_from_prompts_record_fine_tunes_on_its_boxes(tmp_path, registry):
    segmenter = Segmenter(load_checkpoint(registry.root / "good"), device="cpu")
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    boxes = [Box(3, 3, 20, 20), Box(25, 15, 45, 35)]
    result = segment_prompts(segmenter, image, boxes, SamplingSettings(steps=1, ensemble=1))
    labels = np.zeros((40, 50), np.uint8)
    labels[5:18, 5:18], labels[18:32, 28:42] = 1, 2  # the annotator's two objects
    store = CorrectionsStore(tmp_path / "store")
    store.add(image, labels, prediction=result.labels, extra={"prompts": result.prompts_record()})
    options = FinetuneOptions(
        parent="good", store=store.root, config=TrainConfig(steps=1, batch_size=1), run_dir=tmp_path / "run"
    )
    done = finetune(options, registry=registry)
    assert done.version is not None
    finetuned = json.loads((Path(done.version.path) / "config.json").read_text())
    assert finetuned["finetune"]["prompt_crops"] == 2  # one crop per recorded box
