"""Save a picture of the widget after a run on the ultrasound sample (for the README).

    xvfb-run -a -s "-screen 0 1600x1200x24" .venv/bin/python scripts/screenshot.py [--model default]

Opens napari, loads the ultrasound sample, docks the MedSegDiff widget, segments with the
chosen model and the widget's recommended fast setting, and saves the whole window to
``docs/images/widget-ultrasound.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="registry version (default: the selected one)")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/images/widget-ultrasound.png"
    )
    args = parser.parse_args()
    import napari
    from napari._qt import qt_main_window

    # napari 0.9 shows a PyQt5 deprecation toast over the canvas; keep it out of the picture.
    qt_main_window.SHOW_QT_WARNING = False

    viewer = napari.Viewer(title="napari — MedSegDiff")
    viewer.window.resize(1400, 900)
    viewer.open_sample("napari-medsegdiff", "ultrasound")
    _, widget = viewer.window.add_plugin_dock_widget("napari-medsegdiff", "MedSegDiff")
    if args.model:
        widget.refresh_models(select=args.model)
    segment_and_save(viewer, widget, args.out)


def segment_and_save(viewer, widget, out: Path) -> None:
    """Run the widget, wait for the run to end (and the layers to draw), save the window, close."""
    from qtpy.QtWidgets import QApplication

    widget.run()
    while widget.worker is not None:
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):
        QApplication.processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(path=str(out), canvas_only=False)
    print(f"saved {out}")
    viewer.close()


if __name__ == "__main__":
    main()
