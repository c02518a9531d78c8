"""The model registry: versions, selection, protection of the shipped models, atomicity."""

from __future__ import annotations

import json
import threading

import pytest
import torch

from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import CheckpointError, RegistryError
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.paths import ENV_HOME, default_registry_root
from medsegdiff_training.registry import DEFAULT_VERSION, UNTRAINED_VERSION, ModelRegistry

TINY = named_config("tiny")


def checkpoint(folder, seed: int = 0, **metadata):
    torch.manual_seed(seed)
    return save_checkpoint(folder, MedSegDiffUNet(TINY), DiffusionConfig(), PreprocessConfig(), **metadata)


@pytest.fixture
def registry(tmp_path) -> ModelRegistry:
    """A registry with a shipped default (a tiny checkpoint standing in for the real one)."""
    default = checkpoint(tmp_path / "package" / "default_model", description="shipped")
    return ModelRegistry(
        tmp_path / "models", default_model=default, shipped_models=tmp_path / "package" / "shipped"
    )


def test_an_empty_registry_lists_the_default_and_selects_it(registry):
    assert [v.name for v in registry.versions()] == [DEFAULT_VERSION]
    default = registry.get(DEFAULT_VERSION)
    assert default.read_only and default.parent is None and default.description == "shipped"
    assert default.config_summary == "tiny, 32x32, 1 channel, binary"
    assert registry.selected() == DEFAULT_VERSION
    assert registry.load(DEFAULT_VERSION).version == DEFAULT_VERSION


def test_add_lists_oldest_first_with_parent_and_metrics(registry, tmp_path):
    first = registry.add(
        checkpoint(tmp_path / "a", metrics={"validation_dice": 0.5}, training={"data_digest": "abc"}),
        name="first",
        parent=DEFAULT_VERSION,
        description="one",
    )
    second = registry.add(
        checkpoint(tmp_path / "b", seed=1), parent="first", metrics={"validation_dice_after": 0.7}
    )
    assert [v.name for v in registry.versions()] == [DEFAULT_VERSION, "first", second.name]
    assert second.name.startswith("v1-") and second.parent == "first"
    assert (
        first.metrics == {"validation_dice": 0.5}
        and first.data_digest == "abc"
        and first.description == "one"
    )
    assert second.metrics["validation_dice_after"] == 0.7
    assert not first.read_only
    loaded = registry.load("first")
    assert loaded.version == "first" and loaded.metadata["parent"] == DEFAULT_VERSION
    third = registry.add(checkpoint(tmp_path / "c"))
    assert third.name.startswith("v2-")


def test_add_never_overwrites_and_refuses_bad_names(registry, tmp_path):
    source = checkpoint(tmp_path / "a")
    registry.add(source, name="taken")
    before = (registry.root / "taken" / "model.safetensors").read_bytes()
    with pytest.raises(RegistryError, match="exists already"):
        registry.add(checkpoint(tmp_path / "b", seed=3), name="taken")
    assert (registry.root / "taken" / "model.safetensors").read_bytes() == before
    for bad in (DEFAULT_VERSION, UNTRAINED_VERSION, ".hidden", "a/b", ""):
        with pytest.raises(RegistryError):
            registry.add(source, name=bad)
    with pytest.raises(RegistryError, match="Unknown model version 'nope'"):
        registry.add(source, parent="nope")
    assert source.is_dir()  # a copy was made, the source is untouched


def test_add_with_move_takes_the_folder_and_refuses_what_would_not_load(registry, tmp_path):
    source = checkpoint(tmp_path / "run" / "final")
    version = registry.add(source, name="moved", move=True)
    assert not source.exists() and (version.path / "model.safetensors").is_file()
    broken = checkpoint(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError):
        registry.add(broken, name="broken", move=True)
    assert broken.is_dir() and "broken" not in registry.names()
    pickled = tmp_path / "weights.pt"
    pickled.write_bytes(b"pickle")
    with pytest.raises(CheckpointError, match="pickled"):
        registry.add(pickled)


