"""The corrections store: append-only, crash-safe, validated, readable as a dataset."""

from __future__ import annotations

import datetime
import json
import re

import numpy as np
import pytest
import torch

from medsegdiff_training.config import PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionEntry, CorrectionsStore
from medsegdiff_training.data.dataset import SegmentationDataset
from medsegdiff_training.errors import CorrectionsError, InvalidImageError, InvalidMaskError
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


def _error(call, kind) -> str:
    with pytest.raises(kind) as caught:
        call()
    return str(caught.value)


def test_the_record_is_the_documented_one(tmp_path):
    """docs/corrections-store.md, "The record": every key, with the values a reader relies on."""
    store = CorrectionsStore(tmp_path)
    labels = square()
    labels[30:35, 0:5] = 3
    prediction = np.zeros_like(labels)
    entry = store.add(
        np.ones((40, 50), np.float32),
        labels,
        prediction,
        image_layer="img",
        translate=[1, 2],
        affine=[[1, 0, 0], [0, 2, 0], [0, 0, 1]],
    )
    assert re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{8}", entry.id)
    assert entry.path == tmp_path / "entries" / entry.id and entry.path.is_dir()
    created = datetime.datetime.strptime(entry.manifest["created"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs(datetime.datetime.now(created.tzinfo) - created) < datetime.timedelta(days=1)
    assert entry.created == entry.manifest["created"]
    assert entry.id.startswith(created.strftime("%Y%m%d-"))
    assert entry.manifest == {
        "format": "medsegdiff-corrections",
        "format_version": 1,
        "id": entry.id,
        "folder": f"entries/{entry.id}",
        "files": {"image": "image.tif", "labels": "labels.tif", "prediction": "prediction.tif"},
        "created": entry.manifest["created"],
        "source_path": None,
        "image_layer": "img",
        "labels_layer": None,
        "layout": "2d",
        "channel_axis": None,
        "shape": [40, 50],
        "labels_shape": [40, 50],
        "image_dtype": "float32",
        "scale": None,
        "translate": [1.0, 2.0],
        "affine": [[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 1.0]],
        "model_version": None,
        "sampler_settings": None,
        "fraction_changed": pytest.approx((150 + 25) / 2000),
        "labels_present": [1, 3],
        "empty_confirmed": False,
        "extra": {},
    }
    assert entry.fraction_changed == pytest.approx(175 / 2000)
    assert all(isinstance(v, float) for v in entry.manifest["affine"][1])
    # the manifest line and entry.json hold the same record; keys sorted, entry.json indented
    line = (tmp_path / "manifest.jsonl").read_text().splitlines()[0]
    assert line == json.dumps(entry.manifest, sort_keys=True)
    text = (entry.path / "entry.json").read_text()
    assert text == json.dumps(entry.manifest, indent=2, sort_keys=True)
    # readable by other users (mkdtemp would leave 0700)
    assert entry.path.stat().st_mode & 0o777 == 0o755

    plain = store.add(np.ones((40, 50)), square())
    assert plain.manifest["files"]["prediction"] is None and plain.fraction_changed is None
    assert plain.manifest["translate"] is None and plain.manifest["affine"] is None
    assert sorted(p.name for p in plain.path.iterdir()) == ["entry.json", "image.tif", "labels.tif"]


def test_files_are_zlib_tiffs_with_the_smallest_label_type(tmp_path):
    import tifffile

    store = CorrectionsStore(tmp_path)
    labels = square().astype(np.int64) * 300
    mask = np.zeros((40, 50), bool)
    mask[0:8, 0:8] = True
    entry = store.add(mask, labels, prediction=square().astype(np.int32))
    for name in ("image.tif", "labels.tif", "prediction.tif"):
        with tifffile.TiffFile(entry.path / name) as tiff:
            assert tiff.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    image, labels_back, prediction = store.read(entry)
    assert image.dtype == np.uint8 and np.array_equal(image, mask.astype(np.uint8))  # a bool image
    assert labels_back.dtype == np.uint16 and np.array_equal(labels_back, labels)
    assert prediction.dtype == np.uint8 and np.array_equal(prediction, square())
    assert entry.manifest["image_dtype"] == "bool"


@pytest.mark.parametrize(
    ("image_shape", "channel_axis"), [((40, 50, 4), 2), ((40, 50, 1), 2), ((4, 40, 50), 0), ((3, 40, 50), 0)]
)
def test_up_to_four_channels_on_either_side(tmp_path, image_shape, channel_axis):
    entry = CorrectionsStore(tmp_path).add(np.ones(image_shape), square())
    assert (entry.manifest["layout"], entry.manifest["channel_axis"]) == ("2d", channel_axis)


@pytest.mark.parametrize("image_shape", [(40, 50, 5), (5, 40, 50, 1)])
def test_more_than_four_channels_or_four_axes_are_refused(tmp_path, image_shape):
    store = CorrectionsStore(tmp_path)
    with pytest.raises((InvalidMaskError, InvalidImageError)):
        store.add(np.ones(image_shape), square())
    assert len(store) == 0


def test_refusals_say_why(tmp_path):
    store = CorrectionsStore(tmp_path)
    assert _error(lambda: store.add(np.ones((2, 40, 50, 1)), square()), InvalidImageError) == (
        "A correction's image must be a 2D or 3D numeric array, got float64 (2, 40, 50, 1)."
    )
    assert _error(lambda: store.add(np.full((40, 50), "a"), square()), InvalidImageError) == (
        "A correction's image must be a 2D or 3D numeric array, got <U1 (40, 50)."
    )
    assert _error(lambda: store.add(np.ones((40, 50)), -square().astype(np.int8)), InvalidMaskError) == (
        "A label map holds non-negative labels; found a negative one."
    )
    assert _error(lambda: store.add(np.ones((40, 50)), np.zeros((40, 50), np.uint8)), InvalidMaskError) == (
        "The label map is empty. If the image truly shows nothing to segment, confirm it is a "
        "true negative (allow_empty) before exporting; otherwise paint the labels first."
    )
    assert _error(lambda: store.add(np.ones((40, 40)), square()), InvalidMaskError) == (
        "The labels have shape (40, 50) but the image has (40, 40): the label map must "
        "cover the image pixel for pixel (a 2D image, a 2D image with up to 4 channels, or a volume "
        "of the same shape)."
    )
    message = _error(lambda: store.add(np.ones((40, 50)), square(), extra={"x": object()}), CorrectionsError)
    assert message.startswith("The correction's metadata cannot be stored as JSON: ")
    assert len(store) == 0 and not (tmp_path / "manifest.jsonl").exists()


def test_write_failures_name_the_cause_and_the_store(tmp_path):
    store = CorrectionsStore(tmp_path / "store")
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "entries").write_text("a file where the folder should be")
    assert _error(lambda: store.add(np.ones((40, 50)), square()), CorrectionsError) == (
        f"Could not write the correction into {tmp_path / 'store'} (File exists); "
        "free some disk space or choose another corrections folder. Earlier corrections are unharmed."
    )
    (tmp_path / "store" / "entries").unlink()
    (tmp_path / "store" / "manifest.jsonl").mkdir()  # the manifest cannot be appended to
    assert _error(lambda: store.add(np.ones((40, 50)), square()), CorrectionsError) == (
        f"Could not record the correction in {tmp_path / 'store' / 'manifest.jsonl'} (Is a directory); "
        "free some disk space and export again. Earlier corrections are unharmed."
    )


def test_damage_is_warned_once_per_state_with_at_most_ten_problems(tmp_path, caplog):
    store = CorrectionsStore(tmp_path)
    kept = store.add(np.ones((40, 50)), square())
    assert store.damage_message() is None  # sound: nothing to say
    with (tmp_path / "manifest.jsonl").open("a") as stream:
        stream.write("not json\n")
    assert [e.id for e in store.entries()] == [kept.id]
    assert len(store) == 1  # a second read of the same damage: no second warning
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert record.getMessage() == (
        f"The corrections store {tmp_path} is damaged (run 'medsegdiff corrections repair'): "
        "manifest.jsonl line 2 is not valid JSON (torn or damaged)"
    )
    assert "; and" not in record.getMessage()
    # the same line for the plugin's notification, with or without a report in hand
    assert store.damage_message() == store.damage_message(store.check()) == record.getMessage()
    caplog.clear()
    with (tmp_path / "manifest.jsonl").open("a") as stream:
        stream.write("not json\n" * 11)
    store.entries()
    [record] = caplog.records
    message = record.getMessage()
    assert message.endswith("; and 2 more")
    assert message.count("manifest.jsonl line ") == 10 and "line 11 " in message and "line 12 " not in message
    assert "; manifest.jsonl line 3 " in message


def test_an_entry_whose_files_went_missing_cannot_be_read_and_says_which(tmp_path):
    store = CorrectionsStore(tmp_path)
    entry = store.add(np.ones((40, 50)), square())
    (entry.path / "labels.tif").unlink()
    message = _error(lambda: store.read(entry), CorrectionsError)
    assert message.startswith(f"The correction {entry.id} in {tmp_path} cannot be read: ")


def test_repair_rebuilds_the_manifest_and_keeps_the_damaged_one(tmp_path):
    store = CorrectionsStore(tmp_path)
    assert repr(store) == f"CorrectionsStore({str(tmp_path)!r})"
    first = store.add(np.ones((40, 50)), square())
    second = store.add(np.ones((40, 50)), square(label=2))
    (tmp_path / "manifest.jsonl").write_text("torn")
    report, kept = store.repair()
    both = sorted([first.id, second.id])  # added within one second: their order is the ids'
    assert sorted(r["id"] for r in report.records) == both
    assert kept is not None and kept.read_text() == "torn" and kept.parent == tmp_path
    assert sorted(e.id for e in store.entries()) == both and not store.check().problems


def test_training_pairs_of_chosen_entries_old_records_and_confirmed_empty_volumes(tmp_path):
    store = CorrectionsStore(tmp_path)
    rng = np.random.default_rng(1)
    flat = store.add(rng.random((40, 50)), square())
    volume = np.zeros((3, 40, 50), np.uint8)
    empty = store.add(rng.random((3, 40, 50)), volume, allow_empty=True)
    assert empty.manifest["empty_confirmed"] is True
    pairs = store.training_pairs([empty])
    assert [name for name, _, _ in pairs] == [f"{empty.id}[{z}]" for z in range(3)]  # every slice
    # a record from before "layout" was written is a 2D entry
    old = CorrectionEntry(flat.id, flat.path, {k: v for k, v in flat.manifest.items() if k != "layout"})
    [(name, image, labels)] = store.training_pairs([old])
    assert name == flat.id and image.shape == (40, 50) and np.array_equal(labels, square())
    # as a dataset: only the chosen entries, read with the given preprocessing
    config = named_config("tiny")
    chosen = store.as_dataset(config, PreprocessConfig(normalisation="minmax"), [flat])
    assert chosen.names == [flat.id]
    expected = SegmentationDataset.from_arrays(
        [store.read(flat)[0]], [square()], config, PreprocessConfig(normalisation="minmax")
    )
    assert torch.equal(chosen[0][0], expected[0][0])
    assert not torch.equal(chosen[0][0], store.as_dataset(config, entries=[flat])[0][0])
