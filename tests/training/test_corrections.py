"""The corrections store: append-only, crash-safe, validated, readable as a dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medsegdiff_training.config import named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.errors import CorrectionsError, InvalidMaskError
from medsegdiff_training.paths import ENV_HOME, default_corrections_root


def square(shape=(40, 50), label: int = 1) -> np.ndarray:
    labels = np.zeros(shape, np.uint8)
    labels[10:20, 15:30] = label
    return labels


def test_an_entry_round_trips_with_its_metadata(tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    image = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    prediction = np.zeros((40, 50), np.uint8)
    entry = store.add(
        image,
        square(),
        prediction,
        source_path="/data/a.png",
        image_layer="a",
        labels_layer="a labels",
        scale=[0.5, 0.5],
        translate=[1, 2],
        affine=np.eye(3).tolist(),
        model_version="default",
        sampler_settings={"sampler": "ddim", "steps": 20},
        extra={"annotator": "test"},
    )
    assert len(store) == 1
    [listed] = store.entries()
    assert listed.id == entry.id and listed.path == tmp_path / "store" / "entries" / entry.id
    record = listed.manifest
    assert record["source_path"] == "/data/a.png" and record["labels_layer"] == "a labels"
    assert (
        record["shape"] == [40, 50]
        and record["scale"] == [0.5, 0.5]
        and record["affine"] == np.eye(3).tolist()
    )
    assert record["model_version"] == "default" and record["sampler_settings"]["steps"] == 20
    assert record["fraction_changed"] == pytest.approx(150 / 2000)
    assert record["extra"] == {"annotator": "test"} and record["created"]
    assert json.loads((listed.path / "entry.json").read_text()) == record
    image_back, labels_back, prediction_back = store.read(listed)
    assert np.array_equal(image_back, image) and image_back.dtype == np.float32
    assert np.array_equal(labels_back, square()) and np.array_equal(prediction_back, prediction)


def test_two_exports_of_the_same_image_are_two_entries(tmp_path):
    store = CorrectionsStore(tmp_path)
    image = np.ones((40, 50))
    first = store.add(image, square())
    second = store.add(image, square(label=2))
    assert first.id != second.id and len(store) == 2
    assert [e.id for e in store.entries()] == [first.id, second.id]
    assert store.read(store.entries()[0])[1].max() == 1  # the first export is untouched
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == 2


def test_what_a_crashed_writer_leaves_is_recovered_or_harmless(tmp_path, caplog):
    store = CorrectionsStore(tmp_path)
    kept = store.add(np.ones((40, 50)), square())
    entries = tmp_path / "entries"
    # crashed while writing the folder: a hidden partial folder, no manifest line
    (entries / ".20261124-000000-deadbeef.partial-x").mkdir()
    # crashed after the folder, before the manifest line: a complete folder no line lists
    orphan = store.add(np.ones((40, 50)), square())
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")
    # a manifest line whose folder never arrived, then a line torn in half
    with manifest.open("a") as stream:
        stream.write(json.dumps({"id": "20261124-000001-00000000"}) + "\n")
        stream.write('{"id": "20261124-000002-0000')
    # the complete orphan is recovered from its folder, and every problem is reported
    assert [e.id for e in store.entries()] == [kept.id, orphan.id]
    assert "line 2" in caplog.text and "line 3" in caplog.text and orphan.id in caplog.text
    # the next export still lands on a line of its own
    after = store.add(np.ones((40, 50)), square())
    assert [e.id for e in store.entries()] == [kept.id, after.id, orphan.id]


def test_empty_labels_are_refused_unless_confirmed_as_a_true_negative(tmp_path):
    store = CorrectionsStore(tmp_path)
    with pytest.raises(InvalidMaskError, match="true negative"):
        store.add(np.ones((40, 50)), np.zeros((40, 50), np.uint8))
    assert len(store) == 0 and not (tmp_path / "entries").exists()
    entry = store.add(np.ones((40, 50)), np.zeros((40, 50), np.uint8), allow_empty=True)
    assert entry.manifest["empty_confirmed"] is True and len(store) == 1


@pytest.mark.parametrize(
    ("image_shape", "labels_shape"),
    [((40, 50), (50, 40)), ((40, 50, 3), (40, 40)), ((5, 40, 50), (40, 50)), ((40, 50), (40, 50, 2))],
)
def test_labels_that_do_not_cover_the_image_are_refused(tmp_path, image_shape, labels_shape):
    store = CorrectionsStore(tmp_path)
    labels = np.zeros(labels_shape, np.uint8)
    labels.flat[0] = 1
    with pytest.raises(InvalidMaskError, match="shape"):
        store.add(np.ones(image_shape), labels)
    assert len(store) == 0


def test_other_bad_inputs_are_refused(tmp_path):
    store = CorrectionsStore(tmp_path)
    with pytest.raises(InvalidMaskError, match="prediction"):
        store.add(np.ones((40, 50)), square(), prediction=np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidMaskError, match="integers"):
        store.add(np.ones((40, 50)), square().astype(np.float32))
    assert len(store) == 0


def test_a_store_that_cannot_be_written_raises_a_named_error_and_loses_nothing(tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    store.add(np.ones((40, 50)), square())
    (tmp_path / "store" / "entries").rename(tmp_path / "store" / "entries-moved")
    (tmp_path / "store" / "entries").write_text("a file where the folder should be")
    with pytest.raises(CorrectionsError, match="Earlier corrections are unharmed"):
        store.add(np.ones((40, 50)), square())
    (tmp_path / "store" / "entries").unlink()
    (tmp_path / "store" / "entries-moved").rename(tmp_path / "store" / "entries")
    assert len(store) == 1


def test_the_store_is_a_dataset_for_any_image_layout(tmp_path):
    store = CorrectionsStore(tmp_path)
    rng = np.random.default_rng(0)
    store.add(rng.random((40, 50, 3)), square())  # RGB, channels last
    store.add(rng.random((3, 40, 50)), square(label=2))  # channels first
    volume_labels = np.zeros((4, 40, 50), np.uint8)
    volume_labels[1] = square()
    volume_labels[3] = square(label=2)
    store.add(rng.random((4, 40, 50)), volume_labels)  # a volume: its labelled slices only
    dataset = store.as_dataset(named_config("tiny", image_channels=3, num_classes=3))
    assert len(dataset) == 4
    assert dataset.names[2:] == [f"{store.entries()[2].id}[1]", f"{store.entries()[2].id}[3]"]
    image, labels = dataset[1]
    assert image.shape == (3, 32, 32) and labels.shape == (32, 32)
    assert set(labels.unique().tolist()) == {0, 2}


def test_the_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_HOME, str(tmp_path))
    assert default_corrections_root() == tmp_path / "corrections"
    assert CorrectionsStore().root == tmp_path / "corrections" and len(CorrectionsStore()) == 0
