"""Save a picture of the widget after a run on the ultrasound sample (for the README).

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/screenshot.py [--model default]

Opens napari at 1920x1080 with both MedSegDiff widgets docked (the segmentation widget and
the queue), loads the ultrasound sample, segments it with the chosen model and the
recommended settings, fits the view and saves the whole window to
``docs/images/widget-ultrasound.png``. The other README pictures (``prompts_screenshot.py``,
``dicom_screenshot.py``) open their viewers with :func:`open_viewer` too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

SCREEN = (1920, 1080)


def open_viewer():
    """napari at 1920x1080 with the segmentation and queue widgets docked: (viewer, widget)."""
    import napari
    from napari._qt import qt_main_window

    # napari 0.9 shows a PyQt5 deprecation toast over the canvas; keep it out of the picture.
    qt_main_window.SHOW_QT_WARNING = False
    viewer = napari.Viewer(title="napari — MedSegDiff")
    viewer.window._qt_window.resize(*SCREEN)
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff queue")
    widget.ensure_choices()
    return viewer, widget


def settle(seconds: float = 0.5) -> None:
    """Let the viewer lay out and draw."""
    from qtpy.QtWidgets import QApplication

    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        QApplication.processEvents()
        time.sleep(0.02)


def segment_and_save(viewer, widget, out: Path, before_saving=None) -> None:
    """Run the widget, wait for the run to end (and the layers to draw), fit the view, save, close."""
    widget.run()
    while widget.worker is not None:
        settle(0.05)
    if before_saving is not None:
        before_saving()
    viewer.reset_view()  # the whole image in the canvas the docks left
    settle()
    window = viewer.window._qt_window
    assert (window.width(), window.height()) == SCREEN, (window.width(), window.height())
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False)
    print(f"saved {out}: {widget.status.text()}")
    viewer.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="registry version (default: automatic)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images/widget-ultrasound.png"
    )
    args = parser.parse_args()
    viewer, widget = open_viewer()
    viewer.open_sample("napari-medsegdiff", "ultrasound")
    if args.model:
        widget.refresh_models(select=args.model)
    segment_and_save(viewer, widget, args.out)


if __name__ == "__main__":
    main()
