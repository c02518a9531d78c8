"""Checkpoints load safely: never unpickled, every broken form named as a CheckpointError.

(The bit-exact round trip and the basic pickle refusal are in test_inference.py.)
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from medsegdiff_training.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    convert_trusted_pickle,
    load_checkpoint,
    read_checkpoint_config,
    save_checkpoint,
)
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.errors import CheckpointError
from medsegdiff_training.model import MedSegDiffUNet


class _Trap:
    """Unpickling this object creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_the_trap_does_fire_when_a_pickle_is_loaded(tmp_path):
    """The control for the tests below: a marker that stays absent proves something."""
    marker = tmp_path / "payload-ran"
    torch.save({"trap": _Trap(marker)}, tmp_path / "evil.pt")
    torch.load(tmp_path / "evil.pt", weights_only=False)["trap"].close()  # what the package never does
    assert marker.exists()


def _checkpoint(tmp_path: Path, name: str = "c") -> Path:
    return save_checkpoint(
        tmp_path / name, MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
    )


@pytest.mark.parametrize("name", ["model.pt", "model.ckpt", "weights"])
def test_a_pickle_with_a_payload_is_refused_and_its_payload_never_runs(tmp_path, name):
    marker = tmp_path / "payload-ran"
    torch.save({"weights": torch.zeros(2), "trap": _Trap(marker)}, tmp_path / name)
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="never unpickles"):
        load_checkpoint(tmp_path / name)
    with pytest.raises(CheckpointError, match="convert_trusted_pickle"):
        read_checkpoint_config(tmp_path / name)
    assert not marker.exists()


def test_converting_a_trusted_state_dict_is_bit_exact_and_refuses_code(tmp_path):
    model = MedSegDiffUNet(named_config("tiny"))
    with torch.no_grad():
        model.skip_parsers[1].weight.mul_(0.5 + 0.5j)
    torch.save(model.state_dict(), tmp_path / "trusted.pt")
    folder = convert_trusted_pickle(tmp_path / "trusted.pt", tmp_path / "converted", named_config("tiny"))
    loaded = load_checkpoint(folder).model.state_dict()
    assert all(torch.equal(tensor, loaded[name]) for name, tensor in model.state_dict().items())

    marker = tmp_path / "payload-ran"
    torch.save({"trap": _Trap(marker)}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="weights_only"):
        convert_trusted_pickle(tmp_path / "evil.pt", tmp_path / "never", named_config("tiny"))
    assert not marker.exists() and not (tmp_path / "never").exists()
    with pytest.raises(CheckpointError, match="do not match"):
        convert_trusted_pickle(
            tmp_path / "trusted.pt", tmp_path / "never", named_config("tiny", num_classes=3)
        )
    with pytest.raises(CheckpointError, match="does not exist"):
        convert_trusted_pickle(tmp_path / "missing.pt", tmp_path / "never", named_config("tiny"))


def test_a_checkpoint_opens_from_its_folder_weights_or_config(tmp_path):
    folder = _checkpoint(tmp_path)
    for path in (folder, folder / "model.safetensors", folder / "config.json"):
        assert load_checkpoint(path).path == folder
    assert read_checkpoint_config(folder / "config.json")["model"]["name"] == "tiny"
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="is a file, not a MedSegDiff checkpoint"):
        load_checkpoint(tmp_path / "notes.txt")


def test_missing_parts_and_foreign_configs_are_named(tmp_path):
    no_weights = _checkpoint(tmp_path, "a")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="has no model.safetensors"):
        load_checkpoint(no_weights)

    no_config = _checkpoint(tmp_path, "b")
    (no_config / "config.json").unlink()
    with pytest.raises(CheckpointError, match="has no config.json"):
        load_checkpoint(no_config)

    folder = _checkpoint(tmp_path, "c")
    config_file = folder / "config.json"
    document = json.loads(config_file.read_text())
    edits = {
        "not a MedSegDiff checkpoint": {**document, "format": "something-else"},
        "newer napari-medsegdiff": {**document, "format_version": 99},
        "invalid configuration": {**document, "model": {**document["model"], "image_channels": 9}},
    }
    for message, edited in edits.items():
        config_file.write_text(json.dumps(edited))
        with pytest.raises(CheckpointError, match=message):
            load_checkpoint(folder)


