"""Where results go in the world: the image layer's own transform, for one 2D image of it.

The Labels, uncertainty and animation layers must line up with the image whatever its
scale, translation, rotation, shear or affine. A channel stack keeps only the transform of
its last two axes; the animation adds a leading step axis (and, for a volume, the position
of its slice) and is shown at the model's own resolution, stretched over the image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from napari.utils.transforms import Affine

from ._layer_axes import LayerAxes


@dataclass(frozen=True)
class Placement:
    """A layer's data-to-world transform in napari's terms (data -> physical -> world)."""

    scale: tuple[float, ...]
    translate: tuple[float, ...]
    rotate: np.ndarray
    shear: np.ndarray
    affine: np.ndarray  # the physical-to-world matrix, (n + 1, n + 1)

    def layer_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``viewer.add_labels``/``add_image``."""
        return {
            "scale": self.scale,
            "translate": self.translate,
            "rotate": self.rotate,
            "shear": self.shear,
            "affine": self.affine,
        }

    def for_frames(
        self,
        frame_shape: tuple[int, int],
        image_shape: tuple[int, int],
        slice_index: int | None = None,
        slice_axis: int = 0,
        origin: tuple[float, float] = (0.0, 0.0),
    ) -> Placement:
        """For a stack of model-sized frames: (steps, h, w), or one volume slice's frames with a
        length-1 axis at ``1 + slice_axis``, e.g. (steps, 1, h, w).

        A frame pixel ``j`` lands where the core's bilinear resize (``align_corners=False``)
        puts it in the image, ``j * s + (s - 1) / 2`` with ``s = image size / frame size``.
        The stretch is diagonal, so it only changes the scale and (through the rotation,
        shear and scale) the translation; rotation, shear and affine gain the step axis.
        ``origin`` (row, column) places the frames over a crop of the image starting there
        (``image_shape`` is then the crop's).
        """
        zoom = [image / frame for image, frame in zip(image_shape, frame_shape, strict=True)]
        offset = [(s - 1) / 2 + o for s, o in zip(zoom, origin, strict=True)]
        if slice_index is not None:
            zoom.insert(slice_axis, 1.0)
            offset.insert(slice_axis, float(slice_index))
        n = len(self.scale)
        shear = Affine(shear=self.shear, ndim=n).linear_matrix  # as a matrix, whatever its form
        linear = self.rotate @ shear @ np.diag(self.scale)
        translate = np.asarray(self.translate) + linear @ np.asarray(offset)
        return Placement(
            scale=(1.0, *(float(s * z) for s, z in zip(self.scale, zoom, strict=True))),
            translate=(0.0, *map(float, translate)),
            rotate=_with_step_axis(self.rotate),
            shear=_with_step_axis(shear),
            affine=_with_step_axis(self.affine),
        )


def _with_step_axis(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` acting on the later axes, the identity on a new leading one."""
    expanded = np.eye(len(matrix) + 1)
    expanded[1:, 1:] = matrix
    return expanded


def placement_of(layer: Any, axes: LayerAxes) -> Placement:
    """The transform of ``layer``'s 2D images (a volume's: of the whole volume)."""
    if axes.kind != "channels":
        return Placement(
            scale=tuple(map(float, layer.scale)),
            translate=tuple(map(float, layer.translate)),
            rotate=np.asarray(layer.rotate),
            shear=np.asarray(layer.shear),
            affine=np.asarray(layer.affine.affine_matrix),
        )
    spatial = [1, 2]  # the channel axis (0) has no place in the result
    data_to_physical = Affine(
        scale=layer.scale, translate=layer.translate, rotate=layer.rotate, shear=layer.shear
    ).set_slice(spatial)
    return Placement(
        scale=tuple(map(float, data_to_physical.scale)),
        translate=tuple(map(float, data_to_physical.translate)),
        rotate=data_to_physical.rotate,
        shear=data_to_physical.shear,
        affine=layer.affine.set_slice(spatial).affine_matrix,
    )
