"""Checking user images and turning them into network input, and network output back.

Resize policy: the whole 2D image is resized (bilinear, aspect ratio not kept) to the
model's input size, exactly as the training images were; probabilities are resized back to
the original height and width (bilinear) before thresholding or argmax, so the label map
always has the image's own shape.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .config import ModelConfig, PreprocessConfig
from .errors import InvalidImageError, InvalidMaskError
from .prompts import Box, CropWindow, box_channel, extract_crop

# ITU-R 601 luma weights: how an RGB image becomes the grey image a 1-channel model sees.
LUMINANCE_WEIGHTS = (0.299, 0.587, 0.114)
# A normalisation named "luminance-<method>" normalises the luminance with <method> and
# keeps colour as deviations from it (see normalise_luminance_anchored).
LUMINANCE_ANCHORED = "luminance-"


def guess_channel_axis(shape: tuple[int, ...]) -> int:
    """Which axis of a 3D image holds the channels when the caller does not say.

    Channels-last RGB(A) is the common case; a short first axis is a channel stack.

    Examples
    --------
    >>> guess_channel_axis((480, 640, 3)), guess_channel_axis((2, 64, 64))
    (2, 0)
    """
    return 2 if shape[2] in (3, 4) and shape[0] > 4 else 0


def as_channels_first(image: np.ndarray, image_channels: int, channel_axis: int | None = None) -> np.ndarray:
    """Return a (C, H, W) float32 array from a 2D image, (H, W, C) RGB(A) or (C, H, W) stack.

    Raises :class:`InvalidImageError` for anything else (3D volumes must be sliced first).
    """
    array = np.asarray(image)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise InvalidImageError(f"Images must hold numbers; got dtype {array.dtype}.")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3:
        if channel_axis is None:
            channel_axis = guess_channel_axis(array.shape)
            if array.shape[0] > 4 and array.shape[2] > 4:
                raise InvalidImageError(
                    f"Got a 3D array of shape {array.shape}: this looks like a volume. "
                    "Segment it slice by slice (the napari widget and the CLI do this for you)."
                )
        array = np.moveaxis(array, channel_axis, 0)
    else:
        raise InvalidImageError(
            f"Expected a 2D image, got {array.ndim} dimensions {array.shape}; slice volumes first."
        )
    if array.shape[-1] < 2 or array.shape[-2] < 2:
        raise InvalidImageError(f"The image is too small to segment: {array.shape[-2:]}.")
    with np.errstate(over="ignore"):  # values beyond float32's range become inf, refused below
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise InvalidImageError(
            f"The image has {bad} NaN or infinite pixels (or values beyond float32's ±3.4e38); replace "
            "or rescale them before segmenting."
        )
    channels = array.shape[0]
    if channels == image_channels:
        return array
    if image_channels == 1 and channels in (3, 4):
        # RGB(A) into a gray model: luminance (ITU-R 601), alpha dropped
        return luminance(array)[None]
    if image_channels == 3 and channels == 1:
        return np.repeat(array, 3, axis=0)
    if image_channels == 3 and channels == 4:
        return array[:3]
    raise InvalidImageError(
        f"The model takes {image_channels}-channel images but this one has {channels} channels."
    )


def luminance(image: np.ndarray) -> np.ndarray:
    """The (H, W) ITU-R 601 luminance of a (3 or 4, H, W) RGB(A) image, as float32."""
    red, green, blue = LUMINANCE_WEIGHTS
    return (red * image[0] + green * image[1] + blue * image[2]).astype(np.float32)


def normalise_intensity(image: np.ndarray, method: str = "percentile") -> np.ndarray:
    """Scale each channel of a (C, H, W) image to about [-1, 1]; constant images become 0.

    ``"luminance-<method>"`` on a 3-channel image: see :func:`normalise_luminance_anchored`.
    """
    if method.startswith(LUMINANCE_ANCHORED):
        return normalise_luminance_anchored(image, method[len(LUMINANCE_ANCHORED) :])
    out = np.empty_like(image, dtype=np.float32)
    for c, channel in enumerate(image):
        if method == "percentile":
            low, high = np.percentile(channel, (1, 99))
        elif method == "minmax":
            low, high = float(channel.min()), float(channel.max())
        elif method == "zscore":
            mean, std = float(channel.mean()), float(channel.std())
            out[c] = 0.0 if std == 0 else np.clip((channel - mean) / (3 * std), -1, 1)
            continue
        else:
            raise ValueError(f"Unknown normalisation {method!r}.")
        if high <= low:
            out[c] = 0.0
        else:
            out[c] = np.clip((channel - low) / (high - low), 0, 1) * 2 - 1
    return out


def _scale(channel: np.ndarray, method: str) -> float:
    """The slope of ``method``'s affine map before clipping (0 for a constant channel)."""
    if method == "zscore":
        std = float(channel.std())
        return 0.0 if std == 0 else 1 / (3 * std)
    low, high = np.percentile(channel, (1, 99)) if method == "percentile" else (channel.min(), channel.max())
    return 0.0 if high <= low else 2 / float(high - low)


