"""A readable summary of a network configuration (``medsegdiff info --config NAME``)."""

from __future__ import annotations

import torch

from .config import NAMED_CONFIGS, ModelConfig
from .model import MedSegDiffUNet, count_parameters


def _parameters(config: ModelConfig) -> int:
    # built on the meta device: shapes only, so the 171M-parameter '++' costs no memory
    with torch.device("meta"):
        return count_parameters(MedSegDiffUNet(config))


def describe(config: ModelConfig) -> str:
    """Levels, channels, blocks, fused levels, FF-Parser sizes and parameter count.

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> "parameters" in describe(named_config("tiny"))
    True
    """
    channels = config.level_channels
    sizes = config.level_sizes()
    lines = [
        f"MedSegDiff '{config.name}': input {config.image_size[0]}x{config.image_size[1]}, "
        f"{config.image_channels} image channel(s), {config.num_classes} classes "
        f"({config.mask_channels} mask channel(s)), {config.downsamplings} downsamplings",
        "level  size       channels  encoder blocks  fusion (eq. 3)  FF-Parser (eq. 4-5)",
    ]
    for level, (size, width) in enumerate(zip(sizes, channels, strict=True)):
        shared = level == config.dual_levels
        blocks = f"{config.encoder_blocks[level]}" + (" (E^I+E^x)" if shared else " x 2")
        fused = "yes" if level in config.fused_levels else "-"
        parser = f"{size[0]}x{size[1] // 2 + 1} complex" if config.ff_parser and not shared else "-"
        lines.append(
            f"{level:5d}  {size[0]:4d}x{size[1]:<4d}  {width:8d}  {blocks:14s}  {fused:14s}  {parser}"
        )
    lines.append(f"decoder: {config.decoder_blocks} residual block(s) per level")
    lines.append(f"parameters: {_parameters(config):,} (a complex weight counts as two)")
    return "\n".join(lines)


def parameter_counts() -> dict[str, int]:
    """Trainable parameters of every named configuration."""
    return {name: _parameters(config) for name, config in NAMED_CONFIGS.items()}
