"""Resumable training state, saved without pickle: tensors in safetensors, the rest in JSON.

A run folder holds ``state/`` with::

    weights.safetensors     the raw (non-EMA) weights
    ema.safetensors         the EMA weights
    best.safetensors        the EMA weights of the best validation so far (``keep_best`` runs)
    optimizer.safetensors   AdamW's moment tensors, keyed "<param index>.<name>"
    state.json              step, elapsed time, optimizer scalars, RNG state, history

It is replaced atomically (written beside, then renamed), so an interruption at any
moment leaves either the previous state or the new one.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from .atomic import swap_in_folder
from .errors import CheckpointError

STATE_DIR = "state"


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {"param_groups": state["param_groups"], "state": {}}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{name}"] = value.detach().cpu().contiguous()
            else:
                scalars["state"].setdefault(str(index), {})[name] = value
    return tensors, scalars


def _restore_optimizer(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], scalars: dict
) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, tensor in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = tensor
    for index, values in scalars.get("state", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": scalars["param_groups"]})


def save_training_state(
    run_dir: Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
    info: dict[str, Any],
    best: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the resumable state of a run into ``run_dir/state`` atomically (``best``: the
    EMA weights of the best validation so far, kept beside the current ones)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".state.partial-", dir=run_dir))
    try:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            str(staging / "weights.safetensors"),
        )
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in ema.state_dict().items()},
            str(staging / "ema.safetensors"),
        )
        if best is not None:
            save_file({k: v.contiguous() for k, v in best.items()}, str(staging / "best.safetensors"))
        tensors, scalars = _optimizer_tensors(optimizer)
        tensors["__generator__"] = generator.get_state()
        tensors["__torch_rng__"] = torch.get_rng_state()
        save_file(tensors, str(staging / "optimizer.safetensors"))
        (staging / "state.json").write_text(json.dumps({"optimizer": scalars, **info}, indent=1))
        swap_in_folder(staging, run_dir / STATE_DIR)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    for leftover in run_dir.glob(".state.*"):  # from a save that was killed half-way
        shutil.rmtree(leftover, ignore_errors=True)
    return run_dir / STATE_DIR


def has_training_state(run_dir: Path) -> bool:
    return (run_dir / STATE_DIR / "state.json").is_file()


def load_training_state(
    run_dir: Path,
    model: torch.nn.Module,
    ema: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    generator: torch.Generator,
) -> dict[str, Any]:
    """Restore a run saved by :func:`save_training_state`; returns its info dictionary."""
    folder = run_dir / STATE_DIR
    try:
        info = json.loads((folder / "state.json").read_text())
        model.load_state_dict(load_file(str(folder / "weights.safetensors")))
        ema.load_state_dict(load_file(str(folder / "ema.safetensors")))
        tensors = load_file(str(folder / "optimizer.safetensors"))
    except Exception as error:
        raise CheckpointError(f"The saved training state in {folder} cannot be resumed: {error}") from None
    generator.set_state(tensors.pop("__generator__"))
    torch.set_rng_state(tensors.pop("__torch_rng__"))
    _restore_optimizer(optimizer, tensors, info.pop("optimizer"))
    return info


def load_best_weights(run_dir: Path) -> dict[str, torch.Tensor] | None:
    """The best validation's EMA weights a saved state keeps, or ``None`` when it keeps none."""
    path = run_dir / STATE_DIR / "best.safetensors"
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"The saved best weights in {path} cannot be read: {error}") from None
