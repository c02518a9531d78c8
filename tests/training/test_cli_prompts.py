"""``medsegdiff predict --boxes`` and ``medsegdiff evaluate --boxes / --boxes-from-masks``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from medsegdiff_training.checkpoint import save_checkpoint
from medsegdiff_training.cli import main
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, named_config
from medsegdiff_training.data.io import read_array
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.prompts import DEFAULT_CROP_RULE, Box


@pytest.fixture
def model(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path / "tiny", MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
    )


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, shape in (("a", (300, 400)), ("b", (120, 90)), ("c", (50, 50))):
        Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_with_boxes_writes_ids_in_file_order_inside_the_crops(capsys, tmp_path, model, images):
    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\na.png,10,20,110,100\nb.png,5,5,60,80\na.png,250,150,390,290\n")
    code, out, err = run(
        capsys, "predict", images, "--boxes", boxes, "--out", tmp_path / "out", "--model", model,
        "--steps", "2", "--ensemble", "2", "--threshold", "0.2", "--format", "tiff",
    )  # fmt: skip
    assert code == 0, err
    assert "1 input(s) have no boxes" in err and "c.png" in err
    assert sorted(Path(line).name for line in out.split()) == ["a.tif", "b.tif"]
    labels = read_array(tmp_path / "out" / "a.tif")
    assert labels.shape == (300, 400) and set(np.unique(labels)) <= {0, 1, 2}
    for label, box in ((1, Box(10, 20, 110, 100)), (2, Box(250, 150, 390, 290))):
        window = DEFAULT_CROP_RULE.window(box)
        rows, columns = np.nonzero(labels == label)
        if rows.size:
            assert rows.min() >= window.top and rows.max() < window.bottom
            assert columns.min() >= window.left and columns.max() < window.right
    assert labels.any(), "a 0.2 threshold on an untrained model's mean should claim something"
    assert not (tmp_path / "out" / "c.tif").exists()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "name,left,top,right,bottom\na.png,1,2,3,4\n",
            "the first line must be the header image,x0,y0,x1,y1",
        ),
        ("", "the first line must be the header"),
        ("image,x0,y0,x1,y1\n", "holds a header but no boxes"),
        ("image,x0,y0,x1,y1\na.png,1,2,3\n", "line 2: expected 5 fields"),
        ("image,x0,y0,x1,y1\na.png,1,2,3,4\na.png,1,two,3,4\n", "line 3: the coordinates"),
        ("image,x0,y0,x1,y1\na.png,10,2,5,4\n", "line 2: A box needs x1 > x0"),
        ("image,x0,y0,x1,y1\nzz.png,1,2,30,40\n", "not among the inputs, e.g. 'zz.png'"),
        ("image,x0,y0,x1,y1\nc.png,100,100,130,140\n", "c.png: Prompt 1"),
        (None, "does not exist"),
    ],
)
def test_bad_boxes_files_fail_with_one_line(capsys, tmp_path, model, images, content, message):
    boxes = tmp_path / "boxes.csv"
    if content is not None:
        boxes.write_text(content)
    code, out, err = run(
        capsys, "predict", images, "--boxes", boxes, "--out", tmp_path / "out", "--model", model
    )
    assert code == 1
    assert message in err.splitlines()[-1] and err.count("error:") == 1, err
    assert not (tmp_path / "out").exists()


def test_evaluate_with_boxes_from_masks_reports_the_ellipse_baseline(capsys, tmp_path, model):
    root = tmp_path / "data"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    mask = np.zeros((80, 120), np.uint8)
    mask[10:30, 10:40] = 255
    mask[50:70, 80:110] = 255
    Image.fromarray(np.where(mask > 0, 200, 40).astype(np.uint8)).save(root / "images" / "two.png")
    Image.fromarray(mask).save(root / "masks" / "two.png")
    Image.fromarray(np.full((40, 40), 40, np.uint8)).save(root / "images" / "none.png")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(root / "masks" / "none.png")
    common = ("--images", root / "images", "--masks", root / "masks", "--model", model, "--steps", "2")
    code, out, err = run(capsys, "evaluate", *common, "--boxes-from-masks", "--json", "--per-image")
    assert code == 0, err
    document = json.loads(out)
    assert document["images"] == 2 and document["prompts"] == "one box per mask component"
    per_image = {row["name"]: row for row in document["per_image"]}
    assert per_image["two"]["objects"] == 2 and per_image["none"]["objects"] == 0
    assert per_image["none"]["dice"] == 1.0  # no prompt, nothing predicted, nothing there
    # two rectangles: the inscribed ellipses cover pi/4 of each
    assert per_image["two"]["ellipse_dice"] == pytest.approx(2 * (np.pi / 4) / (1 + np.pi / 4), abs=0.02)

    boxes = tmp_path / "boxes.csv"
    boxes.write_text("image,x0,y0,x1,y1\ntwo.png,10,10,40,30\n")
    code, out, err = run(capsys, "evaluate", *common, "--boxes", boxes)
    assert code == 0, err
    assert "the ellipse inscribed in each box (no model) scores Dice" in out
    # --structures would be ignored with boxes: refused in one line instead
    code, out, err = run(capsys, "evaluate", *common, "--boxes", boxes, "--structures", "disc=1,2")
    assert code == 1 and out == ""
    assert (
        err.startswith("medsegdiff: error: --structures does not apply with box prompts")
        and err.count("\n") == 1
    )


def test_box_prompts_without_model_use_the_model_chosen_for_boxes(capsys, tmp_path):
    """``predict --boxes`` and ``evaluate --boxes-from-masks`` take the registry's box model,
    not the whole-image selection."""
    from medsegdiff_training.registry import ModelRegistry

    registry = ModelRegistry(tmp_path / "models", default_model=None, shipped_models=None)
    for name, seed in (("whole", 1), ("boxes", 2)):
        torch.manual_seed(seed)
        folder = save_checkpoint(
            tmp_path / name, MedSegDiffUNet(named_config("tiny")), DiffusionConfig(), PreprocessConfig()
        )
        registry.add(folder, name=name)
    registry.select("whole")
    assert main(["models", "select", "boxes", "--for-boxes", "--registry", str(registry.root)]) == 0
    assert "Box prompts use boxes" in capsys.readouterr().out
    image = np.zeros((60, 80), np.uint8)
    image[20:40, 30:60] = 200
    Image.fromarray(image).save(tmp_path / "scan.png")
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1\nscan.png,25,15,65,45\n")
    code = main(
        [
            "predict",
            str(tmp_path / "scan.png"),
            "--boxes",
            str(tmp_path / "boxes.csv"),
            "--out",
            str(tmp_path / "out"),
            "--registry",
            str(registry.root),
            "--steps",
            "1",
            "--ensemble",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    assert "image(s) with boxes" in capsys.readouterr().err  # the model chosen for boxes, by name
    listing = main(["models", "list", "--registry", str(registry.root), "--json"])
    document = json.loads(capsys.readouterr().out)
    assert listing == 0 and (document["selected"], document["selected_for_boxes"]) == ("whole", "boxes")