def normalise_luminance_anchored(image: np.ndarray, method: str = "percentile") -> np.ndarray:
    """RGB normalised so that its luminance is exactly the normalised luminance of the image.

    The luminance L (ITU-R 601) is normalised with ``method``, as a 1-channel model's
    preprocessing does (``n_L``); each channel c becomes ``n_L + k * s * (C_c - L)``:
    its deviation from L at the same slope s as n_L, pulled toward grey (k in [0, 1],
    per pixel) only as far as needed to stay in [-1, 1]. The deviations have zero
    luminance, so ``sum_c w_c * out_c == n_L`` for every image (up to float rounding):
    a network whose image stem weights are the 1-channel stem times (0.299, 0.587, 0.114)
    computes on ``out`` exactly what the 1-channel network computes on the luminance.
    Grey images (equal channels) become three copies of n_L. Images with other channel
    counts get ``method`` per channel.
    """
    if image.shape[0] != 3:
        return normalise_intensity(image, method)
    grey = luminance(image)
    anchored = normalise_intensity(grey[None], method)[0]
    deviation = (_scale(grey, method) * (image - grey[None])).astype(np.float32)
    # the largest k in [0, 1] keeping every channel of the pixel inside [-1, 1]
    room = np.where(deviation > 0, 1 - anchored[None], np.where(deviation < 0, -1 - anchored[None], 1.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        limits = np.where(deviation != 0, room / deviation, np.inf)
    k = np.clip(limits.min(axis=0), 0, 1)
    # the clip only removes float rounding (k kept every channel inside [-1, 1])
    return np.clip(anchored[None] + k[None] * deviation, -1, 1).astype(np.float32)


def prepare_image(
    image: np.ndarray,
    model_config: ModelConfig,
    preprocess: PreprocessConfig | None = None,
    channel_axis: int | None = None,
) -> torch.Tensor:
    """A user's 2D image -> the (1, C, H, W) float tensor the network takes.

    Examples
    --------
    >>> from medsegdiff_training.config import named_config
    >>> prepare_image(np.random.rand(300, 200), named_config("tiny")).shape
    torch.Size([1, 1, 32, 32])
    """
    preprocess = preprocess or PreprocessConfig()
    array = normalise_intensity(
        as_channels_first(image, model_config.image_channels, channel_axis), preprocess.normalisation
    )
    tensor = resize(torch.from_numpy(array)[None], model_config.image_size)
    if model_config.prompt_channels:  # a whole-image run: the box is the whole image
        whole = CropWindow(0, 0, array.shape[-2], array.shape[-1])
        tensor = with_box_channel(tensor, Box(0, 0, whole.right, whole.bottom), whole)
    return tensor


def prepare_crop(
    image: np.ndarray,
    window: CropWindow,
    image_size: tuple[int, int],
    normalisation: str = "percentile",
    *,
    box: Box | None = None,
    source_size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """The (1, C, h, w) network input for the part of a (C, H, W) image under ``window``.

    Cut (padded with the image's minimum beyond its border), normalised on its own, resized
    to ``image_size``: how box-prompt crops and ``--roi-crops`` training crops are both made.
    ``box`` (for a model with the box channel) appends the box as one more channel.
    ``source_size`` (training only) first resizes the crop to that size, as if the image had
    had fewer or more pixels (scale augmentation).
    """
    tensor = torch.from_numpy(normalise_intensity(extract_crop(image, window), normalisation))[None]
    if source_size is not None:
        tensor = resize(tensor, source_size)
    tensor = resize(tensor, image_size)
    return tensor if box is None else with_box_channel(tensor, box, window)


def with_box_channel(tensor: torch.Tensor, box: Box, window: CropWindow) -> torch.Tensor:
    """(1, C, h, w) network input with the box channel (:func:`~.prompts.box_channel`) appended."""
    channel = torch.from_numpy(box_channel(box, window, (tensor.shape[-2], tensor.shape[-1])))
    return torch.cat([tensor, channel[None, None].to(tensor.dtype)], dim=1)


def resize(tensor: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (B, C, H, W) float tensor (no-op when already that size)."""
    if tuple(tensor.shape[-2:]) == tuple(size):
        return tensor
    return F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)


def resize_labels(labels: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of a (H, W) or (B, H, W) label map."""
    tensor = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    squeeze = tensor.ndim == 2
    tensor = tensor[None] if squeeze else tensor
    out = F.interpolate(tensor[:, None].float(), size=tuple(size), mode="nearest")[:, 0].long()
    return out[0] if squeeze else out


def check_label_map(
    labels: np.ndarray, num_classes: int, image_shape: tuple[int, int] | None = None
) -> np.ndarray:
    """Validate a label map against the model's classes and the image's shape.

    Binary models (``num_classes == 2``): an 8-bit mask (any value above 127, e.g. 0/255 or a
    JPEG mask with compression noise) is foreground where it is above 127; a soft mask in
    [0, 1] is foreground above 0.5; otherwise every non-zero label is foreground (instance
    labels 1, 2, ... merge into one). K-class models: labels must be whole numbers
    0..K-1; labels beyond the model's classes are refused.
    """
    array = np.asarray(labels)
    if array.ndim == 3 and array.shape[-1] in (3, 4):
        array = array[..., 0]
    if array.ndim != 2:
        raise InvalidMaskError(f"A label map must be 2D, got shape {array.shape}.")
    if image_shape is not None and tuple(array.shape) != tuple(image_shape):
        raise InvalidMaskError(
            f"The label map has shape {array.shape} but the image has {tuple(image_shape)}; they must match."
        )
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InvalidMaskError("The label map contains NaN or infinite values.")
    values = np.unique(array)
    if values.min() < 0:
        raise InvalidMaskError(f"Label maps hold non-negative integers; found {values.min()}.")
    whole = bool(np.all(np.mod(values, 1) == 0))
    if num_classes == 2:
        if values.max() > 127:
            threshold = 127.0
        elif not whole and values.max() <= 1:
            threshold = 0.5
        else:
            threshold = 0.0
        return (array > threshold).astype(np.int64)
    if not whole:
        raise InvalidMaskError(
            "The label map holds fractional values; a K-class label map holds whole numbers "
            f"0..{num_classes - 1} (one per class)."
        )
    if values.max() >= num_classes:
        raise InvalidMaskError(
            f"The label map has label {int(values.max())} but the model knows {num_classes} classes "
            f"(0..{num_classes - 1})."
        )
    return array.astype(np.int64)
