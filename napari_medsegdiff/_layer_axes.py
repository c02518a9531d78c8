"""How an image layer's array is read: 2D gray, 2D RGB, a 3D volume, or a 2D channel stack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INTERPRETATIONS = ("auto", "2D", "RGB", "volume (slices along axis 0)", "channels along axis 0")


class UnsupportedLayerError(ValueError):
    """The layer's data cannot be segmented as 2D images (e.g. 4D or larger)."""


@dataclass(frozen=True)
class LayerAxes:
    """``kind`` is ``2d``, ``rgb``, ``volume`` (slices along axis 0) or ``channels`` (axis 0)."""

    kind: str
    shape: tuple[int, ...]

    @property
    def image_shape(self) -> tuple[int, int]:
        """Height and width of one 2D image."""
        return (
            (self.shape[0], self.shape[1]) if self.kind in ("2d", "rgb") else (self.shape[1], self.shape[2])
        )

    @property
    def slices(self) -> int:
        return self.shape[0] if self.kind == "volume" else 1

    @property
    def labels_shape(self) -> tuple[int, ...]:
        return (self.shape[0], *self.image_shape) if self.kind == "volume" else self.image_shape

    @property
    def channel_axis(self) -> int | None:
        return {"rgb": 2, "channels": 0}.get(self.kind)

    def describe(self) -> str:
        h, w = self.image_shape
        return {
            "2d": f"2D image, {h}x{w}",
            "rgb": f"RGB image, {h}x{w}",
            "volume": f"volume of {self.shape[0]} slices of {h}x{w} (axis 0)",
            "channels": f"{self.shape[0]}-channel image, {h}x{w} (channels on axis 0)",
        }[self.kind]

    def image(self, data: np.ndarray, index: int = 0) -> np.ndarray:
        """The 2D image (with its channels) to segment; ``index`` picks a volume slice."""
        return np.asarray(data[index]) if self.kind == "volume" else np.asarray(data)


def interpret(shape: tuple[int, ...], rgb: bool, choice: str = "auto") -> LayerAxes:
    """Read a layer's shape; ``choice`` overrides the automatic guess (see INTERPRETATIONS)."""
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if choice == "auto":
        if rgb and ndim == 3:
            kind = "rgb"
        elif ndim == 2:
            kind = "2d"
        elif ndim == 3:
            kind = "channels" if shape[0] <= 4 else "volume"
        else:
            raise UnsupportedLayerError(
                f"The layer has {ndim} dimensions {shape}; MedSegDiff segments 2D images, RGB images, "
                "3D volumes and 2D channel stacks. Reduce it to 3 dimensions first."
            )
    else:
        kind = {"2D": "2d", "RGB": "rgb"}.get(choice, choice.split()[0])
    wanted = {"2d": 2, "rgb": 3, "volume": 3, "channels": 3}[kind]
    if ndim != wanted:
        raise UnsupportedLayerError(f"A layer of shape {shape} cannot be read as '{choice}'.")
    if kind == "rgb" and shape[2] not in (3, 4):
        raise UnsupportedLayerError(f"An RGB layer needs 3 or 4 values in its last axis, got shape {shape}.")
    return LayerAxes(kind, shape)
