"""The README's prompts picture: three ultrasound samples side by side, three boxes, their objects.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/prompts_screenshot.py

Opens napari at 1920x1080 with both MedSegDiff widgets docked, the model picker at its
*automatic* entry (boxes: the shipped ``general``, as on a fresh install) and the recommended
settings, draws three boxes in a Shapes layer, presses Segment and saves the
window to ``docs/images/prompts-ultrasound.png``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from screenshot import open_viewer, segment_and_save  # scripts/ is on the path when run as a script

OUT = Path(__file__).resolve().parents[1] / "docs" / "images" / "prompts-ultrasound.png"
BOXES = [(79, 89, 223, 214), (300 + 34, 46, 300 + 268, 256), (600 + 60, 60, 600 + 240, 240)]  # x0, y0, x1, y1


def main() -> None:
    viewer, dock = open_viewer()
    samples = viewer.open_sample("napari-medsegdiff", "ultrasound_all")  # the plugin's public samples
    frame = np.concatenate([layer.data for layer in samples], axis=1)
    for layer in samples:
        viewer.layers.remove(layer)
    viewer.add_image(frame, name="frame")
    rectangles = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]]) - 0.5 for x0, y0, x1, y1 in BOXES]
    viewer.add_shapes(
        rectangles,
        shape_type="rectangle",
        name="frame prompts",
        edge_color="yellow",
        face_color="transparent",
        edge_width=2,
    )
    dock._refresh_layers()

    def tidy() -> None:
        viewer.layers["frame x_t"].visible = False
        viewer.layers["frame uncertainty"].visible = False
        viewer.layers.selection.active = viewer.layers["frame prompts"]

    segment_and_save(viewer, dock, OUT, before_saving=tidy)


if __name__ == "__main__":
    main()
