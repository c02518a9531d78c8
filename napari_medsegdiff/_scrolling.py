"""A dock widget's content in a vertical scroll area, so that docking never grows the window.

napari stacks docked widgets on the right; each one's minimum height adds to the window's,
and two of ours made a 1920x1080 window 1233 px tall. Inside a scroll area a widget asks for
the height of its content but can make do with less (it scrolls then), so the window keeps
its size and the docks share the height.
"""

from __future__ import annotations

from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QVBoxLayout, QWidget


class _ContentArea(QScrollArea):
    """A scroll area that asks for its content's full height (a plain one asks for less)."""

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        content = self.widget()
        hint = content.sizeHint() if content is not None else super().sizeHint()
        return QSize(hint.width() + self.verticalScrollBar().sizeHint().width(), hint.height())


class _FollowContent(QObject):
    """Keeps a widget no taller than its content needs, so that napari gives the spare
    height of the dock area to the dock below it (a taller one would only show empty space)."""

    def __init__(self, widget: QWidget, content: QWidget) -> None:
        super().__init__(widget)
        self.widget, self.content = widget, content
        content.installEventFilter(self)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.LayoutRequest:
            self.widget.setMaximumHeight(self.content.sizeHint().height() + 8)
        return False


def scroll_content(widget: QWidget, fit_content: bool = False) -> QWidget:
    """Fill ``widget`` with a frameless vertical scroll area; returns the content widget to lay out.

    ``fit_content``: ``widget`` never grows taller than its content (it still shrinks and scrolls).
    """
    content = QWidget()
    area = _ContentArea()
    area.setWidgetResizable(True)
    area.setFrameShape(QFrame.Shape.NoFrame)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
    area.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(area)
    if fit_content:
        _FollowContent(widget, content)
    return content
