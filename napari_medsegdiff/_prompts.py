"""Box and point prompts from napari layers: Shapes and Points -> boxes in image pixels.

No Qt and no maths beyond coordinates here: a shape's vertices go through its layer's
data-to-world transform and the image layer's world-to-data transform, so any scale,
translation, rotation or affine of either layer is respected; the crop rule, crops and
pasting live in :mod:`medsegdiff_training.prompts`. Any shape counts through its
axis-aligned bounding box in the image (a rotated rectangle, an ellipse, a polygon).

napari puts pixel ``i``'s centre at data coordinate ``i``; the core's boxes put pixel ``i``
at ``[i, i + 1)``, hence the half-pixel shift below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._layer_axes import LayerAxes

if TYPE_CHECKING:
    import napari

AUTO = "newest prompts over the image"
WHOLE_IMAGE = "whole image"


def prompt_layers(viewer: napari.Viewer) -> list[Any]:
    """The viewer's Shapes and Points layers, oldest first."""
    from napari.layers import Points, Shapes

    return [layer for layer in viewer.layers if isinstance(layer, Shapes | Points)]


def spatial_axes(axes: LayerAxes) -> tuple[int, int]:
    """The image layer's data axes that are rows and columns."""
    if axes.kind in ("2d", "rgb"):
        return (0, 1)
    if axes.kind == "channels":
        return (1, 2)
    row, column = (axis for axis in range(3) if axis != axes.slice_axis)
    return (row, column)


def _to_image(points: np.ndarray, layer: Any, image_layer: Any, world_point: tuple[float, ...]) -> np.ndarray:
    """(N, layer.ndim) data coordinates of ``layer`` -> (N, image_layer.ndim) of the image."""
    out = []
    for point in np.atleast_2d(points):
        world = np.asarray(layer.data_to_world(point), dtype=float)
        missing = len(world_point) - len(world)
        if missing > 0:  # a 2D prompt layer over a volume: it lies on the slice on screen
            world = np.concatenate([np.asarray(world_point[:missing], dtype=float), world])
        out.append(np.asarray(image_layer.world_to_data(world), dtype=float)[-image_layer.ndim :])
    return np.asarray(out)


def prompts_from_layer(
    layer: Any, image_layer: Any, axes: LayerAxes, world_point: tuple[float, ...], slice_index: int = 0
) -> list[Any]:
    """The boxes (Shapes) or points (Points) of ``layer`` over the image, in layer order.

    For a volume only prompts on slice ``slice_index`` count. ``world_point`` is the
    viewer's current position (``viewer.dims.point``). Prompts wholly outside the image
    are left out.
    """
    from napari.layers import Points

    from medsegdiff_training.prompts import Box, Point

    rows_axis, columns_axis = spatial_axes(axes)
    height, width = axes.image_shape
    prompts: list[Any] = []
    elements = [np.asarray(p)[None] for p in layer.data] if isinstance(layer, Points) else list(layer.data)
    for vertices in elements:
        if len(vertices) == 0:
            continue
        coordinates = _to_image(np.asarray(vertices, dtype=float), layer, image_layer, world_point)
        if axes.kind == "volume" and not np.all(np.round(coordinates[:, axes.slice_axis]) == slice_index):
            continue
        rows = coordinates[:, rows_axis] + 0.5
        columns = coordinates[:, columns_axis] + 0.5
        if isinstance(layer, Points):
            prompt: Any = Point(float(columns[0]), float(rows[0]))
            inside = 0 <= prompt.x < width and 0 <= prompt.y < height
        else:
            if columns.max() - columns.min() < 1 or rows.max() - rows.min() < 1:
                continue  # a degenerate shape (a line, a click) has no box
            prompt = Box(float(columns.min()), float(rows.min()), float(columns.max()), float(rows.max()))
            inside = prompt.overlaps((height, width))
        if inside:
            prompts.append(prompt)
    return prompts


def newest_prompt_layer(
    viewer: napari.Viewer, image_layer: Any, axes: LayerAxes, slice_index: int = 0
) -> tuple[Any, list[Any]] | None:
    """The newest Shapes or Points layer with a prompt over the image, and its prompts."""
    for layer in reversed(prompt_layers(viewer)):
        found = prompts_from_layer(layer, image_layer, axes, tuple(viewer.dims.point), slice_index)
        if found:
            return layer, found
    return None


def draw_boxes_layer(viewer: napari.Viewer, image_layer: Any, axes: LayerAxes) -> Any:
    """Select (or add) the Shapes layer ``<image> prompts`` in rectangle mode, over the image."""
    from napari.layers import Shapes

    from ._placement import placement_of

    name = f"{image_layer.name} prompts"
    layer = next((lay for lay in viewer.layers if isinstance(lay, Shapes) and lay.name == name), None)
    if layer is None:
        kwargs = placement_of(image_layer, axes).layer_kwargs()
        layer = viewer.add_shapes(
            name=name,
            ndim=3 if axes.kind == "volume" else 2,
            edge_color="yellow",
            face_color="transparent",
            edge_width=max(1.0, min(axes.image_shape) / 300),
            **kwargs,
        )
    viewer.layers.selection.active = layer
    layer.mode = "add_rectangle"
    return layer


class NoPromptsError(ValueError):
    """The chosen prompts layer has nothing over the image."""


def choose_prompts(
    viewer: napari.Viewer, choice: str, image_layer: Any, axes: LayerAxes, slice_index: int = 0
) -> tuple[Any, list[Any]] | None:
    """The prompts layer and prompts the picker's ``choice`` means; ``None`` = the whole image.

    ``AUTO`` takes the newest Shapes or Points layer with a prompt over the image (the whole
    image when there is none); a named layer without prompts over the image raises
    :class:`NoPromptsError`.
    """
    if choice == WHOLE_IMAGE:
        return None
    if choice == AUTO:
        return newest_prompt_layer(viewer, image_layer, axes, slice_index)
    layer = next((lay for lay in prompt_layers(viewer) if lay.name == choice), None)
    if layer is None:
        raise NoPromptsError(f"The prompts layer '{choice}' is gone; choose another in Prompts.")
    found = prompts_from_layer(layer, image_layer, axes, tuple(viewer.dims.point), slice_index)
    if not found:
        where = f" on slice {slice_index}" if axes.kind == "volume" else ""
        raise NoPromptsError(
            f"'{layer.name}' has no box or point over '{image_layer.name}'{where}: draw one "
            "(Draw boxes), or choose 'whole image' in Prompts."
        )
    return layer, found