def test_weights_from_another_model_are_named_not_a_load_state_dict_traceback(tmp_path):
    folder = _checkpoint(tmp_path, "a")
    other = save_checkpoint(
        tmp_path / "b",
        MedSegDiffUNet(named_config("tiny", ff_parser=False)),
        DiffusionConfig(),
        PreprocessConfig(),
    )
    (folder / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="missing .*skip_parsers") as caught:
        load_checkpoint(folder)
    assert "config.json" in str(caught.value)

    (folder / "model.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(folder)


def test_saving_leaves_no_partial_folders_and_overwrite_is_explicit(tmp_path):
    model = MedSegDiffUNet(named_config("tiny"))
    folder = save_checkpoint(tmp_path / "c", model, DiffusionConfig(), PreprocessConfig(), version="1")
    save_checkpoint(folder, model, DiffusionConfig(), PreprocessConfig(), overwrite=True, version="2")
    assert load_checkpoint(folder).version == "2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_the_configs_and_metadata_come_back_as_saved(tmp_path):
    diffusion = DiffusionConfig(timesteps=50, schedule="cosine", prediction="v")
    preprocess = PreprocessConfig(normalisation="zscore")
    model = MedSegDiffUNet(named_config("tiny"))
    folder = save_checkpoint(tmp_path / "c", model, diffusion, preprocess, version="7", parent="6")
    loaded = load_checkpoint(folder)
    assert loaded.model_config == named_config("tiny")
    assert loaded.diffusion == diffusion and loaded.preprocess == preprocess
    assert not loaded.model.training
    assert {p.device.type for p in loaded.model.parameters()} == {"cpu"}
    # the device asked for is where the network goes ("meta": a device every machine has)
    assert {p.device.type for p in load_checkpoint(folder, device="meta").model.parameters()} == {"meta"}
    # metadata: what was said about the model, and the format; never the three configs again
    assert sorted(loaded.metadata) == ["created", "format", "format_version", "parent", "version"]
    assert (loaded.version, loaded.metadata["parent"]) == ("7", "6")
    assert (loaded.metadata["format"], loaded.metadata["format_version"]) == (FORMAT, FORMAT_VERSION)
    created = datetime.datetime.strptime(loaded.metadata["created"], "%Y-%m-%dT%H:%M:%S%z")
    assert abs((datetime.datetime.now(created.tzinfo) - created).days) <= 1
    # config.json is for people too: indented, keys sorted (stable diffs between versions)
    text = (folder / "config.json").read_text()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True)


def test_a_config_without_diffusion_or_preprocess_loads_their_defaults(tmp_path):
    folder = save_checkpoint(
        tmp_path / "c",
        MedSegDiffUNet(named_config("tiny")),
        DiffusionConfig(timesteps=50),
        PreprocessConfig(normalisation="minmax"),
    )
    document = json.loads((folder / "config.json").read_text())
    del document["diffusion"], document["preprocess"]
    (folder / "config.json").write_text(json.dumps(document))
    loaded = load_checkpoint(folder)
    assert loaded.diffusion == DiffusionConfig() and loaded.preprocess == PreprocessConfig()


def test_an_invalid_config_names_its_file(tmp_path):
    folder = _checkpoint(tmp_path)
    document = json.loads((folder / "config.json").read_text())
    for section in ("diffusion", "preprocess"):
        # a value of the wrong type (caught when the file is read), or a key no version knows
        for edit in ({"timesteps": "many"} if section == "diffusion" else {"resize": 3}, {"colour": 1}):
            (folder / "config.json").write_text(
                json.dumps({**document, section: {**document[section], **edit}})
            )
            with pytest.raises(CheckpointError) as caught:
                load_checkpoint(folder)
            assert str(caught.value).startswith(f"{folder / 'config.json'} has an invalid configuration: ")
    assert str(caught.value).endswith("unexpected keyword argument 'colour'")


