"""Small Qt pieces of the queue widget: a picker that re-reads its choices, a row of widgets."""

from __future__ import annotations

from collections.abc import Callable

from qtpy.QtWidgets import QComboBox, QHBoxLayout, QWidget


class RereadingComboBox(QComboBox):
    """A picker that re-reads its choices each time it opens (JSON files only: no torch)."""

    def __init__(self, reread: Callable[[], None]) -> None:
        super().__init__()
        self._reread = reread

    def showPopup(self) -> None:  # noqa: N802 - Qt's name
        self._reread()
        super().showPopup()


def row(*widgets: QWidget, stretch_first: bool = False, stretch_after: bool = False) -> QHBoxLayout:
    """Widgets side by side (the first one, or space after the last, taking the spare width)."""
    layout = QHBoxLayout()
    for index, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if stretch_first and index == 0 else 0)
    if stretch_after:
        layout.addStretch(1)
    return layout
