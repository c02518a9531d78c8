"""Several datasets, one model: dataset lists, weights, grey and colour mixed, through the CLI.

Real PNG files in folders laid out as ``shared/data`` lays them out, real (2-step) training
of the tiny model, and a box prompt run through the trained model's box channel.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.cli import main
from medsegdiff_training.config import PreprocessConfig, named_config
from medsegdiff_training.data.dataset import SegmentationDataset
from medsegdiff_training.data.mixed import MixedDataset, shares
from medsegdiff_training.data.sources import read_dataset_list, source_from_folder
from medsegdiff_training.errors import DatasetError
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.prompted import segment_prompts
from medsegdiff_training.prompts import Box
from medsegdiff_training.registry import ModelRegistry

TINY = named_config("tiny")


def blob_dataset(root, name, count, colour, split_every=4):
    """``count`` images with a bright ellipse (RGB when ``colour``), 0/1 masks, and a split.csv."""
    folder = root / name
    (folder / "images").mkdir(parents=True)
    (folder / "masks").mkdir()
    rng = np.random.default_rng(len(name))
    rows = ["name,split"]
    for index in range(count):
        shape = (90 + 10 * index, 120)
        rr, cc = np.mgrid[: shape[0], : shape[1]]
        cy, cx = rng.uniform(30, shape[0] - 30), rng.uniform(30, 90)
        mask = ((rr - cy) / 18) ** 2 + ((cc - cx) / 25) ** 2 <= 1
        grey = np.where(mask, 200, 40) + rng.normal(0, 10, shape)
        image = np.stack([grey, grey * 0.6, grey * 0.3], -1) if colour else grey
        stem = f"{name}_{index}"
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / "images" / f"{stem}.png")
        Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{stem}.png")
        rows.append(f"{stem},{'test' if index % split_every == split_every - 1 else 'train'}")
    (folder / "split.csv").write_text("\n".join(rows) + "\n")
    return folder


@pytest.fixture
def two_datasets(tmp_path):
    """A grey dataset of 8 images and a colour one of 4 (6 + 3 in their train splits)."""
    return blob_dataset(tmp_path, "grey", 8, False), blob_dataset(tmp_path, "colour", 4, True)


def test_a_dataset_list_names_folders_relative_to_itself_with_splits_and_weights(tmp_path, two_datasets):
    listing = tmp_path / "list.csv"
    listing.write_text(
        "name,images,masks,split_csv,split,weight\n"
        "g,grey/images,grey/masks,grey/split.csv,train,1\n"
        "c,colour/images,colour/masks,,,3\n"
    )
    grey, colour = read_dataset_list(listing)
    assert (grey.name, grey.split, grey.weight, colour.split, colour.weight) == ("g", "train", 1.0, None, 3.0)
    assert grey.images == tmp_path / "grey" / "images"
    assert [p.name for p in grey.pairs()][:2] == ["g/grey_0", "g/grey_1"]
    assert len(grey.pairs()) == 6 and len(colour.pairs()) == 4  # no split: every pair
    assert len(source_from_folder(tmp_path / "grey", "test").pairs()) == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,images\nx,a\n", "at least the columns"),
        ("name,images,masks,colour\nx,a,b,red\n", "unknown columns"),
        ("name,images,masks,weight\nx,a,b,heavy\n", "not a number"),
        ("name,images,masks,weight\nx,a,b,0\n", "weight above 0"),
        ("name,images,masks\nx,a,b\nx,c,d\n", "Two datasets are named 'x'"),
    ],
)
def test_a_bad_dataset_list_is_refused_with_what_is_wrong(tmp_path, text, message):
    listing = tmp_path / "list.csv"
    listing.write_text(text)
    with pytest.raises(DatasetError, match=message):
        read_dataset_list(listing)


def test_weights_decide_each_datasets_share_of_an_epoch_whatever_its_size():
    assert shares([100, 10], [1, 1]) == [55, 55]
    assert shares([100, 10], [1, 4]) == [22, 88]
    assert sum(shares([7, 5, 3], [1, 2, 3])) == 15
    big = SegmentationDataset.from_arrays(
        [np.full((40, 40), i, float) for i in range(6)], [np.eye(40)] * 6, TINY
    )
    small = SegmentationDataset.from_arrays([np.random.rand(40, 40)] * 2, [np.eye(40)] * 2, TINY)
    mixed = MixedDataset({"big": big, "small": small}, {"big": 1.0, "small": 3.0})
    assert len(mixed) == 8 and mixed.counts == [2, 6]
    # over four epochs the big dataset shows all six of its images, two per epoch
    seen = {mixed.locate((i, epoch))[1] for epoch in range(3) for i in range(2)}
    assert seen == set(range(6))
    # the small one repeats each image three times an epoch
    keys = [mixed.locate((i, 0)) for i in range(2, 8)]
    assert sorted(item for _, item in keys) == [0, 0, 0, 1, 1, 1] and {part for part, _ in keys} == {1}
    # without an epoch (validation) the items alternate between the datasets
    assert [mixed.locate(i)[0] for i in range(4)] == [0, 1, 0, 1]


def train_args(tmp_path, *data, extra=()):
    return [
        "--threads",
        "1",
        "train",
        *data,
        "--config",
        "tiny",
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--val-fraction",
        "0",
        *extra,
        "--out",
        str(tmp_path / "run"),
    ]


def test_train_on_a_grey_and_a_colour_dataset_for_box_prompts_records_every_choice(
    capsys, tmp_path, two_datasets
):
    grey, colour = two_datasets
    crops = ["--roi-crops", "--per-object", "--crop-margin", "20%", "--jitter", "0.2", "--box-channel"]
    crops += [
        "--crop-context",
        "0.1",
        "0.4",
        "--scale-augment",
        "0.5",
        "--normalisation",
        "luminance-percentile",
    ]
    code = main(
        train_args(
            tmp_path, "--dataset", str(grey), "--dataset", str(colour), "--split", "train", extra=crops
        )
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "9 training and 0 validation images (grey 6+0, colour 3+0)" in captured.err
    checkpoint = load_checkpoint(tmp_path / "run" / "final")
    config, preprocess = checkpoint.model_config, checkpoint.preprocess
    assert (config.image_channels, config.prompt_channels) == (3, 1)  # colour in the mix: an RGB model
    assert preprocess.prompt_encoding == "box-channel" and preprocess.normalisation == "luminance-percentile"
    assert preprocess.crop_rule is not None and preprocess.crop_rule.margin_fraction == pytest.approx(0.2)
    training = checkpoint.metadata["training"]
    assert [d["name"] for d in training["datasets"]] == ["grey", "colour"]
    assert training["mix"] == {
        "grey": {"images": 6, "weight": 1.0, "per_epoch": 5},
        "colour": {"images": 3, "weight": 1.0, "per_epoch": 4},
    }
    recipe = training["roi_crops"]
    assert recipe["per_object"] and recipe["jitter"] == 0.2 and recipe["context"] == [0.1, 0.4]
    assert recipe["scale"] == [0.5, 1.0] and recipe["prompt_encoding"] == "box-channel"
    # the model takes a box prompt on a grey image through its box channel
    image = np.asarray(Image.open(grey / "images" / "grey_0.png"))
    result = segment_prompts(
        Segmenter(checkpoint, device="cpu"),
        image,
        [Box(10, 10, 60, 50)],
        SamplingSettings(steps=2, ensemble=1),
    )
    assert result.labels.shape == image.shape and set(np.unique(result.labels)) <= {0, 1}


def test_the_data_must_be_named_one_way(capsys, tmp_path, two_datasets):
    grey, _ = two_datasets
    both = ["--dataset", str(grey), "--images", str(grey / "images"), "--masks", str(grey / "masks")]
    assert main(train_args(tmp_path, *both)) == 1
    assert "Give the data one way" in capsys.readouterr().err
    assert main(train_args(tmp_path, "--dataset", str(grey), extra=["--box-channel"])) == 1
    assert "--box-channel needs --roi-crops" in capsys.readouterr().err
    assert (
        main(
            train_args(
                tmp_path, "--dataset", str(grey), "--roi-crops", extra=["--crop-context", "0.1", "0.2"]
            )
        )
        == 1
    )
    assert "--crop-context needs --box-channel" in capsys.readouterr().err


def test_init_from_starts_where_the_model_was_widened_to_colour_and_the_box(capsys, tmp_path, two_datasets):
    """The started network computes what the parent did (grey image, any box) before any step."""
    import torch

    from medsegdiff_training.checkpoint import save_checkpoint
    from medsegdiff_training.cli.train import training_request
    from medsegdiff_training.config import DiffusionConfig
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.training_run import start_model

    torch.manual_seed(3)
    parent = MedSegDiffUNet(TINY)
    with torch.no_grad():
        for weight in parent.parameters():
            weight.add_(torch.randn_like(weight) * 0.05)  # unlike any fresh network
    folder = save_checkpoint(tmp_path / "parent", parent, DiffusionConfig(prediction="v"), PreprocessConfig())
    grey, colour = two_datasets
    args = ["--dataset", str(grey), "--dataset", str(colour), "--roi-crops", "--box-channel"]
    from medsegdiff_training.cli import build_parser

    parsed = build_parser().parse_args(train_args(tmp_path, *args, extra=["--init-from", str(folder)])[2:])
    child, diffusion, found = start_model(training_request(parsed), ModelRegistry(parsed.registry))
    assert found is not None and diffusion.prediction == "v"
    assert (child.config.image_channels, child.config.prompt_channels) == (3, 1)
    grey_image = torch.rand(2, 1, 32, 32) * 2 - 1
    box = torch.where(torch.rand(2, 1, 32, 32) > 0.5, 1.0, -1.0)
    x_t, t = torch.randn(2, 1, 32, 32), torch.tensor([10, 700])
    with torch.no_grad():
        expected = parent.eval()(x_t, t, grey_image)
        got = child.eval()(x_t, t, torch.cat([grey_image.repeat(1, 3, 1, 1), box], 1))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_init_from_with_another_input_size_resizes_the_model_and_trains_at_that_size(tmp_path, two_datasets):
    """``--init-from`` with ``--image-size``: the parent's weights, its FF-Parser filters resampled."""
    import torch

    from medsegdiff_training.checkpoint import load_checkpoint, save_checkpoint
    from medsegdiff_training.cli import build_parser
    from medsegdiff_training.cli.train import training_request
    from medsegdiff_training.config import DiffusionConfig
    from medsegdiff_training.model import MedSegDiffUNet
    from medsegdiff_training.training_run import start_model

    parent = MedSegDiffUNet(TINY)
    folder = save_checkpoint(tmp_path / "parent", parent, DiffusionConfig(prediction="v"), PreprocessConfig())
    grey, _ = two_datasets
    args = ["--dataset", str(grey), "--image-size", "48"]
    assert main(train_args(tmp_path, *args, extra=["--init-from", str(folder)])) == 0
    child = load_checkpoint(tmp_path / "run" / "final")
    assert child.model_config.image_size == (48, 48) and TINY.image_size == (32, 32)
    sizes = [tuple(w.shape[-2:]) for n, w in child.model.state_dict().items() if w.is_complex()]
    assert sizes and sizes[0] == (48, 25)  # the first FF-Parser's rfft2 map at 48x48
    # before any step: the parent's weights, only the frequency maps resampled
    parsed = build_parser().parse_args(train_args(tmp_path, *args, extra=["--init-from", str(folder)])[2:])
    started, _, found = start_model(training_request(parsed), ModelRegistry(parsed.registry))
    assert found is not None and started.config.image_size == (48, 48)
    for name, weight in parent.state_dict().items():
        if not weight.is_complex():
            assert torch.equal(started.state_dict()[name], weight), name
