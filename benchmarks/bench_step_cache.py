"""What caching across sampling steps saves: one denoising step with and without it.

    python benchmarks/bench_step_cache.py [--config cpu] [--threads 1] [--repeats 30]

Per step the network needs the image encoder's stem, which depends on neither x_t nor t.
The Segmenter computes it once per run (``encode_condition``) and passes it as
``condition=``; recomputing it means calling ``model(x_t, t, image)`` every step. Also
timed: the sinusoidal time features and the time-embedding MLP (depend on t only), and the
image stem alone. Batches 1 and 5 (an ensemble of five is one batch). Median of
``--repeats`` interleaved steps, under ``torch.inference_mode`` on the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from medsegdiff_training.config import named_config
from medsegdiff_training.model import MedSegDiffUNet


def median_ms(function, repeats: int) -> float:
    function()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(model: MedSegDiffUNet, batch: int, repeats: int) -> None:
    """Print one step's time with the cached stem and recomputing it, for one batch size."""
    config = model.config
    image = torch.randn(batch, config.image_channels, *config.image_size)
    x_t = torch.randn(batch, config.mask_channels, *config.image_size)
    t = torch.full((batch,), 500)
    with torch.inference_mode():
        condition = model.encode_condition(image)
        cached_times: list[float] = []
        recomputed_times: list[float] = []
        steps = [
            (lambda: model(x_t, t, condition=condition), cached_times),
            (lambda: model(x_t, t, image), recomputed_times),
        ]
        for function, _ in steps:
            function()  # warm-up
        # alternate the two step by step so that other work on the machine hits both alike
        for _ in range(repeats):
            for function, times in steps:
                start = time.perf_counter()
                function()
                times.append(time.perf_counter() - start)
        cached = 1000 * statistics.median(cached_times)
        recomputed = 1000 * statistics.median(recomputed_times)
        stem = median_ms(lambda: model.encode_condition(image), repeats)
        time_mlp = median_ms(lambda: model.time_embedding(t), repeats)
    saved = recomputed - cached
    print(
        f"batch {batch}: step with cached stem {cached:.2f} ms, recomputing it {recomputed:.2f} ms "
        f"(difference {saved:.2f} ms = {100 * saved / recomputed:.1f} %); "
        f"stem alone {stem:.3f} ms; time embedding (t only) {time_mlp:.3f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = named_config(args.config)
    model = MedSegDiffUNet(config).eval()
    print(f"config {config.name} {config.image_size} threads {args.threads} repeats {args.repeats}")
    for batch in (1, 5):
        measure(model, batch, args.repeats)


if __name__ == "__main__":
    main()