def test_a_mismatch_names_one_missing_one_unexpected_and_one_reshaped_weight(tmp_path):
    folder = _checkpoint(tmp_path)
    weights = load_file(str(folder / "model.safetensors"))
    names = sorted(weights)
    renamed, reshaped = names[0], names[-1]
    weights["not.in.the.model"] = weights.pop(renamed)
    weights[reshaped] = torch.zeros(*weights[reshaped].shape, 2)
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(folder)
    shape = tuple(MedSegDiffUNet(named_config("tiny")).state_dict()[reshaped].shape)
    assert str(caught.value) == (
        f"The weights in {folder} do not match its config.json: "
        f"1 missing (e.g. {renamed}); 1 unexpected (e.g. not.in.the.model); "
        f"1 with other shapes (e.g. {reshaped}: file {(*shape, 2)} vs config {shape}). "
        "The config was edited or the files come from different models."
    )


def test_an_existing_checkpoint_is_never_overwritten_by_default(tmp_path):
    folder = _checkpoint(tmp_path)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    model = MedSegDiffUNet(named_config("tiny", num_classes=3))
    with pytest.raises(CheckpointError) as caught:
        save_checkpoint(folder, model, DiffusionConfig(), PreprocessConfig())
    assert str(caught.value) == f"{folder} exists already; checkpoints are never overwritten."
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_failed_save_leaves_nothing_behind(tmp_path):
    model = MedSegDiffUNet(named_config("tiny"))
    parameters = dict(model.named_parameters())
    by_shape: dict[tuple, list[str]] = {}
    for name, parameter in parameters.items():
        by_shape.setdefault(tuple(parameter.shape), []).append(name)
    first, second = next(names for names in by_shape.values() if len(names) > 1)[:2]
    module_name, _, attribute = second.rpartition(".")
    setattr(model.get_submodule(module_name), attribute, parameters[first])  # tied: safetensors refuses
    with pytest.raises(RuntimeError, match="share memory"):
        save_checkpoint(tmp_path / "c", model, DiffusionConfig(), PreprocessConfig())
    assert list(tmp_path.iterdir()) == []


def test_a_trusted_training_checkpoint_with_a_state_dict_inside_is_converted(tmp_path):
    model = MedSegDiffUNet(named_config("tiny"))
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "lightning.ckpt")
    folder = convert_trusted_pickle(
        tmp_path / "lightning.ckpt",
        tmp_path / "converted",
        named_config("tiny"),
        DiffusionConfig(timesteps=40),
        PreprocessConfig(normalisation="zscore"),
    )
    loaded = load_checkpoint(folder)
    assert all(torch.equal(t, loaded.model.state_dict()[n]) for n, t in model.state_dict().items())
    assert (loaded.diffusion.timesteps, loaded.preprocess.normalisation) == (40, "zscore")
    plain = convert_trusted_pickle(tmp_path / "lightning.ckpt", tmp_path / "plain", named_config("tiny"))
    assert load_checkpoint(plain).diffusion == DiffusionConfig()


@pytest.mark.parametrize("content", [{"weights": [1, 2]}, [torch.zeros(2)], {"epoch": 3}])
def test_a_pickle_that_is_no_state_dict_is_named(tmp_path, content):
    torch.save(content, tmp_path / "odd.pt")
    with pytest.raises(CheckpointError) as caught:
        convert_trusted_pickle(tmp_path / "odd.pt", tmp_path / "never", named_config("tiny"))
    assert str(caught.value) == (
        f"{tmp_path / 'odd.pt'} does not hold a state dict (a mapping of names to tensors)."
    )
    assert not (tmp_path / "never").exists()


def test_a_converted_mismatch_names_the_pickle(tmp_path):
    torch.save(MedSegDiffUNet(named_config("tiny")).state_dict(), tmp_path / "trusted.pt")
    with pytest.raises(CheckpointError) as caught:
        convert_trusted_pickle(
            tmp_path / "trusted.pt", tmp_path / "never", named_config("tiny", num_classes=3)
        )
    assert str(caught.value).startswith(f"The weights in {tmp_path / 'trusted.pt'} do not match")
