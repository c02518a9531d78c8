"""Checkpoints load safely: never unpickled, every broken form named as a CheckpointError.

(The bit-exact round trip and the basic pickle refusal are in test_inference.py.)
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medsegdiff_training.checkpoint import (
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
