"""Prompted objects into the image's one segmentation layer, without losing corrections.

The first prompted run on an image makes ``<image> segmentation`` (ids 1..n in prompt
order, or one label for all; a multi-class model's classes). Later runs add to the newest
Labels layer made for the same image: prompts segmented before are skipped; a box over an
object the model made before (a whole-image run, an earlier box) re-segments it, replacing
the model's own pixels under the box and keeping every pixel the annotator painted or
erased; other new objects take the next free ids (or the layer's selected label; a
multi-class model's keep their classes) on background pixels only. The run record on the layer
(``metadata["medsegdiff"]``) lists every prompt segmented so far, for the corrections
manifest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ._export import RUN_KEY, run_record
from ._layer_axes import LayerAxes
from ._result_layers import SegmentationRun, add_result_layers

if TYPE_CHECKING:
    import napari

    from medsegdiff_training.prompted import PromptedSegmentation


def existing_segmentation(viewer: napari.Viewer, image_layer: Any, axes: LayerAxes) -> Any | None:
    """The newest Labels layer the widget made for ``image_layer`` that still fits it."""
    from napari.layers import Labels

    for layer in reversed(list(viewer.layers)):
        if (
            isinstance(layer, Labels)
            and run_record(layer).get("image_layer") == image_layer.name
            and tuple(np.shape(layer.data)) == tuple(axes.labels_shape)
        ):
            return layer
    return None


def prompt_key(prompt: Any, slice_index: int) -> dict[str, Any]:
    """A prompt as plain values: ``{"slice": i, "box": [x0, y0, x1, y1]}`` or ``{..., "point": [x, y]}``."""
    from medsegdiff_training.prompts import Point

    if isinstance(prompt, Point):
        return {"slice": slice_index, "point": [round(prompt.x, 2), round(prompt.y, 2)]}
    return {"slice": slice_index, "box": [round(v, 2) for v in prompt.to_list()]}


def pending_prompts(labels_layer: Any | None, prompts: list[Any], slice_index: int) -> list[Any]:
    """The prompts ``labels_layer`` does not hold an object for yet (all of them without a layer)."""
    if labels_layer is None:
        return list(prompts)
    done = run_record(labels_layer).get("prompts", [])
    return [p for p in prompts if prompt_key(p, slice_index) not in done]


def pending_prompts_for(
    viewer: napari.Viewer, image_layer: Any, axes: LayerAxes, prompts: list[Any], slice_index: int
) -> tuple[list[Any], tuple[float, float] | None]:
    """(prompts not yet segmented into the image's segmentation layer, the last box size there)."""
    layer = existing_segmentation(viewer, image_layer, axes)
    return pending_prompts(layer, prompts, slice_index), last_box_size(layer)


def last_box_size(labels_layer: Any | None) -> tuple[float, float] | None:
    """(height, width) of the last box segmented into ``labels_layer``, for point prompts."""
    boxes = run_record(labels_layer).get("boxes", []) if labels_layer is not None else []
    if not boxes:
        return None
    x0, y0, x1, y1 = boxes[-1]["box"]
    return (y1 - y0, x1 - x0)


@dataclass
class PromptedOutcome:
    """What a prompted run did to the segmentation layer, for the status line."""

    new: int = 0  # objects added on background pixels
    resegmented: int = 0  # objects under a box re-segmented (the model's own pixels replaced)
    kept_painted: int = 0  # boxes whose pixels the annotator had painted: left as they were
    without_record: bool = False  # the layer lost the model's prediction: nothing could be replaced

    def describe(self, prompts: int) -> str:
        said = [f"{self.new} new object(s) of {prompts} prompt(s)"]
        if self.resegmented:
            said.insert(0, f"{self.resegmented} object(s) re-segmented (your painted pixels kept)")
        if self.kept_painted:
            said.append(f"{self.kept_painted} box(es) over pixels you painted left as they were")
        if self.without_record:
            said.append(
                "objects already under a box were kept: the layer no longer records the model's own "
                "prediction, so painted and predicted pixels cannot be told apart"
            )
        return "; ".join(said)


def _box_region(box: Any, shape: tuple[int, ...]) -> tuple[slice, slice]:
    """The (rows, columns) of the pixels whose centres lie inside ``box`` (core pixel coordinates)."""
    height, width = shape[-2:]
    rows = slice(max(int(np.ceil(box.y0 - 0.5)), 0), min(int(np.ceil(box.y1 - 0.5)), height))
    columns = slice(max(int(np.ceil(box.x0 - 0.5)), 0), min(int(np.ceil(box.x1 - 0.5)), width))
    return rows, columns


def _paste_objects(
    plane: np.ndarray,
    predicted: np.ndarray | None,
    shifted: np.ndarray,
    new_objects: np.ndarray,
    boxes: list[Any],
    keep_ids: bool,
) -> PromptedOutcome:
    """Paste a prompted run's objects into one plane (and its prediction), in place.

    Background pixels are free. Under each box, pixels the model made before (where the plane
    still equals the prediction) are taken back first, so a box over an existing object
    re-segments it; pixels the annotator painted or erased (plane != prediction) are never
    touched. ``keep_ids``: a re-segmented object keeps the id it had under its box.
    Without a prediction (``None``) only background pixels are taken.
    """
    outcome = PromptedOutcome()
    for index, box in enumerate(boxes, start=1):
        mine = new_objects == index
        if not mine.any():
            continue
        rows, columns = _box_region(box, plane.shape)
        under = np.zeros(plane.shape, bool)
        under[rows, columns] = True
        if predicted is None:
            outcome.without_record |= bool((under & (plane > 0)).any())
            model_made, painted = np.zeros_like(under), np.zeros_like(under)
        else:
            model_made, painted = under & (plane > 0) & (plane == predicted), under & (plane != predicted)
        if model_made.any():
            old_ids = plane[model_made]
            value = np.bincount(old_ids.astype(np.int64)).argmax() if keep_ids else None
            plane[model_made] = 0
            predicted[model_made] = 0  # type: ignore[index]
            outcome.resegmented += 1
        else:
            value = None
        free = mine & (plane == 0) & ((predicted == 0) if predicted is not None else True)
        if not free.any() and (mine & painted).any():
            outcome.kept_painted += 1
            continue
        plane[free] = shifted[free] if value is None else value
        if predicted is not None:
            predicted[free] = plane[free]
        outcome.new += value is None and bool(free.any()) and not model_made.any()
    return outcome


def add_prompted_objects(
    viewer: napari.Viewer,
    run: SegmentationRun,
    result: PromptedSegmentation,
    prompts: list[Any],
    same_label: bool = False,
) -> tuple[Any, PromptedOutcome]:
    """Put a prompted run's objects into the image's segmentation layer: (layer, what was done).

    A box over an object the model segmented before (a whole-image run, an earlier box)
    re-segments it: the model's own pixels under the box are replaced, the annotator's painted
    ones kept. Elsewhere new objects only take background pixels.
    """
    from medsegdiff_training.prompt_records import box_record

    slice_index = run.slices[0]
    layer = existing_segmentation(viewer, run.image_layer, run.axes)
    new_objects = result.labels
    found = len(np.unique(new_objects[new_objects > 0]))
    keys = [prompt_key(p, slice_index) for p in prompts]
    boxes = [box_record(box, slice_index) for box in result.boxes]  # the store's one format
    if layer is None:
        return _first_prompted_layer(viewer, run, result, keys, boxes, same_label), PromptedOutcome(new=found)
    data = np.asarray(layer.data)
    target = run.axes.slice_position(slice_index)
    if same_label:
        shifted = np.where(new_objects > 0, int(layer.selected_label), 0)
    elif result.label_meaning == "classes":  # a multi-class model's labels are classes: kept as they are
        shifted = new_objects
    else:  # object ids: the next free ones
        shifted = np.where(new_objects > 0, new_objects + int(data.max()), 0)
    data = _widen(data, int(shifted.max()))
    record = dict(run_record(layer))
    prediction = record.get("prediction")
    if prediction is not None and np.shape(prediction) == data.shape:
        prediction = _widen(np.asarray(prediction), int(data.max()))
        predicted_plane = prediction[target]
    else:
        prediction, predicted_plane = None, None
    objects = new_objects if result.label_meaning == "objects" else _object_index(new_objects, result)
    keep_ids = not same_label and result.label_meaning == "objects"
    outcome = _paste_objects(data[target], predicted_plane, shifted, objects, result.boxes, keep_ids)
    layer.data = data
    if prediction is not None:
        record["prediction"] = prediction
    record["prompts"] = [*record.get("prompts", []), *keys]
    record["boxes"] = [*record.get("boxes", []), *boxes]
    record["crop_rule"] = result.crop_rule.to_dict()
    record["labels"] = result.label_meaning
    layer.metadata = {**layer.metadata, RUN_KEY: record}
    return layer, outcome


def _first_prompted_layer(
    viewer: napari.Viewer,
    run: SegmentationRun,
    result: PromptedSegmentation,
    keys: list[dict[str, Any]],
    boxes: list[dict[str, Any]],
    same_label: bool,
) -> Any:
    """The image's first segmentation layer, made by a prompted run; its record lists the prompts."""
    if same_label:
        result.labels = (result.labels > 0).astype(np.int32)
    layer = add_result_layers(viewer, run, [result])
    layer.metadata[RUN_KEY].update(
        prompts=keys, boxes=boxes, crop_rule=result.crop_rule.to_dict(), labels=result.label_meaning
    )
    return layer


def _object_index(labels: np.ndarray, result: PromptedSegmentation) -> np.ndarray:
    """A multi-class run's pixels numbered by the box they came from (its labels are classes)."""
    index = np.zeros(labels.shape, np.int32)
    for number, window in enumerate(result.windows, start=1):
        region = (slice(max(window.top, 0), window.bottom), slice(max(window.left, 0), window.right))
        inside = np.zeros(labels.shape, bool)
        inside[region] = True
        index[inside & (labels > 0) & (index == 0)] = number
    return index


def add_propagated_object(
    viewer: napari.Viewer, run: SegmentationRun, masks: dict[int, np.ndarray], same_label: bool = False
) -> tuple[Any, int]:
    """Put a propagated object (slice -> mask) into the volume's segmentation layer: (layer, slices)."""
    axes = run.axes
    volume = np.zeros(axes.labels_shape, dtype=np.int32)
    for index, mask in masks.items():
        volume[axes.slice_position(index)] = mask
    layer = existing_segmentation(viewer, run.image_layer, axes)
    if layer is None:
        layer = viewer.add_labels(
            np.zeros(axes.labels_shape, np.uint8),
            name=f"{run.image_layer.name} segmentation",
            opacity=0.5,
            metadata={RUN_KEY: run.record()},
            **run.placement.layer_kwargs(),
        )
    data = np.asarray(layer.data)
    new_id = int(layer.selected_label) if same_label else int(data.max()) + 1
    data = _widen(data, new_id)
    free = (data == 0) & (volume > 0)
    data[free] = new_id
    layer.data = data
    record = dict(run_record(layer))
    prediction = record.get("prediction")
    if prediction is None or np.shape(prediction) != data.shape:
        prediction = np.zeros_like(data)
    prediction = _widen(np.asarray(prediction), new_id)
    prediction[free] = new_id
    record["prediction"] = prediction
    record["propagated"] = [
        *record.get("propagated", []),
        sorted(int(i) for i, m in masks.items() if m.any()),
    ]
    layer.metadata = {**layer.metadata, RUN_KEY: record}
    return layer, sum(1 for m in masks.values() if m.any())


def _widen(labels: np.ndarray, top: int) -> np.ndarray:
    """A copy of ``labels`` in a type that holds ``top``."""
    if np.issubdtype(labels.dtype, np.integer) and top <= np.iinfo(labels.dtype).max:
        return labels.copy()
    return labels.astype(np.uint16 if top < 2**16 else np.uint32)
