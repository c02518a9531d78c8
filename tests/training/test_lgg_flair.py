"""The shipped brain MRI model, ``lgg-flair``: listed on a fresh install, and its card's test
figure reproduced by ``medsegdiff evaluate`` (skipped where ../shared/data/lgg_mri is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsegdiff_training.cli import main
from medsegdiff_training.registry import ModelRegistry

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
LGG = SHARED / "lgg_mri"
needs_lgg = pytest.mark.skipif(
    not LGG.is_dir(), reason=f"the LGG MRI dataset is not at {LGG} (see shared/data/README.md)"
)


def run(capsys, *argv: object) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def card() -> dict:
    return json.loads((ModelRegistry().get("lgg-flair").path / "model_card.json").read_text())


def test_models_lists_lgg_flair_read_only_on_a_fresh_registry(capsys, tmp_path):
    fresh = tmp_path / "never-used"
    code, out, err = run(capsys, "models", "list", "--json", "--registry", fresh)
    assert code == 0, err
    versions = {v["name"]: v for v in json.loads(out)["versions"]}
    assert "lgg-flair" in versions and "brain MRI" in versions["lgg-flair"]["description"].replace(
        "Brain", "brain"
    )
    assert ModelRegistry(fresh).get("lgg-flair").read_only
    checkpoint = ModelRegistry(fresh).load("lgg-flair")
    assert checkpoint.model_config.num_classes == 2 and checkpoint.model_config.image_channels == 1


def test_the_card_names_the_data_split_budget_machine_terms_and_test_figures():
    document = card()
    assert "Buda" in document["data"]["dataset"] and "57 slices" in document["data"]["evaluated_on"]
    assert "Non-commercial" in document["terms"]
    training = document["training"]
    assert training["cpu_time_minutes"] <= 121 and training["steps"] > 0 and "Xeon" in training["hardware"]
    headline = document["test_metrics"]["ddim_3_ensemble5"]
    baselines = document["baselines"]
    # beside its own figures, the card shows the trivial baselines and the same-budget U-Net
    assert headline["dice"] > baselines["all_foreground"]["dice"] > baselines["fixed_blob"]["dice"]
    assert 0 < baselines["unet_same_budget"]["dice"] <= 1


@needs_lgg
@pytest.mark.slow
def test_evaluate_on_the_lgg_test_split_gives_the_cards_figure(capsys):
    code, out, err = run(
        capsys,
        "evaluate",
        "--images", LGG / "images",
        "--masks", LGG / "masks",
        "--split-csv", LGG / "split.csv",
        "--split", "test",
        "--model", "lgg-flair",
        "--json",
    )  # fmt: skip
    assert code == 0, err
    document = json.loads(out)
    summary, expected = document["mean"], card()["test_metrics"]["ddim_3_ensemble5"]
    assert document["images"] == 57 and document["settings"]["ensemble"] == 5
    # the card was measured with the same settings (DDIM 3 x 5, seed 0, 8 images a batch); a CPU
    # without native bfloat16 samples in float32 and may land a rounding away
    assert summary["dice"] == pytest.approx(expected["dice"], abs=0.005)
    assert summary["iou"] == pytest.approx(expected["iou"], abs=0.005)
