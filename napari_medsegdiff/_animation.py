"""The live layer ``<image> x_t``: one frame per denoising step, all steps on a leading axis.

It grows by one frame per step while the sampler runs and keeps every step when it ends, so
napari's dims slider and play button replay the denoising. A volume shows the slice being
segmented, in its place; a new run on the same image reuses the previous animation's layer
(one layer fewer to build on the GUI thread). The step axis is named ``denoising step`` and
a volume's slice axis ``slice``, so the two sliders of a volume are told apart.

Frames are collected with :meth:`StepAnimation.add` (cheap) and drawn with
:meth:`StepAnimation.draw`, which the caller runs once per event-loop turn: frames that
arrive together are drawn once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ._layer_axes import LayerAxes
from ._placement import Placement
from ._sampling_glue import Frame

if TYPE_CHECKING:
    import napari

ANIMATION_KEY = "medsegdiff_animation"  # metadata flag of the layers this module makes
STEP_AXIS = "denoising step"


def axis_labels(image_layer: Any, axes: LayerAxes) -> tuple[str, ...]:
    """The animation's axis names: ``denoising step``, then the image's own names where it has
    them, else ``slice`` (a volume's slice axis), ``row`` and ``column``."""
    own = tuple(str(label) for label in image_layer.axis_labels)
    named = own != tuple(str(i) for i in range(-len(own), 0))  # napari's defaults: '-3', '-2', '-1'
    if axes.kind == "volume":
        defaults = ["row", "column"]
        defaults.insert(axes.slice_axis, "slice")
        return (STEP_AXIS, *(own if named else defaults))
    spatial = own[-2:] if named else ("row", "column")  # a channel stack's first axis is not shown
    return (STEP_AXIS, *spatial)


class StepAnimation:
    """Shows the frames of one run on ``image_layer`` (x_t, or the predicted x_0)."""

    def __init__(
        self,
        viewer: napari.Viewer,
        image_layer: Any,
        axes: LayerAxes,
        placement: Placement,
        show_x0: bool = False,
    ) -> None:
        self.viewer, self.axes, self.placement, self.show_x0 = viewer, axes, placement, show_x0
        self.name = f"{image_layer.name} {'x0' if show_x0 else 'x_t'}"
        self.labels = axis_labels(image_layer, axes)
        self.layer: Any = None
        self.frames: list[np.ndarray] = []
        self.slice_index: int | None = None
        self._last: Frame | None = None

    def show(self, frame: Frame) -> None:
        """Add ``frame`` to the stack and show it."""
        self.add(frame)
        self.draw()

    def add(self, frame: Frame) -> None:
        """Add ``frame`` to the stack (shown by the next :meth:`draw`)."""
        if frame.slice_index != self.slice_index:  # a volume's next slice starts a new animation
            self.frames, self.slice_index = [], frame.slice_index
        self.frames.append(frame.predicted_x0 if self.show_x0 else frame.x_t)
        self._last = frame

    def draw(self) -> None:
        """Show the stack as it is now (its newest frame on screen); nothing new: nothing done."""
        frame, self._last = self._last, None
        if frame is None:
            return
        stack = np.stack(self.frames)
        frame_shape = stack.shape[1:]
        volume = self.axes.kind == "volume"
        if volume:  # the slice in its place: a length-1 axis where the volume's slice axis is
            stack = np.expand_dims(stack, 1 + self.axes.slice_axis)
        image_shape, origin = self.axes.image_shape, (0.0, 0.0)
        if frame.window is not None:  # a prompted run: over the first prompt's crop
            top, left, bottom, right = frame.window
            image_shape, origin = (bottom - top, right - left), (float(top), float(left))
        placement = self.placement.for_frames(
            frame_shape, image_shape, frame.slice_index if volume else None, self.axes.slice_axis, origin
        )
        if self.layer is None or self.layer not in self.viewer.layers:
            self.layer = self._earlier_animation(stack.ndim)
            if self.layer is not None:  # the previous run's layer, with this run's frames and place
                self.layer.data = stack
                for name, value in placement.layer_kwargs().items():
                    setattr(self.layer, name, value)
            else:
                self.layer = self.viewer.add_image(
                    stack,
                    name=self.name,
                    colormap="inferno",
                    opacity=0.55,
                    blending="additive",
                    contrast_limits=(0.0, 1.0),
                    interpolation2d="linear",  # model-sized frames, smoothly stretched over the image
                    metadata={ANIMATION_KEY: True},
                    axis_labels=self.labels,
                    **placement.layer_kwargs(),
                )
        else:
            self.layer.data = stack
            self.layer.translate = placement.translate  # only a volume's slice position moves
        step_axis = self.viewer.dims.ndim - self.layer.ndim
        self.viewer.dims.set_current_step(step_axis, len(stack) - 1)

    def discard(self) -> None:
        """Remove the (half-made) animation."""
        if self.layer is not None and self.layer in self.viewer.layers:
            self.viewer.layers.remove(self.layer)
        self.layer = None

    def _earlier_animation(self, ndim: int) -> Any | None:
        """The animation layer an earlier run left for this image, if it fits (others go)."""
        found = None
        for layer in list(self.viewer.layers):
            if layer.name == self.name and layer.metadata.get(ANIMATION_KEY):
                if found is None and layer.ndim == ndim and tuple(layer.axis_labels) == self.labels:
                    found = layer
                else:
                    self.viewer.layers.remove(layer)
        return found
