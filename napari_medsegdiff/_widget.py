"""Placeholder dock widget so that the manifest validates; the real widget replaces it."""

from __future__ import annotations

from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget


class SegmentWidget(QWidget):
    """The MedSegDiff dock widget (placeholder)."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("MedSegDiff — loading"))