def test_selection_persists_and_rollback_selects_the_parent(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first", parent=DEFAULT_VERSION)
    registry.add(checkpoint(tmp_path / "b"), name="second", parent="first")
    registry.select("second")
    again = ModelRegistry(
        registry.root, default_model=registry.default_model, shipped_models=registry.shipped_models
    )
    assert again.selected() == "second"
    assert json.loads((registry.root / "registry.json").read_text())["selected"] == "second"
    assert again.rollback() == "first" and registry.selected() == "first"
    registry.rollback()
    # "default" is also what a lost selection falls back to: it must be written, and said as no problem
    assert registry.selected() == DEFAULT_VERSION and registry.selection_warning() is None
    assert json.loads((registry.root / "registry.json").read_text())["selected"] == DEFAULT_VERSION
    with pytest.raises(RegistryError, match="no parent"):
        registry.rollback()
    registry.select("first")  # a selection unlike the fallback, so that a refused one could not hide
    with pytest.raises(RegistryError, match="Unknown"):
        registry.select("missing")
    assert registry.selected() == "first" and registry.selection_warning() is None


def test_rename_carries_children_and_selection_along(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.add(checkpoint(tmp_path / "b"), name="child", parent="first")
    registry.select("first")
    renamed = registry.rename("first", "base")
    assert renamed.name == "base" and registry.selected() == "base"
    assert registry.get("child").parent == "base"
    assert registry.load("base").version == "base"
    with pytest.raises(RegistryError, match="exists already"):
        registry.rename("base", "child")


def test_delete_removes_a_version_but_not_the_selected_one(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    registry.add(checkpoint(tmp_path / "b"), name="second")
    registry.select("second")
    with pytest.raises(RegistryError, match="selected"):
        registry.delete("second")
    registry.delete("first")
    assert registry.names() == [DEFAULT_VERSION, "second"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["registry.json", "second"]


def test_the_shipped_default_can_be_neither_renamed_nor_deleted(registry):
    with pytest.raises(RegistryError, match="cannot be renamed"):
        registry.rename(DEFAULT_VERSION, "mine")
    with pytest.raises(RegistryError, match="cannot be deleted"):
        registry.delete(DEFAULT_VERSION)
    assert registry.get(DEFAULT_VERSION).path.is_dir()


def test_further_shipped_models_follow_the_default_read_only(registry, tmp_path):
    checkpoint(registry.shipped_models / "fundus", seed=2, description="disc and cup")
    (registry.shipped_models / "not-a-model").mkdir()  # no config.json: ignored
    mine = registry.add(checkpoint(tmp_path / "a"), name="mine", parent="fundus")
    assert registry.names() == [DEFAULT_VERSION, "fundus", "mine"]
    fundus = registry.get("fundus")
    assert (
        fundus.read_only
        and fundus.description == "disc and cup"
        and fundus.path.parent == registry.shipped_models
    )
    assert mine.parent == "fundus" and registry.load("fundus").version == "fundus"
    registry.select("fundus")
    assert registry.selected() == "fundus"
    registry.select("mine")
    assert registry.rollback() == "fundus"
    with pytest.raises(RegistryError, match="cannot be renamed"):
        registry.rename("fundus", "eyes")
    with pytest.raises(RegistryError, match="cannot be deleted"):
        registry.delete("fundus")
    with pytest.raises(RegistryError, match="shipped model"):
        registry.add(checkpoint(tmp_path / "b"), name="fundus")
    with pytest.raises(RegistryError, match="exists already"):
        registry.rename("mine", "fundus")
    assert (registry.shipped_models / "fundus" / "model.safetensors").is_file()


def test_a_shipped_name_hides_a_users_version_of_the_same_name(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="fundus")  # made before a release shipped "fundus"
    checkpoint(registry.shipped_models / "fundus", seed=2)
    assert registry.names() == [DEFAULT_VERSION, "fundus"]
    assert registry.get("fundus").read_only


def test_every_model_shipped_in_this_package_loads_and_has_a_model_card():
    shipped = ModelRegistry().shipped()
    assert DEFAULT_VERSION in shipped
    for name, folder in shipped.items():
        checkpoint = ModelRegistry().load(name)
        card = json.loads((folder / "model_card.json").read_text())
        assert card["name"] == name and "test_metrics" in card
        assert checkpoint.model_config.num_classes >= 2


def test_without_a_shipped_default_the_untrained_model_is_the_labelled_fallback(tmp_path):
    registry = ModelRegistry(
        tmp_path / "models", default_model=tmp_path / "not-installed", shipped_models=None
    )
    assert registry.versions() == [] and registry.selected() == DEFAULT_VERSION
    with pytest.raises(RegistryError, match="not installed"):
        registry.load(DEFAULT_VERSION)
    untrained = registry.load(UNTRAINED_VERSION)
    assert untrained.version == UNTRAINED_VERSION and "untrained" in untrained.metadata["description"]
    assert untrained.model_config == named_config("cpu")


def test_unknown_versions_are_named_in_one_clear_line(registry):
    with pytest.raises(RegistryError) as error:
        registry.get("v9")
    assert "v9" in str(error.value) and "default" in str(error.value) and "\n" not in str(error.value)


def test_a_hidden_staging_folder_is_never_listed(registry, tmp_path):
    registry.add(checkpoint(tmp_path / "a"), name="first")
    staging = registry.root / ".staging-crashed" / "version"
    staging.mkdir(parents=True)
    (staging / "config.json").write_text("{}")
    incomplete = registry.root / "incomplete"  # no version.json: not made by add(); said, not hidden
    incomplete.mkdir()
    assert sorted(registry.names()) == [DEFAULT_VERSION, "first", "incomplete"]
    assert "version.json" in registry.get("incomplete").broken
    assert [v.name for v in registry.usable()] == [DEFAULT_VERSION, "first"]
    with pytest.raises(RegistryError):
        registry.get(".staging-crashed")


def test_a_concurrent_reader_never_sees_a_half_written_version(registry, tmp_path):
    sources = [checkpoint(tmp_path / f"source{i}", seed=i) for i in range(6)]
    problems: list[str] = []
    # for each full reading pass: how many additions had finished when it began, and what it saw
    passes: list[tuple[int, int]] = []
    added = 0
    changed = threading.Condition()
    done = threading.Event()

    def reader() -> None:
        reading = ModelRegistry(
            registry.root, default_model=registry.default_model, shipped_models=registry.shipped_models
        )
        while not done.is_set():
            with changed:
                began_after = added
            versions = reading.versions()
            for version in versions:
                try:
                    reading.load(version.name)
                except Exception as error:  # noqa: BLE001 - any failure is what we look for
                    problems.append(f"{version.name}: {error}")
            with changed:
                passes.append((began_after, len(versions)))
                changed.notify_all()

    def a_pass_began_after(count: int):
        return lambda: any(began_after >= count for began_after, _ in passes)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for index, source in enumerate(sources):
            # a whole reading pass between two additions (it keeps reading during them too)
            with changed:
                assert changed.wait_for(a_pass_began_after(index), timeout=60)
            registry.add(source, name=f"n{index}")
            with changed:
                added = index + 1
        with changed:
            assert changed.wait_for(a_pass_began_after(len(sources)), timeout=60)
    finally:
        done.set()
        thread.join()
    assert problems == []
    # every pass that began after k additions saw the default and those k versions, all loadable
    for began_after, seen in passes:
        assert seen >= 1 + began_after
    assert {began_after for began_after, _ in passes} >= set(range(len(sources) + 1))
    assert max(seen for _, seen in passes) == 7
    assert len(registry.versions()) == 7


def test_the_default_root_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_HOME, str(tmp_path / "home"))
    assert default_registry_root() == tmp_path / "home" / "models"
    assert ModelRegistry().root == tmp_path / "home" / "models"


def test_box_prompts_have_a_model_of_their_own_the_shipped_general_until_another_is_chosen(
    registry, tmp_path
):
    # without a shipped box model, boxes use the selected version
    mine = registry.add(checkpoint(tmp_path / "a", seed=3), name="mine")
    registry.select(mine.name)
    assert registry.selected_for_boxes() == "mine"
    # with one, a fresh choice for boxes is it, whatever is selected for whole images
    checkpoint(registry.shipped_models / "general", seed=4, description="boxes, many domains")
    assert registry.selected_for_boxes() == "general" and registry.selected() == "mine"
    # choosing for boxes keeps the whole-image choice, and the other way round
    other = registry.add(checkpoint(tmp_path / "b", seed=5), name="other")
    registry.select(other.name, role="boxes")
    registry.select(DEFAULT_VERSION)
    assert (registry.selected(), registry.selected_for_boxes()) == (DEFAULT_VERSION, "other")
    stored = json.loads((registry.root / "registry.json").read_text())
    assert stored["selected"] == DEFAULT_VERSION and stored["selected_boxes"] == "other"
    # a rename carries the choice; the chosen version cannot be deleted
    registry.rename("other", "boxes-v2")
    assert registry.selected_for_boxes() == "boxes-v2"
    with pytest.raises(RegistryError, match="selected for box prompts"):
        registry.delete("boxes-v2")
    # a chosen version whose folder is gone falls back to the shipped box model, and says so
    import shutil

    shutil.rmtree(registry.root / "boxes-v2")
    assert registry.selected_for_boxes() == "general"
    assert "selected for box prompts" in (registry.selection_warning() or "")
