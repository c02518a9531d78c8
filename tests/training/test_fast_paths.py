"""Every fast path computes what the eager float32 network computes, within a stated tolerance.

Tolerances are relative L2 errors ||fast - eager|| / ||eager||: float32 reorderings
(channels_last, compiled kernels, graph replay) 1e-4; bfloat16 arithmetic 3e-2 (8 bits of
mantissa through a few dozen layers), also when both sides compute in bfloat16 and only the
order of the sums differs (channels_last under bf16: 7e-3 measured on an AMX CPU). Every
comparison names its precision (``fp32`` or ``bf16``, the CPU policy forced for the test with
``cpu_bf16_policy``, so that a CPU without native bfloat16 runs the bf16 case too, in
software) instead of taking whatever "auto" picks on the machine. The CUDA tests run on a
GPU machine (``benchmarks/gpu_check.sh``) and are skipped elsewhere with that reason.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medsegdiff_training.checkpoint import Checkpoint
from medsegdiff_training.config import DiffusionConfig, PreprocessConfig, default_batch_size, named_config
from medsegdiff_training.cuda_graphs import GraphedForward
from medsegdiff_training.data import SegmentationDataset
from medsegdiff_training.errors import ConfigError
from medsegdiff_training.fast_paths import FastPaths, cast_floating, resolve_fast_paths
from medsegdiff_training.inference import SamplingSettings, Segmenter
from medsegdiff_training.model import MedSegDiffUNet
from medsegdiff_training.model.blocks import GroupNorm, norm_silu
from medsegdiff_training.precision import CUDA_AUTO, resolve_precision
from medsegdiff_training.samplers import run_to_end
from medsegdiff_training.trainer import TrainConfig, _update_ema, make_optimizer, train
from medsegdiff_training.training_batches import Batches

FLOAT32_TOLERANCE = 1e-4
BFLOAT16_TOLERANCE = 3e-2
TOLERANCE = {"fp32": FLOAT32_TOLERANCE, "bf16": BFLOAT16_TOLERANCE}
PRECISIONS = ("fp32", "bf16")
CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    got, expected = got.detach().double().cpu(), expected.detach().double().cpu()
    assert torch.isfinite(got).all()
    return float((got - expected).norm() / expected.norm())


def trained_like(name: str = "tiny") -> MedSegDiffUNet:
    """A network with random (not zero-initialised) head, so its output is not trivially 0."""
    torch.manual_seed(0)
    model = MedSegDiffUNet(named_config(name))
    with torch.no_grad():
        for parameter in model.parameters():
            if not parameter.is_complex():
                parameter.add_(0.05 * torch.randn_like(parameter))
    return model.eval()


def checkpoint_of(model: MedSegDiffUNet) -> Checkpoint:
    return Checkpoint(model, model.config, DiffusionConfig(), PreprocessConfig())


def inputs(batch: int = 2, device: torch.device = CPU):
    generator = torch.Generator().manual_seed(1)
    x_t = torch.randn(batch, 1, 32, 32, generator=generator).to(device)
    image = torch.randn(batch, 1, 32, 32, generator=generator).to(device)
    return x_t, torch.tensor([10, 700][:batch] + [300] * max(0, batch - 2), device=device), image


def eager_and_channels_last(model: MedSegDiffUNet, precision: str) -> tuple[Segmenter, Segmenter]:
    """Two Segmenters of ``model`` in ``precision``: the eager reference and channels_last."""
    eager = Segmenter(checkpoint_of(copy.deepcopy(model)), device="cpu", precision=precision)
    fast = Segmenter(
        checkpoint_of(copy.deepcopy(model)), device="cpu", precision=precision, channels_last=True
    )
    return eager, fast


# --- the precision policy -------------------------------------------------------------------------


def test_auto_precision_follows_the_device_and_task(cpu_bf16_policy):
    cpu_bf16_policy("native")  # a CPU with AMX or AVX512-BF16
    assert resolve_precision(CPU, "auto", "sampling") == resolve_precision(CPU, "auto", "training") == "bf16"
    cpu_bf16_policy("none")
    assert resolve_precision(CPU, "auto", "sampling") == resolve_precision(CPU, "auto", "training") == "fp32"
    assert resolve_precision(torch.device("mps")) == "fp32"
    assert resolve_precision(torch.device("cuda"), "auto", "sampling") == CUDA_AUTO["sampling"]
    assert resolve_precision(torch.device("cuda"), "auto", "training") == CUDA_AUTO["training"]
    assert resolve_precision(torch.device("cuda"), "fp32") == "fp32"
    assert resolve_precision(torch.device("cuda"), "bf16") == "bf16"
    with pytest.raises(ConfigError, match="Unknown precision 'half'"):
        resolve_precision(CPU, "half")


def test_a_cpu_without_native_bfloat16_stays_in_float32_even_when_asked(cpu_bf16_policy):
    cpu_bf16_policy("none")
    assert resolve_precision(CPU, "bf16") == "fp32"
    assert resolve_precision(CPU, "auto") == "fp32"
    segmenter = Segmenter(checkpoint_of(trained_like()), device="cpu", precision="bf16")
    assert segmenter.precision == "fp32" and not segmenter.amp
    cpu_bf16_policy("yes")
    with pytest.raises(ConfigError, match="MEDSEGDIFF_CPU_BF16 must be one of native, none, not 'yes'"):
        resolve_precision(CPU, "auto")


def test_fast_path_defaults_per_device():
    assert resolve_fast_paths(CPU) == FastPaths()
    assert resolve_fast_paths(CPU, cuda_graphs=True).cuda_graphs is False  # graphs exist only on CUDA
    assert resolve_fast_paths(torch.device("cuda"), compile="reduce-overhead").cuda_graphs is False
    with pytest.raises(ConfigError, match="Unknown compile mode"):
        FastPaths(compile="fastest")
    assert default_batch_size("B", "cuda") == 32 and default_batch_size("B", "cpu") == 8


# --- the network's fast paths, against eager float32 -------------------------------------------


def test_group_norm_equals_torch_group_norm_and_fused_silu_equals_norm_then_silu():
    norm, reference = GroupNorm(4, 16), torch.nn.GroupNorm(4, 16)
    reference.load_state_dict(norm.state_dict())
    x = torch.randn(2, 16, 8, 8)
    assert torch.equal(norm(x), reference(x))
    with torch.inference_mode():  # in place on the norm's output
        assert relative_error(norm_silu(norm, x), F.silu(reference(x))) < 1e-7
    x.requires_grad_(True)
    norm_silu(norm, x).sum().backward()  # out of place when a gradient is recorded
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("precision", PRECISIONS)
def test_channels_last_network_gives_the_eager_result(cpu_bf16_policy, precision):
    cpu_bf16_policy("native")  # "bf16" runs in bfloat16 on every CPU (in software where not native)
    eager, fast = eager_and_channels_last(trained_like(), precision)
    assert fast.fast.channels_last and (eager.precision, fast.precision) == (precision, precision)
    weight = fast.model.image_encoder.stages[0].blocks[0].block1.conv.weight
    assert weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
    x_t, t, image = inputs()
    with torch.inference_mode():
        with eager._autocast():
            expected = eager.model(x_t, t, image).float()
        with fast._autocast():
            got = fast.model(
                x_t.contiguous(memory_format=torch.channels_last),
                t,
                image.contiguous(memory_format=torch.channels_last),
            ).float()
    assert relative_error(got, expected) < TOLERANCE[precision]


@pytest.mark.parametrize("precision", PRECISIONS)
def test_channels_last_sampling_gives_the_eager_masks(cpu_bf16_policy, precision):
    cpu_bf16_policy("native")
    settings = SamplingSettings(sampler="ddim", steps=3, ensemble=2, seed=4)
    image = np.random.default_rng(0).random((40, 36))
    eager, fast = eager_and_channels_last(trained_like(), precision)
    assert (eager.precision, fast.precision) == (precision, precision)
    expected, got = eager.segment(image, settings), fast.segment(image, settings)
    error = relative_error(torch.from_numpy(got.probabilities), torch.from_numpy(expected.probabilities))
    assert error < TOLERANCE[precision]


def test_the_graph_wrapper_falls_back_to_the_plain_forward_off_cuda():
    model = trained_like()
    x_t, t, image = inputs()
    forward = GraphedForward(model, torch.inference_mode)
    with torch.inference_mode():
        condition = model.encode_condition(image)
        expected = model(x_t, t, condition=condition)
    got = forward(x_t, t, condition)
    assert torch.equal(got, expected) and forward.captured_shapes() == []
    assert torch.equal(
        GraphedForward(model, torch.inference_mode, enabled=False)(x_t, t, condition), expected
    )


def test_bfloat16_weights_keep_the_complex_filters_and_stay_close_to_float32():
    model = trained_like()
    fast = cast_floating(copy.deepcopy(model), torch.bfloat16)
    dtypes = {p.dtype for p in fast.parameters()}
    assert dtypes == {torch.bfloat16, torch.complex64}  # the FF-Parser's A stays complex
    x_t, t, image = inputs()
    with torch.inference_mode():
        expected = model(x_t, t, image)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fast(x_t, t, image).float()
    assert relative_error(got, expected) < BFLOAT16_TOLERANCE


@pytest.mark.slow
# torch.compile's CPU backend imports torch.utils.mkldnn, which warns about its own TorchScript use
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
# the FF-Parser's complex filter runs eagerly inside the compiled graph (inductor says so)
@pytest.mark.filterwarnings("ignore:Torchinductor does not support code generation for complex:UserWarning")
def test_compiled_network_gives_the_eager_result():
    model = trained_like()
    x_t, t, image = inputs()
    compiled = torch.compile(copy.deepcopy(model), dynamic=False)
    with torch.inference_mode():
        expected = model(x_t, t, image)
        got = compiled(x_t, t, image)
    assert relative_error(got, expected) < FLOAT32_TOLERANCE


# --- training: optimiser, EMA, data order --------------------------------------------------------


def test_the_optimiser_puts_complex_filters_in_their_own_group_and_fuses_only_on_cuda():
    model = trained_like()
    optimizer = make_optimizer(model, TrainConfig(), CPU)
    real, complex_ = optimizer.param_groups
    assert not real["fused"] and all(not p.is_complex() for p in real["params"])
    assert complex_["params"] and all(p.is_complex() for p in complex_["params"])
    count = sum(len(g["params"]) for g in optimizer.param_groups)
    assert count == len(list(model.parameters()))


def test_the_multi_tensor_ema_equals_the_per_tensor_formula():
    model, ema = trained_like(), trained_like()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    expected = [0.9 * e + 0.1 * p for e, p in zip(ema.parameters(), model.parameters(), strict=True)]
    _update_ema(ema, model, 0.9)
    for got, want in zip(ema.parameters(), expected, strict=True):
        assert (
            relative_error(
                got if not got.is_complex() else torch.view_as_real(got),
                want if not want.is_complex() else torch.view_as_real(want),
            )
            < 1e-6
        )


def _tiny_data(count: int = 10) -> SegmentationDataset:
    rng = np.random.default_rng(0)
    images = [rng.random((32, 32)).astype(np.float32) for _ in range(count)]
    masks = [(rng.random((32, 32)) > 0.5).astype(np.uint8) for _ in range(count)]
    return SegmentationDataset.from_arrays(images, masks, named_config("tiny"))


def test_worker_batches_come_in_the_same_order_and_resume_at_the_same_place():
    data = _tiny_data(7)
    plain, workers = Batches(data, 3, seed=5), Batches(data, 3, seed=5, workers=2)
    try:
        for _ in range(5):  # crosses epochs (7 images, 3 per batch)
            (a, la), (b, lb) = plain.next(), workers.next()
            assert torch.equal(a, b) and torch.equal(la, lb)
        assert plain.state() == workers.state()
        resumed = Batches(data, 3, seed=5, workers=2)
        resumed.restore(workers.state())
        expected, got = plain.next(), resumed.next()
        assert torch.equal(expected[0], got[0])
    finally:
        workers.close()


def test_training_with_channels_last_and_workers_matches_the_eager_run(tmp_path):
    config = named_config("tiny")
    data = _tiny_data()
    common = {"steps": 3, "batch_size": 4, "augment": None, "device": "cpu", "amp": False}
    losses: dict[str, list[float]] = {"eager": [], "fast": []}
    train(
        config,
        data,
        tmp_path / "eager",
        config=TrainConfig(**common),
        progress=lambda p: losses["eager"].append(p.loss),
    )
    train(
        config,
        data,
        tmp_path / "fast",
        config=TrainConfig(**common, channels_last=True, num_workers=2),
        progress=lambda p: losses["fast"].append(p.loss),
    )
    assert np.allclose(losses["fast"], losses["eager"], rtol=1e-4)


# --- on a CUDA GPU ------------------------------------------------------------------------------


@needs_cuda
def test_cuda_graph_replay_gives_the_eager_result_and_is_cached_per_shape():
    model = trained_like()
    eager = Segmenter(checkpoint_of(copy.deepcopy(model)), device="cuda", precision="fp32", cuda_graphs=False)
    graphed = Segmenter(
        checkpoint_of(copy.deepcopy(model)), device="cuda", precision="fp32", cuda_graphs=True
    )
    image = torch.randn(1, 1, 32, 32, device="cuda")
    settings = SamplingSettings(sampler="ddim", steps=4, ensemble=2, seed=0)
    expected = run_to_end(eager.denoise(image, settings))
    first = run_to_end(graphed.denoise(image, settings))
    second = run_to_end(graphed.denoise(image, settings))  # replays: nothing captured again
    assert len(graphed._forward.captured_shapes()) == 1
    assert relative_error(first, expected) < 1e-3 and relative_error(second, first) < 1e-5
    other = torch.randn(1, 1, 32, 32, device="cuda")  # a new image: same graph, new condition copied in
    assert (
        relative_error(
            run_to_end(graphed.denoise(other, settings)), run_to_end(eager.denoise(other, settings))
        )
        < 1e-3
    )
    run_to_end(graphed.denoise(image, SamplingSettings(sampler="ddim", steps=2, ensemble=3)))
    assert len(graphed._forward.captured_shapes()) == 2


@needs_cuda
def test_cuda_bfloat16_group_norm_stays_bfloat16_and_close_to_float32():
    norm = GroupNorm(8, 64).cuda()
    x = torch.randn(2, 64, 16, 16, device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        got = norm(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert relative_error(got, norm(x)) < 1e-2


@needs_cuda
def test_cuda_bfloat16_sampling_network_is_close_to_float32():
    model = trained_like()
    fast = Segmenter(checkpoint_of(copy.deepcopy(model)), device="cuda", precision="bf16")
    x_t, t, image = inputs(device=torch.device("cuda"))
    with torch.inference_mode():
        expected = model.cuda().float()(x_t, t, image)
        with fast._autocast():
            got = fast.model(x_t, t, image).float()
    assert relative_error(got, expected) < BFLOAT16_TOLERANCE


@needs_cuda
def test_cuda_training_uses_fused_adamw_and_workers(tmp_path):
    config = named_config("tiny")
    losses: list[float] = []
    result = train(
        config,
        _tiny_data(),
        tmp_path / "run",
        config=TrainConfig(steps=4, batch_size=4, device="cuda", channels_last=True),
        progress=lambda p: losses.append(p.loss),
    )
    assert result.step == 4 and all(np.isfinite(losses))
    model = trained_like()
    assert make_optimizer(model.cuda(), TrainConfig(), torch.device("cuda")).param_groups[0]["fused"]
