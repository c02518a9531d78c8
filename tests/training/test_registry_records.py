"""The registry's records and its repairs: what version.json and registry.json hold, how a
damaged version is listed, what killed writers leave behind, and the messages people read.

(The operations themselves are in test_registry.py; docs/registry.md is the contract.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import torch

from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import RegistryError
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import (
    DEFAULT_VERSION,
    UNTRAINED_VERSION,
    ModelRegistry,
    ModelVersion,
    check_version_name,
    read_version_record,
    untrained_model_checkpoint,
)
from medsegdiff_training.validation import MAX_NESTING

TINY = named_config("tiny")
TINY_RECORD = json.loads(json.dumps(TINY.to_dict()))  # as config.json holds it (lists)
GONE_PID = 99_999_999  # above any pid_max: no such process


def checkpoint(folder, config=TINY, **metadata):
    torch.manual_seed(0)
    return save_checkpoint(folder, MedSegDiffUNet(config), DiffusionConfig(), PreprocessConfig(), **metadata)


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", default_model=None, shipped_models=tmp_path / "shipped")


def _error(call) -> str:
    with pytest.raises(RegistryError) as caught:
        call()
    return str(caught.value)


def test_version_json_holds_the_documented_record(registry, tmp_path):
    source = checkpoint(
        tmp_path / "a",
        metrics={"validation_dice": 0.5, "loss": 0.1},
        training={"data_digest": "abc"},
    )
    (source / "notes.txt").write_text("not part of a checkpoint")
    version = registry.add(source, name="first", description="one", metrics={"loss": 0.2, "corrections": 3})
    record = json.loads((version.path / "version.json").read_text())
    created = datetime.fromisoformat(record.pop("created"))
    assert record == {
        "parent": None,
        "description": "one",
        "metrics": {"validation_dice": 0.5, "loss": 0.2, "corrections": 3},  # given ones win
        "data_digest": "abc",
    }
    assert created.utcoffset() is not None and abs(datetime.now(created.tzinfo) - created) < timedelta(days=1)
    assert re.search(r"T\d\d:\d\d:\d\d\.\d{3}[+-]", version.created)  # milliseconds, then the offset
    assert (version.path / "version.json").read_text() == json.dumps(
        {**record, "created": version.created}, indent=2, sort_keys=True
    )
    # only the checkpoint's two files are copied; the folder is readable by other users
    files = ["config.json", "model.safetensors", "version.json"]
    assert sorted(p.name for p in version.path.iterdir()) == files
    assert version.path.stat().st_mode & 0o777 == 0o755
    assert sorted(p.name for p in registry.root.iterdir()) == ["first"]  # no staging left
    child = registry.add(checkpoint(tmp_path / "b"), parent=UNTRAINED_VERSION, move=True)
    assert child.parent == UNTRAINED_VERSION and child.metrics == {} and child.data_digest is None
    assert sorted(p.name for p in registry.root.iterdir()) == sorted(["first", child.name])


def test_automatic_names_count_up_from_the_largest(registry, tmp_path):
    first = registry.add(checkpoint(tmp_path / "a"))
    assert re.fullmatch(r"v1-\d{8}-\d{4}", first.name)
    assert first.name[3:11] <= datetime.now().strftime("%Y%m%d")
    registry.rename(first.name, "v7-old")
    registry.add(checkpoint(tmp_path / "b"), name="v12x")  # not an automatic name
    assert registry.add(checkpoint(tmp_path / "c")).name.startswith("v8-")


def test_registry_json_is_written_whole_and_readable_by_others(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.select("first")
    path = registry.root / "registry.json"
    assert json.loads(path.read_text()) == {"format": "medsegdiff-registry", "selected": "first"}
    assert path.read_text() == json.dumps(json.loads(path.read_text()), indent=2, sort_keys=True)
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in registry.root.iterdir()) == ["first", "registry.json"]
    registry.select(UNTRAINED_VERSION)  # no folder, still selectable
    assert registry.selected() == UNTRAINED_VERSION


@pytest.mark.parametrize(
    "content",
    ["{not json", '["a list"]', '{"selected": 3}', '"text"', '{"selected": "gone"}', '{"format": "x"}'],
)
def test_a_damaged_or_stale_selection_falls_back_to_the_default(registry, content):
    registry.root.mkdir(parents=True)
    (registry.root / "registry.json").write_text(content)
    assert registry.selected() == DEFAULT_VERSION
    assert f"'{DEFAULT_VERSION}'" in registry.selection_warning()  # said: a fallback, not a choice


def test_a_selected_shipped_model_stays_selected(registry):
    checkpoint(registry.shipped_models / "fundus")
    (registry.root).mkdir(parents=True)
    (registry.root / "registry.json").write_text(json.dumps({"selected": "fundus"}))
    assert registry.selected() == "fundus"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{torn", "cannot be read (Expecting property name enclosed in double quotes"),
        ("[1, 2]", "holds a list, not a JSON object."),
        ('{"metrics": [1]}', "metrics has the wrong type (list)."),
        ('{"parent": 3}', "parent has the wrong type (int)."),
        ('{"description": null}', "description has the wrong type (NoneType)."),
        ("[" * 5000 + "]" * 5000, "cannot be read"),
    ],
)
def test_a_damaged_version_is_listed_as_broken_with_its_reason(registry, tmp_path, content, reason):
    version = registry.add(checkpoint(tmp_path / "a"), name="first", description="kept")
    path = version.path / "version.json"
    path.write_text(content)
    with pytest.raises(RegistryError) as caught:
        read_version_record(path)
    assert str(caught.value).startswith(str(path)) and reason in str(caught.value)
    [listed] = registry.versions()
    assert listed.name == "first" and listed.broken == " ".join(str(caught.value).split())
    assert (listed.parent, listed.created, listed.metrics, listed.description) == (None, "", {}, "")
    assert not listed.read_only and listed.model == {}
    assert listed.config_summary == f"BROKEN: {listed.broken}"
    assert registry.usable() == []
    assert _error(lambda: registry.load("first")) == f"The model version 'first' is broken: {listed.broken}"
    info = registry.describe("first")
    assert info["broken"] == listed.broken and info["checkpoint"]["model"]["name"] == "tiny"


def test_deep_nesting_in_version_json_is_refused_as_damage(registry, tmp_path):
    version = registry.add(checkpoint(tmp_path / "a"), name="first")
    path = version.path / "version.json"
    nested: list = [1]
    for _ in range(MAX_NESTING + 1):
        nested = [nested]
    path.write_text(json.dumps({"metrics": {"a": nested}}))
    assert _error(lambda: read_version_record(path)) == (
        f"{path}: it is nested more than {MAX_NESTING} levels deep."
    )


def test_a_version_whose_checkpoint_config_is_damaged_is_broken_and_described(registry, tmp_path):
    version = registry.add(checkpoint(tmp_path / "a"), name="first")
    (version.path / "config.json").write_text("{}")
    [listed] = registry.versions()
    assert listed.broken is not None and "config.json" in listed.broken
    info = registry.describe("first")
    assert "checkpoint" not in info and info["checkpoint_error"].startswith(str(version.path / "config.json"))


def test_a_damaged_shipped_model_is_listed_broken_and_read_only(registry):
    folder = registry.shipped_models / "fundus"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{broken")
    [listed] = registry.versions()
    assert (listed.name, listed.read_only, listed.path) == ("fundus", True, folder)
    assert listed.broken is not None and "\n" not in listed.broken


def test_what_a_shipped_model_says_about_itself(registry):
    checkpoint(
        registry.shipped_models / "fundus",
        metrics={"dice": 0.9},
        training={"data_digest": "d1"},
        created="2026-01-01T00:00:00+0000",
    )
    checkpoint(registry.shipped_models / "plain")
    checkpoint(registry.shipped_models / "untrained")  # a reserved name is never a shipped model
    fundus, plain = registry.versions()
    assert (fundus.name, fundus.metrics, fundus.data_digest) == ("fundus", {"dice": 0.9}, "d1")
    assert fundus.created == "2026-01-01T00:00:00+0000" and fundus.parent is None
    assert fundus.model == TINY_RECORD
    assert plain.description == "a model shipped with the package"
    assert registry.shipped() == {"fundus": fundus.path, "plain": plain.path}
    assert not registry.has_default()
    assert not ModelRegistry(registry.root, default_model=None, shipped_models=None).shipped()


def test_what_a_killed_writer_left_is_put_back_or_removed(registry, tmp_path):
    kept = registry.add(checkpoint(tmp_path / "a"), name="kept")
    root = registry.root
    # a move whose writer was killed: the checkpoint goes back where it came from
    moved_from = tmp_path / "run" / "final"
    moved_from.parent.mkdir()  # the run folder it was moved out of
    moved = root / f".staging-{GONE_PID}-abc"
    checkpoint(moved / "version")
    (moved / "version" / "version.json").write_text("{}")
    (moved / "source.json").write_text(json.dumps({"source": str(moved_from)}))
    # a copy whose writer was killed (no source.json): removed
    copied = root / f".staging-{GONE_PID}-def"
    checkpoint(copied / "version")
    # a move whose source place is taken again: put back beside it, the newcomer untouched
    taken = tmp_path / "taken"
    taken.mkdir()
    clash = root / f".staging-{GONE_PID}-ghi"
    checkpoint(clash / "version")
    (clash / "source.json").write_text(json.dumps({"source": str(taken)}))
    # ... and when that is taken too, as -recovered-2
    twice = tmp_path / "twice"
    for path in (twice, tmp_path / "twice-recovered"):
        path.mkdir()
    clash_again = root / f".staging-{GONE_PID}-stu"
    checkpoint(clash_again / "version")
    (clash_again / "source.json").write_text(json.dumps({"source": str(twice)}))
    # a move whose source's folders were deleted since: they are made again
    gone = tmp_path / "deleted" / "run" / "final"
    vanished = root / f".staging-{GONE_PID}-mno"
    checkpoint(vanished / "version")
    (vanished / "source.json").write_text(json.dumps({"source": str(gone)}))
    # a copy to another file system (its source is still there): removed
    other = root / f".staging-{GONE_PID}-pqr"
    checkpoint(other / "version")
    (other / "source.json").write_text(json.dumps({"source": str(tmp_path / "a"), "copied": True}))
    # a deletion that was interrupted, and a writer that is still running
    (root / ".deleting-old-12345678").mkdir()
    running = root / f".staging-{os.getpid()}-jkl"
    running.mkdir()
    restored = registry.recover_staging()
    expected = [moved_from, tmp_path / "taken-recovered", tmp_path / "twice-recovered-2", gone]
    assert sorted(restored) == sorted(expected)
    for path in restored:
        assert sorted(p.name for p in path.iterdir()) == ["config.json", "model.safetensors"]
    assert list(taken.iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == sorted(["kept", running.name])
    assert registry.names() == ["kept"] and registry.get("kept") == kept


def test_a_moved_checkpoint_that_cannot_be_put_back_stays_in_staging(registry, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")  # the source's parent is a file now: no way back
    moved = registry.root / f".staging-{GONE_PID}-abc"
    checkpoint(moved / "version")
    (moved / "source.json").write_text(json.dumps({"source": str(blocker / "final")}))
    # a later staging folder (in the order recovery reads them) is still recovered
    later_from = tmp_path / "run" / "final"
    later_from.parent.mkdir()
    later = registry.root / f".staging-{GONE_PID}-xyz"
    checkpoint(later / "version")
    (later / "source.json").write_text(json.dumps({"source": str(later_from)}))
    assert registry.recover_staging() == [later_from]
    assert sorted(p.name for p in (moved / "version").iterdir()) == ["config.json", "model.safetensors"]
    assert registry.names() == []  # still listed nowhere, but never deleted


def test_listing_recovers_staging_too(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="kept")
    (registry.root / f".staging-{GONE_PID}-abc").mkdir()
    assert registry.names() == ["kept"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["kept"]
    assert ModelRegistry(tmp_path / "nowhere").recover_staging() == []


def test_names_are_checked_with_messages_that_say_the_rule():
    rule = "use letters, digits and . _ + - (up to 80, not starting with a dot or dash)."
    for bad in (".hidden", "-dash", "a/b", "a b", "x" * 81, ""):
        message = _error(lambda bad=bad: check_version_name(bad))
        assert message == f"{bad!r} cannot name a model version: {rule}"
    for reserved in (DEFAULT_VERSION, UNTRAINED_VERSION):
        assert _error(lambda reserved=reserved: check_version_name(reserved)) == (
            f"{reserved!r} is reserved for the shipped model; choose another name."
        )
    for good in ("x" * 80, "a.b_c+d-e", "7", "V2"):
        assert check_version_name(good) == good


def test_messages_for_unknown_versions_and_refused_changes(registry, tmp_path):
    assert _error(lambda: registry.get("v9")) == (
        f"Unknown model version 'v9' in {registry.root} (known: none yet)."
    )
    assert _error(lambda: registry.get(DEFAULT_VERSION)) == (
        "The shipped default model is not installed in this copy of napari-medsegdiff; "
        "use another version or 'untrained' to try an untrained model."
    )
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.add(checkpoint(tmp_path / "b"), name="second", parent="first")
    assert _error(lambda: registry.get("../first")).startswith("Unknown model version '../first'")
    # a path through a version's folder is not a name, even where it leads to one
    assert _error(lambda: registry.get("second/../first")).startswith("Unknown model version 'second/")
    assert _error(lambda: registry.get("v9")).endswith("(known: first, second).")
    registry.select("first")
    assert _error(lambda: registry.rollback()) == "'first' has no parent version to roll back to."
    assert _error(lambda: registry.delete("first")) == (
        "'first' is the selected model; select another version before deleting it."
    )
    assert _error(lambda: registry.rename("second", "first")) == (
        "A model version called 'first' exists already; choose another name."
    )
    assert _error(lambda: registry.add(checkpoint(tmp_path / "c"), name="first")) == (
        "A model version called 'first' exists already; choose another name."
    )
    assert "cannot name a model version" in _error(lambda: registry.rename("second", "../x"))
    assert _error(lambda: registry.rename("untrained", "x")) == (
        "The 'untrained' model cannot be renamed: it comes with the package."
    )
    assert _error(lambda: registry.delete("default")) == (
        "The 'default' model cannot be deleted: it comes with the package."
    )
    assert registry.names() == ["first", "second"] and registry.selected() == "first"


def test_rename_keeps_the_selection_and_skips_damaged_records(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.add(checkpoint(tmp_path / "b"), name="child", parent="first")
    registry.add(checkpoint(tmp_path / "c"), name="other", parent="first")
    registry.select("child")
    (registry.root / "other" / "version.json").write_text("[]")  # damaged: left as it is
    renamed = registry.rename("first", "base")
    assert renamed.name == "base" and renamed.path == registry.root / "base"
    assert registry.selected() == "child" and registry.get("child").parent == "base"
    assert (registry.root / "other" / "version.json").read_text() == "[]"
    assert not (registry.root / "first").exists()


def test_delete_leaves_nothing_and_an_unknown_name_is_named(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.delete("first")
    assert list(registry.root.iterdir()) == []
    assert _error(lambda: registry.delete("first")).startswith("Unknown model version 'first'")


def test_describe_says_whether_it_is_selected(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first", description="one")
    registry.add(checkpoint(tmp_path / "b"), name="second")
    registry.select("first")
    first, second = registry.describe("first"), registry.describe("second")
    assert (first["selected"], second["selected"]) == (True, False)
    assert first["description"] == "one" and first["checkpoint"]["model"] == TINY_RECORD
    assert first["config_summary"] == "tiny, 32x32, 1 channel, binary"
    assert set(first) == {
        "name", "path", "parent", "created", "metrics", "data_digest", "read_only", "description",
        "config_summary", "model", "broken", "selected", "checkpoint",
    }  # fmt: skip
    assert first["path"] == str(registry.root / "first") and first["broken"] is None


def test_a_loaded_version_names_itself_and_its_parent(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.add(checkpoint(tmp_path / "b"), name="second", parent="first")
    loaded = registry.load("second", device="meta")
    assert (loaded.metadata["version"], loaded.metadata["parent"]) == ("second", "first")
    assert {p.device.type for p in loaded.model.parameters()} == {"meta"}
    untrained = registry.load(UNTRAINED_VERSION, device="meta")
    assert {p.device.type for p in untrained.model.parameters()} == {"meta"}


def test_the_untrained_model_is_fixed_and_leaves_the_random_state_alone():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    first = untrained_model_checkpoint()
    assert torch.equal(torch.rand(3), expected)
    second = untrained_model_checkpoint()
    assert all(torch.equal(t, second.model.state_dict()[n]) for n, t in first.model.state_dict().items())
    assert not first.model.training and first.path is None
    assert first.metadata == {
        "version": UNTRAINED_VERSION,
        "parent": None,
        "description": "untrained 'cpu' model with random weights: its masks are meaningless",
    }
    assert (first.diffusion, first.preprocess) == (DiffusionConfig(), PreprocessConfig())


def _version(**fields) -> ModelVersion:
    values = {
        "name": "x",
        "path": "p",
        "parent": None,
        "created": "",
        "metrics": {},
        "data_digest": None,
        "read_only": False,
    }
    return ModelVersion(**{**values, **fields})


def test_a_versions_dice_and_one_line_summary():
    assert _version(metrics={"validation_dice": 0.5}).validation_dice == 0.5
    assert _version(metrics={"validation_dice": 0.5, "validation_dice_after": 0.75}).validation_dice == 0.75
    assert _version(metrics={"validation_dice": 1}).validation_dice == 1.0
    for odd in ({}, {"validation_dice": True}, {"validation_dice": "high"}, {"validation_dice_after": None}):
        assert _version(metrics=odd).validation_dice is None
    assert _version().config_summary == "unknown architecture"
    rgb = named_config("tiny", image_channels=3, num_classes=3).to_dict()
    assert _version(model=rgb).config_summary == "tiny, 32x32, 3 channels, 3 classes"
    assert _version(model={"name": "S"}).config_summary == "S, ?x?, 1 channel, binary"
    assert _version(model={"image_size": [8, 16]}).config_summary == "?, 8x16, 1 channel, binary"


def test_repr():
    assert repr(ModelRegistry("/some/where")) == "ModelRegistry('/some/where')"


def test_records_that_omit_optional_fields_read_as_documented(registry, tmp_path):
    """A version.json / shipped config.json without created or description (older writers)."""
    version = registry.add(checkpoint(tmp_path / "a"), name="old", description="gone")
    (version.path / "version.json").write_text(json.dumps({"parent": None}))
    shipped = checkpoint(registry.shipped_models / "bare")
    config = json.loads((shipped / "config.json").read_text())
    config.pop("created", None), config.pop("description", None)
    (shipped / "config.json").write_text(json.dumps(config))
    bare, old = registry.versions()
    assert (old.name, old.created, old.description, old.broken) == ("old", "", "", None)
    assert (bare.name, bare.created, bare.description) == ("bare", "", "a model shipped with the package")
    assert old.read_only is False and bare.read_only is True
    assert old.to_dict()["read_only"] is False and registry.get("old").read_only is False


def test_a_hidden_folder_is_never_a_version_even_with_a_record(registry, tmp_path):
    version = registry.add(checkpoint(tmp_path / "a"), name="seen")
    shutil.copytree(version.path, registry.root / ".hidden")
    assert registry.names() == ["seen"]
    assert "Unknown model version '.hidden'" in _error(lambda: registry.get(".hidden"))


def test_selecting_creates_a_registry_whose_parent_folders_do_not_exist_yet(tmp_path):
    registry = ModelRegistry(tmp_path / "not" / "yet" / "models", default_model=None, shipped_models=None)
    registry.select(UNTRAINED_VERSION)
    assert registry.selected() == UNTRAINED_VERSION
    assert json.loads((registry.root / "registry.json").read_text())["selected"] == UNTRAINED_VERSION


def test_the_untrained_model_holds_the_seed_0_weights_of_the_cpu_network():
    torch.manual_seed(0)
    expected = MedSegDiffUNet(named_config("cpu")).state_dict()
    torch.manual_seed(1)
    other = MedSegDiffUNet(named_config("cpu")).state_dict()
    untrained = untrained_model_checkpoint().model.state_dict()
    assert all(torch.equal(untrained[name], tensor) for name, tensor in expected.items())
    assert not all(torch.equal(untrained[name], tensor) for name, tensor in other.items())


def _other_file_system(tmp_path):
    """A folder on another file system than ``tmp_path`` (the RAM disk), or None."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != tmp_path.stat().st_dev:
        return shm
    return None


