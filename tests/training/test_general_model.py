"""The shipped box-prompt model, ``general``: listed and chosen for boxes on a fresh install, its
checkpoint carrying the box channel and the clipping crop rule, and its card's figure reproduced
on a test split (skipped where ../shared/data is absent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medsegdiff_training.cli import main
from medsegdiff_training.registry import ModelRegistry

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
BUSI = SHARED / "busi"
needs_busi = pytest.mark.skipif(
    not BUSI.is_dir(), reason=f"the BUSI dataset is not at {BUSI} (see shared/data/README.md)"
)


def card() -> dict:
    return json.loads((ModelRegistry().get("general").path / "model_card.json").read_text())


def test_a_fresh_install_lists_general_and_uses_it_for_boxes_but_not_for_whole_images(capsys, tmp_path):
    fresh = ModelRegistry(tmp_path / "never-used")
    assert fresh.get("general").read_only
    assert fresh.selected_for_boxes() == "general" and fresh.selected() == "default"
    code = main(["models", "list", "--json", "--registry", str(fresh.root)])
    listed = {v["name"] for v in json.loads(capsys.readouterr().out)["versions"]}
    assert code == 0 and {"default", "general"} <= listed


def test_its_checkpoint_knows_the_box_and_its_card_every_dataset_beside_the_ellipse(tmp_path):
    checkpoint = ModelRegistry(tmp_path / "never-used").load("general")
    assert checkpoint.model_config.prompt_channels == 1 and checkpoint.model_config.image_channels == 3
    assert checkpoint.preprocess.prompt_encoding == "box-channel"
    rule = checkpoint.preprocess.prompt_crop_rule()
    assert rule.clip_to_box and rule.margin_fraction == pytest.approx(0.15) and rule.margin_px == 0
    document = card()
    for name in ("busi", "ph2", "lgg_mri", "ddti", "dsb2018", "drishti_roi"):
        figures, baselines = document["test_metrics"][name], document["baselines"][name]
        assert 0 < figures["exact"] <= 1 and 0 < baselines["exact_ellipse"] <= 1
    assert "Xeon" in document["training"]["hardware"] and document["training"]["cpu_time_minutes"] > 0


@needs_busi
@pytest.mark.slow
def test_evaluate_with_boxes_from_masks_and_no_model_uses_general_and_gives_the_cards_figure(capsys):
    code = main(
        [
            "evaluate",
            "--images", str(BUSI / "images"),
            "--masks", str(BUSI / "masks"),
            "--split-csv", str(BUSI / "split.csv"),
            "--split", "test",
            "--boxes-from-masks",
            "--json",
        ]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = json.loads(captured.out)
    assert document["model"] == "general"
    assert document["mean"]["dice"] == pytest.approx(card()["test_metrics"]["busi"]["exact"], abs=0.01)
