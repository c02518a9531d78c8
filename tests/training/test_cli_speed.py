"""The CLI's speed options (--precision, --channels-last, --cuda-graphs, --compile,
--num-workers) reach the TrainConfig and the Segmenter, and change nothing but speed.

Real tiny models and files in ``tmp_path``; tolerances as in test_fast_paths.py (relative
L2 error 1e-4 for float32 reorderings such as channels_last).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
from medsegdiff_training.cli import build_parser, main
from medsegdiff_training.cli.sampling_options import segmenter_of
from medsegdiff_training.cli.train import train_config_of
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.corrections import CorrectionsStore
from medsegdiff_training.data.io import read_array
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.precision import resolve_precision
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.train_config import COMPILE_MODES, PRECISIONS, TrainConfig

FLOAT32_TOLERANCE = 1e-4  # test_fast_paths.py's, for float32 reorderings
SPEED_HELP = {
    "train": ("--precision", "--channels-last", "--no-channels-last", "--compile", "--num-workers"),
    "finetune": ("--precision", "--channels-last", "--no-channels-last", "--compile", "--num-workers"),
    "predict": ("--precision", "--channels-last", "--cuda-graphs", "--no-cuda-graphs", "--compile"),
    "evaluate": ("--precision", "--channels-last", "--cuda-graphs", "--no-cuda-graphs", "--compile"),
}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def dataset(tmp_path, blob_data) -> Path:
    return blob_data.folder(tmp_path / "data", 4)


@pytest.fixture
def model(tmp_path) -> Path:
    """A tiny network with perturbed weights: its samples are not trivially the same."""
    torch.manual_seed(0)
    network = MedSegDiffUNet(named_config("tiny"))
    with torch.no_grad():
        for parameter in network.parameters():
            if not parameter.is_complex():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return save_checkpoint(tmp_path / "tiny", network, DiffusionConfig(), PreprocessConfig())


def relative_error(got: np.ndarray, expected: np.ndarray) -> float:
    got, expected = np.asarray(got, np.float64), np.asarray(expected, np.float64)
    return float(np.linalg.norm(got - expected) / np.linalg.norm(expected))


# --- help and parsing -----------------------------------------------------------------------------


@pytest.mark.parametrize("command", list(SPEED_HELP))
def test_help_names_every_speed_option_and_where_it_matters(capsys, command):
    with pytest.raises(SystemExit) as stop:
        main([command, "--help"])
    assert stop.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in SPEED_HELP[command]:
        assert option in text, (command, option)
    assert "{auto,bf16,fp32}" in text and "what --no-amp means" in text
    assert "AMX or AVX512-BF16" in text and "on CUDA" in text  # where precision matters
    assert "read without transposing (matters on CUDA" in text
    assert all(mode in text for mode in COMPILE_MODES) and "per input shape on a GPU" in text
    if command in ("train", "finetune"):
        assert "4 with pinned memory on CUDA, 0 elsewhere" in text
    else:
        assert "CUDA only" in text


def test_speed_options_become_train_config_fields():
    parser = build_parser()
    base = ["train", "--images", "i", "--masks", "m", "--out", "o", "--steps", "2"]
    config = train_config_of(
        parser.parse_args(
            [*base, "--precision", "bf16", "--no-channels-last", "--compile", "reduce-overhead"]
            + ["--num-workers", "3"]
        ),
        "cpu",
    )
    assert (config.precision, config.channels_last, config.compile, config.num_workers) == (
        "bf16",
        False,
        "reduce-overhead",
        3,
    )
    assert config.amp is True
    defaults = train_config_of(parser.parse_args(base), "cpu")
    assert (defaults.precision, defaults.channels_last, defaults.compile, defaults.num_workers) == (
        "auto",
        None,
        None,
        None,
    )
    # --no-amp is fp32, alone or with --precision fp32 (they agree)
    for extra in ([], ["--precision", "fp32"]):
        config = train_config_of(parser.parse_args([*base, "--no-amp", *extra]), "cpu")
        assert (config.amp, config.precision) == (False, "fp32")


@pytest.mark.parametrize("precision", ["auto", "bf16"])
def test_no_amp_beside_another_precision_is_a_one_line_user_error(
    capsys, tmp_path, dataset, model, precision
):
    train = ["train", "--images", dataset / "images", "--masks", dataset / "masks", "--config", "tiny"]
    evaluate = ["evaluate", "--images", dataset / "images", "--masks", dataset / "masks", "--model", model]
    predict = ["predict", dataset / "images", "--out", tmp_path / "predicted", "--model", model]
    for argv in (
        [*train, "--steps", "1", "--out", tmp_path / "run"],
        [*evaluate, "--steps", "1"],
        [*predict, "--steps", "1"],
    ):
        code, out, err = run(capsys, *argv, "--no-amp", "--precision", precision)
        assert code == 1 and out == ""
        assert err == (
            f"medsegdiff: error: --no-amp means --precision fp32, which contradicts --precision "
            f"{precision}: give one of them.\n"
        )
    assert not (tmp_path / "run").exists() and not (tmp_path / "predicted").exists()


def test_train_config_checks_the_speed_fields():
    with pytest.raises(ConfigError, match="precision must be one of auto, bf16, fp32"):
        TrainConfig(precision="half")
    with pytest.raises(ConfigError, match="compile must be one of default"):
        TrainConfig(compile="fastest")
    with pytest.raises(ConfigError, match="num_workers must be 0"):
        TrainConfig(num_workers=-1)
    assert set(PRECISIONS) == {"auto", "bf16", "fp32"}
    with pytest.raises(ConfigError, match="lr_schedule must be 'constant' or 'cosine', got 'linear'"):
        TrainConfig(lr_schedule="linear")
    with pytest.raises(ConfigError, match="warmup_steps must be 0 or more, got -1"):
        TrainConfig(warmup_steps=-1)
    for floor in (-0.1, 1.0, float("nan")):
        with pytest.raises(ConfigError, match="timestep_floor must be at least 0 and below 1"):
            TrainConfig(timestep_floor=floor)


# --- train and finetune record what they ran with -----------------------------------------------


def test_train_and_finetune_options_reach_the_recorded_training_config(
    blob_data, capsys, tmp_path, dataset, medsegdiff_home
):
    models = tmp_path / "models"
    code, _, err = run(
        capsys, "train", "--images", dataset / "images", "--masks", dataset / "masks",
        "--config", "tiny", "--steps", "2", "--batch-size", "2", "--val-fraction", "0",
        "--precision", "fp32", "--channels-last", "--num-workers", "1", "--no-augment",
        "--out", tmp_path / "run", "--registry", models, "--register", "fast", "--device", "cpu",
        "--lr-schedule", "cosine", "--warmup-steps", "1", "--timestep-floor", "0.5",
    )  # fmt: skip
    assert code == 0, err
    training = json.loads((tmp_path / "run" / "final" / "config.json").read_text())["training"]
    assert training["precision"] == "float32"
    recorded = training["config"]
    assert (recorded["precision"], recorded["channels_last"], recorded["num_workers"]) == ("fp32", True, 1)
    assert recorded["amp"] is True and recorded["compile"] is None
    assert (recorded["lr_schedule"], recorded["warmup_steps"], recorded["learning_rate"]) == (
        "cosine",
        1,
        1e-4,
    )
    assert recorded["timestep_floor"] == 0.5

    CorrectionsStore(medsegdiff_home / "corrections").add(*blob_data.pair(np.random.default_rng(5)))
    code, out, err = run(
        capsys, "finetune", "--parent", "fast", "--steps", "2", "--registry", models,
        "--precision", "fp32", "--no-channels-last", "--num-workers", "0", "--device", "cpu",
        "--name", "tuned",
    )  # fmt: skip
    assert code == 0, err
    version = ModelRegistry(models).describe("tuned")
    tuned = json.loads((Path(version["path"]) / "config.json").read_text())["training"]
    assert tuned["precision"] == "float32"
    recorded = tuned["config"]
    assert (recorded["precision"], recorded["channels_last"], recorded["num_workers"]) == ("fp32", False, 0)
    # the measured fine-tune recipe by default (train_config.DEFAULT_FINETUNE_CONFIG) ...
    assert (recorded["learning_rate"], recorded["lr_schedule"], recorded["warmup_steps"]) == (
        1e-3,
        "constant",
        30,
    )
    assert (recorded["keep_best"], recorded["validate_every"], recorded["best_margin"]) == (True, 50, 0.005)
    assert recorded["timestep_floor"] == 0.5
    # ... and the paper's constant 1e-4 over all timesteps when asked
    code, _, err = run(
        capsys, "finetune", "--parent", "fast", "--steps", "1", "--registry", models, "--device", "cpu",
        "--name", "paper", "--lr", "1e-4", "--lr-schedule", "constant", "--warmup-steps", "0",
        "--timestep-floor", "0",
    )  # fmt: skip
    assert code == 0, err
    paper = json.loads((Path(ModelRegistry(models).describe("paper")["path"]) / "config.json").read_text())
    recorded = paper["training"]["config"]
    assert (recorded["learning_rate"], recorded["lr_schedule"], recorded["warmup_steps"]) == (
        1e-4,
        "constant",
        0,
    )
    assert recorded["timestep_floor"] == 0.0


# --- predict and evaluate: the Segmenter the options build, and what it gives -------------------


# wrapping in torch.compile imports torch.utils.mkldnn, which warns about its own TorchScript use
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.precision_policy  # --precision bf16 and auto resolve by the CPU policy
def test_predict_and_evaluate_options_build_the_segmenter(model):
    parser = build_parser()
    checkpoint = load_checkpoint(model)
    for command in (["predict", "x.png", "--out", "o"], ["evaluate", "--images", "i", "--masks", "m"]):
        args = parser.parse_args(
            [*command, "--precision", "bf16", "--channels-last", "--no-cuda-graphs", "--compile", "default"]
        )
        segmenter = segmenter_of(args, checkpoint)
        assert segmenter.precision == resolve_precision(torch.device("cpu"), "bf16", "sampling")
        assert segmenter.fast.channels_last and segmenter.fast.compile == "default"
        assert not segmenter.fast.cuda_graphs  # graphs exist only on CUDA
        plain = segmenter_of(parser.parse_args([*command, "--no-amp"]), checkpoint)
        assert plain.precision == "fp32" and not plain.fast.channels_last and plain.fast.compile is None
        default = segmenter_of(parser.parse_args(command), checkpoint)
        assert default.precision == resolve_precision(torch.device("cpu"), "auto", "sampling")


def test_channels_last_from_the_cli_samples_the_eager_probabilities(model):
    parser = build_parser()
    checkpoint = load_checkpoint(model)
    args = parser.parse_args(["predict", "x.png", "--out", "o", "--precision", "fp32", "--channels-last"])
    fast = segmenter_of(args, checkpoint)
    eager = Segmenter(load_checkpoint(model), device="cpu", precision="fp32")
    image = np.random.default_rng(0).random((40, 36))
    settings = SamplingSettings(sampler="ddim", steps=3, ensemble=2, seed=4)
    expected = eager.segment(image, settings).probabilities
    assert np.std(expected) > 1e-3  # not a trivial output
    assert relative_error(fast.segment(image, settings).probabilities, expected) < FLOAT32_TOLERANCE


def test_predict_and_evaluate_with_channels_last_match_the_float32_eager_run(
    capsys, tmp_path, dataset, model
):
    sampling = ["--model", model, "--steps", "3", "--ensemble", "2", "--device", "cpu"]
    outputs = {}
    for name, options in (("eager", ["--no-amp"]), ("fast", ["--precision", "fp32", "--channels-last"])):
        code, _, err = run(
            capsys, "predict", dataset / "images", "--out", tmp_path / name, "--format", "tiff",
            *sampling, *options,
        )  # fmt: skip
        assert code == 0, err
        outputs[name] = [read_array(path) for path in sorted((tmp_path / name).iterdir())]
    assert len(outputs["fast"]) == len(outputs["eager"]) == 4
    for fast, eager in zip(outputs["fast"], outputs["eager"], strict=True):
        # the same label maps, up to pixels whose probability sits within rounding of the threshold
        assert fast.shape == eager.shape and np.mean(fast != eager) < 1e-3
    scores = {}
    data = ["--images", dataset / "images", "--masks", dataset / "masks", "--json", "--per-image"]
    for name, options in (("eager", ["--no-amp"]), ("fast", ["--precision", "fp32", "--channels-last"])):
        code, out, err = run(capsys, "evaluate", *data, *sampling, *options)
        assert code == 0, err
        scores[name] = [image["dice"] for image in json.loads(out)["per_image"]]
    assert scores["fast"] == pytest.approx(scores["eager"], abs=1e-3)