def test_moving_a_checkpoint_from_another_file_system_copies_then_removes_it(tmp_path):
    other = _other_file_system(tmp_path)
    if other is None:
        pytest.skip("needs a writable /dev/shm on another file system than the temporary folder")
    registry = ModelRegistry(tmp_path / "a" / "b" / "models", default_model=None, shipped_models=None)
    source = checkpoint(Path(tempfile.mkdtemp(dir=other)) / "run", training={"data_digest": "d"})
    expected = {name: (source / name).read_bytes() for name in ("config.json", "model.safetensors")}
    try:
        version = registry.add(source, name="moved", move=True)  # a root whose parents are new too
        assert not source.exists()  # copied across file systems, then the source removed
        assert {name: (version.path / name).read_bytes() for name in expected} == expected
        assert (version.description, version.data_digest) == ("", "d")
        assert sorted(p.name for p in registry.root.iterdir()) == ["moved"]  # no staging left
    finally:
        shutil.rmtree(source.parent, ignore_errors=True)


def test_a_failed_move_puts_the_checkpoint_back_where_it_was(registry, tmp_path):
    source = checkpoint(tmp_path / "run")
    registry.add(checkpoint(tmp_path / "first"), name="taken")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    with pytest.raises(RegistryError, match="exists already"):
        registry.add(source, name="taken", move=True)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    assert sorted(p.name for p in registry.root.iterdir()) == ["taken"]
