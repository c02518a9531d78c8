"""``medsegdiff train --roi-crops`` and its options: training on crops around the objects,
cut by the crop rule that box prompts will use (recorded in the checkpoint)."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..prompts import DEFAULT_CROP_RULE, DEFAULT_JITTER, CropRule

if TYPE_CHECKING:
    from ..data.roi_crops import CropRecipe

# None when not given
CROP_OPTIONS = ("crop_margin", "jitter", "exact_boxes", "crop_context", "scale_augment")
CROP_SWITCHES = ("per_object", "box_channel")


def add_crop_options(parser: argparse.ArgumentParser) -> None:
    """The ``crops around the objects`` group of ``train``'s options."""
    crops = parser.add_argument_group("crops around the objects: training for box prompts")
    crops.add_argument(
        "--roi-crops",
        action="store_true",
        help="train on crops around each mask's bounding box (edges jittered), cut by the crop rule "
        "that box prompts will use; the rule is recorded in the checkpoint",
    )
    crops.add_argument(
        "--crop-margin",
        default=None,
        metavar="MARGIN",
        help="with --roi-crops: the box grows by this on each side, in per cent of the box's size "
        "('10%%', the default; the same object at any size in pixels gives the same crop) or in "
        "pixels ('30px')",
    )
    crops.add_argument(
        "--per-object",
        action="store_true",
        help="with --roi-crops: one box per connected component of the mask (the target is that object "
        "alone), as box prompts are drawn; default: one box around all foreground",
    )
    crops.add_argument(
        "--jitter",
        type=float,
        default=None,
        metavar="FRACTION",
        help="with --roi-crops: each box edge moves by up to this fraction of the box's side, outward and "
        f"inward (default: {DEFAULT_JITTER:g})",
    )
    crops.add_argument(
        "--exact-boxes",
        type=float,
        default=None,
        metavar="SHARE",
        help="with --roi-crops: this share of the training boxes keeps its exact edges, the rest are "
        "jittered (default: 0, every box jittered)",
    )
    crops.add_argument(
        "--box-channel",
        action="store_true",
        help="with --roi-crops: tell the network where the box is (one more input channel)",
    )
    crops.add_argument(
        "--crop-context",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="with --box-channel: the margin is drawn per sample between these fractions of the box "
        "(the crop rule's margin is used for prompts)",
    )
    crops.add_argument(
        "--scale-augment",
        type=float,
        default=None,
        metavar="SHARE",
        help="with --roi-crops: each crop is first resized to between SHARE and 1 of its size in pixels, "
        "as if the image had fewer pixels (objects at many sizes)",
    )


def crop_rule_of(args: argparse.Namespace) -> CropRule | None:
    """The crop rule of ``--roi-crops`` (``None`` without it), from ``--crop-margin``."""
    if not args.roi_crops:
        given = [name for name in CROP_OPTIONS if getattr(args, name) is not None]
        given += [name for name in CROP_SWITCHES if getattr(args, name)]
        if given:
            raise ConfigError(f"--{given[0].replace('_', '-')} needs --roi-crops.")
        return None
    text = (args.crop_margin or f"{DEFAULT_CROP_RULE.margin_fraction * 100:g}%").strip().lower()
    try:
        if text.endswith("px"):
            margin_px, fraction, shown = float(text[:-2]), 0.0, f"{float(text[:-2]):g} px"
        elif text.endswith("%"):
            margin_px, fraction, shown = 0.0, float(text[:-1]) / 100, f"{float(text[:-1]):g} % of its size"
        else:
            raise ValueError(text)
    except ValueError:
        raise ConfigError(
            f"--crop-margin takes pixels or per cent, e.g. 30px or 10%; got {args.crop_margin!r}."
        ) from None
    if not (math.isfinite(margin_px) and math.isfinite(fraction)) or margin_px < 0 or fraction < 0:
        raise ConfigError(f"--crop-margin must be zero or positive, got {args.crop_margin!r}.")
    jitter = DEFAULT_JITTER if args.jitter is None else args.jitter
    exact = f"{args.exact_boxes * 100:g} % of boxes exact, the rest " if args.exact_boxes else ""
    each = "each object's (connected component's)" if args.per_object else "the mask's"
    return CropRule(
        margin_px=margin_px,
        margin_fraction=fraction,
        description=(
            f"training crops (medsegdiff train --roi-crops): {each} bounding box + {shown} on each "
            f"side, {exact}edges jittered by up to {jitter * 100:g} %, resized non-uniformly to the input"
        ),
    )


def crop_recipe_of(args: argparse.Namespace) -> CropRecipe:
    """How ``--roi-crops`` draws its crops (see :class:`~..data.roi_crops.CropRecipe`)."""
    from ..data.roi_crops import CropRecipe

    if args.crop_context is not None and not args.box_channel:
        raise ConfigError("--crop-context needs --box-channel: the network must be told where the box is.")
    scale = None
    if args.scale_augment is not None:
        if not 0 < args.scale_augment <= 1:
            raise ConfigError(
                f"--scale-augment is a share of the crop's pixels in (0, 1], got {args.scale_augment}."
            )
        scale = (args.scale_augment, 1.0)
    return CropRecipe(
        per_object=args.per_object,
        jitter=DEFAULT_JITTER if args.jitter is None else args.jitter,
        exact_share=0.0 if args.exact_boxes is None else args.exact_boxes,
        context=None if args.crop_context is None else tuple(args.crop_context),
        scale=scale,
    )
