"""How an image layer's array is read: 2D gray, 2D RGB, a 3D volume, or a 2D channel stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERPRETATIONS = (
    "auto",
    "2D",
    "RGB",
    "volume (slices along axis 0)",
    "volume (slices along axis 1)",
    "volume (slices along axis 2)",
    "channels along axis 0",
)


class UnsupportedLayerError(ValueError):
    """The layer's data cannot be segmented as 2D images (e.g. 4D or larger)."""


@dataclass(frozen=True)
class LayerAxes:
    """``kind`` is ``2d``, ``rgb``, ``volume`` (slices along ``slice_axis``) or ``channels`` (axis 0).

    Examples
    --------
    >>> axes = interpret((40, 64, 50), rgb=False, choice="volume (slices along axis 1)")
    >>> axes.slices, axes.image_shape, axes.labels_shape
    (64, (40, 50), (40, 64, 50))
    >>> axes.image(np.zeros((40, 64, 50)), 3).shape
    (40, 50)
    """

    kind: str
    shape: tuple[int, ...]
    slice_axis: int = 0

    @property
    def image_shape(self) -> tuple[int, int]:
        """Height and width of one 2D image."""
        if self.kind in ("2d", "rgb"):
            return (self.shape[0], self.shape[1])
        if self.kind == "channels":
            return (self.shape[1], self.shape[2])
        height, width = (size for axis, size in enumerate(self.shape) if axis != self.slice_axis)
        return (height, width)

    @property
    def slices(self) -> int:
        return self.shape[self.slice_axis] if self.kind == "volume" else 1

    @property
    def labels_shape(self) -> tuple[int, ...]:
        return self.shape if self.kind == "volume" else self.image_shape

    @property
    def channel_axis(self) -> int | None:
        return {"rgb": 2, "channels": 0}.get(self.kind)

    def describe(self) -> str:
        h, w = self.image_shape
        return {
            "2d": f"2D image, {h}x{w}",
            "rgb": f"RGB image, {h}x{w}",
            "volume": f"volume of {self.slices} slices of {h}x{w} (axis {self.slice_axis})",
            "channels": f"{self.shape[0]}-channel image, {h}x{w} (channels on axis 0)",
        }[self.kind]

    def slice_position(self, index: int) -> tuple[int | slice, ...]:
        """Where slice ``index`` sits in a volume-shaped array (``()``: the whole 2D image)."""
        if self.kind != "volume":
            return ()
        return (*(slice(None),) * self.slice_axis, index)

    def image(self, data: np.ndarray, index: int = 0) -> np.ndarray:
        """The 2D image (with its channels) to segment; ``index`` picks a volume slice."""
        return np.asarray(data[self.slice_position(index)])


def interpret(shape: tuple[int, ...], rgb: bool, choice: str = "auto", stacked: bool = False) -> LayerAxes:
    """Read a layer's shape; ``choice`` overrides the automatic guess (see INTERPRETATIONS).

    ``stacked``: the first axis is known to hold slices or frames (a DICOM series), so a
    3D array is a volume however few slices it has, never a channel stack.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    slice_axis = 0
    if choice == "auto":
        if rgb and ndim == 3:
            kind = "rgb"
        elif ndim == 2:
            kind = "2d"
        elif ndim == 3:
            kind = "channels" if shape[0] <= 4 and not stacked else "volume"
        else:
            raise UnsupportedLayerError(
                f"The layer has {ndim} dimensions {shape}; MedSegDiff segments 2D images, RGB images, "
                "3D volumes and 2D channel stacks. Reduce it to 3 dimensions first."
            )
    elif choice.startswith("volume"):
        kind, slice_axis = "volume", int(choice.rstrip(")").split()[-1])
    else:
        kind = {"2D": "2d", "RGB": "rgb"}.get(choice, choice.split()[0])
    wanted = {"2d": 2, "rgb": 3, "volume": 3, "channels": 3}[kind]
    if ndim != wanted:
        raise UnsupportedLayerError(f"A layer of shape {shape} cannot be read as '{choice}'.")
    if kind == "rgb" and shape[2] not in (3, 4):
        raise UnsupportedLayerError(f"An RGB layer needs 3 or 4 values in its last axis, got shape {shape}.")
    return LayerAxes(kind, shape, slice_axis)


VOLUME_ALONG_0 = "volume (slices along axis 0)"
CHANNELS_ALONG_0 = "channels along axis 0"


def ambiguous_stack(shape: tuple[int, ...], rgb: bool, stacked: bool = False) -> bool:
    """Whether ``auto`` had to guess between a channel stack and a volume: a 3D array of 2-4
    planes on axis 0 that napari does not show as RGB and no reader marked as slices."""
    return len(shape) == 3 and not rgb and not stacked and 2 <= int(shape[0]) <= 4


def channel_use(planes: int, model_channels: int | None) -> str:
    """What the core does with ``planes`` channels for a model of ``model_channels``, in words.

    Examples
    --------
    >>> channel_use(4, 1)
    'mixed into one grey image by RGB luminance (the 4th plane dropped)'
    >>> channel_use(2, 1)
    'refused: the model takes 1-channel images'
    """
    if model_channels is None or planes == model_channels:
        return "used as the model's channels"
    if model_channels == 1 and planes in (3, 4):
        dropped = " (the 4th plane dropped)" if planes == 4 else ""
        return f"mixed into one grey image by RGB luminance{dropped}"
    if model_channels == 3 and planes == 4:
        return "read as RGB (the 4th plane dropped)"
    return f"refused: the model takes {model_channels}-channel images"
