"""``python -m napari_medsegdiff``: napari with a sample image and the MedSegDiff widget docked.

This is what the README's Quick start runs. ``--screenshot PATH`` saves a picture of the
window, with the widget's model and device pickers filled in, and quits instead of starting
the event loop (handy on a headless machine under ``xvfb-run``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import napari
    from qtpy.QtWidgets import QWidget

PLUGIN_NAME = "napari-medsegdiff"
WIDGET_NAME = "MedSegDiff"


def sample_keys() -> list[str]:
    """Keys of the sample images this plugin contributes, in manifest order."""
    from npe2 import PluginManager

    manager = PluginManager.instance()
    manager.discover()
    manifest = manager.get_manifest(PLUGIN_NAME)
    return [sample.key for sample in (manifest.contributions.sample_data or [])]


def open_quickstart(viewer: napari.Viewer, *, sample: bool = True) -> QWidget:
    """Open the plugin's first sample image (if any) in ``viewer`` and dock the widget."""
    keys = sample_keys() if sample else []
    if keys:
        viewer.open_sample(PLUGIN_NAME, keys[0])
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN_NAME, WIDGET_NAME)
    return widget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m napari_medsegdiff", description=__doc__.splitlines()[0])
    parser.add_argument("--no-sample", action="store_true", help="start without the sample image")
    parser.add_argument("--screenshot", metavar="PATH", help="save a screenshot of the window and quit")
    args = parser.parse_args(argv)

    import napari

    viewer = napari.Viewer(title="napari — MedSegDiff")
    widget = open_quickstart(viewer, sample=not args.no_sample)
    if args.screenshot:
        from qtpy.QtWidgets import QApplication

        widget.ensure_choices()  # the pickers show the registry, not "reading the model registry…"
        QApplication.processEvents()  # lay out the docked widget before the picture
        viewer.reset_view()  # the whole sample in the canvas the dock left
        QApplication.processEvents()
        viewer.screenshot(path=args.screenshot, canvas_only=False)
        print(
            f"saved {args.screenshot} (model: {widget.model_box.currentText()}, "
            f"device: {widget.advanced.device.value})"
        )
        viewer.close()
        return 0
    napari.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
