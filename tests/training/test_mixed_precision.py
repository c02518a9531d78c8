"""bfloat16 autocast on CPUs that compute it natively (AMX / AVX512-BF16), as on CUDA.

Where the CPU lacks it, bfloat16 would be emulated and slower, so everything stays float32;
the tests of the bf16 policy skip there with that reason, and run in CI's second pass
(``-m precision_policy --cpu-bf16=native``), where autocast computes bfloat16 in software.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from medsegdiff_training.checkpoint import load_checkpoint
from medsegdiff_training.config import named_config
from medsegdiff_training.data import SegmentationDataset, read_array
from medsegdiff_training.device import has_fast_bfloat16, mixed_precision
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.registry import ModelRegistry
from medsegdiff_training.trainer import TrainConfig, train

CPU = torch.device("cpu")
pytestmark = pytest.mark.precision_policy
native_bf16 = pytest.mark.skipif(
    not has_fast_bfloat16(CPU),
    reason="the CPU policy is float32 (no AMX or AVX512-BF16, or --cpu-bf16=none); --cpu-bf16=native runs it",
)
SAMPLE = Path(__file__).resolve().parents[2] / "napari_medsegdiff" / "sample_data" / "ddti_test_106_2.png"


def test_turned_off_or_on_unsupported_devices_it_is_plain_float32():
    conv = torch.nn.Conv2d(1, 2, 3)
    with mixed_precision(CPU, enabled=False):
        assert conv(torch.randn(1, 1, 8, 8)).dtype == torch.float32
    assert not has_fast_bfloat16(torch.device("mps"))
    with mixed_precision(torch.device("mps")):  # nothing to enter: no autocast at all
        assert conv(torch.randn(1, 1, 8, 8)).dtype == torch.float32


@native_bf16
def test_on_a_native_cpu_convolutions_run_in_bfloat16_and_the_ff_parser_in_float32():
    model = MedSegDiffUNet(named_config("tiny"))
    spectra: list[torch.dtype] = []

    class RecordFourierInputs(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.fft.rfft2:
                spectra.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    x_t, image = torch.randn(2, 1, 32, 32), torch.randn(2, 1, 32, 32)
    with torch.inference_mode(), mixed_precision(CPU), RecordFourierInputs():
        output = model(x_t, torch.tensor([5, 900]), image)
    assert output.dtype == torch.bfloat16
    assert spectra and set(spectra) == {torch.float32}  # eq. 4-5 stay in float32
    assert all(p.dtype in (torch.float32, torch.complex64) for p in model.parameters())


@native_bf16
def test_the_shipped_model_segments_the_same_nodule_in_bfloat16_and_float32():
    image = read_array(SAMPLE)
    checkpoint = ModelRegistry().load("default")
    settings = SamplingSettings(sampler="ddim", steps=5, seed=3, ensemble=1)
    bf16, fp32 = Segmenter(checkpoint, device="cpu"), Segmenter(checkpoint, device="cpu", amp=False)
    assert (bf16.precision, fp32.precision) == ("bf16", "fp32")  # what "auto" and --no-amp pick here
    fast, exact = bf16.segment(image, settings).labels, fp32.segment(image, settings).labels
    assert exact.sum() > 0.05 * exact.size  # a real nodule, not an empty mask
    agreement = (fast == exact).mean()
    overlap = 2 * np.logical_and(fast, exact).sum() / (fast.sum() + exact.sum())
    assert agreement > 0.98 and overlap > 0.97


@native_bf16
def test_training_under_bfloat16_keeps_float32_weights_and_lowers_the_loss(tmp_path):
    rng = np.random.default_rng(0)
    images, masks = [], []
    for _ in range(8):
        mask = np.zeros((32, 32), np.uint8)
        r, c = rng.integers(8, 24, 2)
        mask[r - 5 : r + 5, c - 5 : c + 5] = 1
        images.append((mask * 0.8 + rng.normal(0, 0.1, (32, 32))).astype(np.float32))
        masks.append(mask)
    config = named_config("tiny")
    data = SegmentationDataset.from_arrays(images, masks, config)
    losses: list[float] = []
    result = train(
        config,
        data,
        tmp_path / "run",
        config=TrainConfig(steps=40, batch_size=8, learning_rate=1e-3, augment=None, device="cpu"),
        progress=lambda p: losses.append(p.loss),
    )
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:5])
    saved = load_checkpoint(result.final_checkpoint)
    assert all(p.dtype in (torch.float32, torch.complex64) for p in saved.model.parameters())
    assert saved.metadata["training"]["precision"] == "bfloat16 autocast"
