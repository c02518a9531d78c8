"""A small plot for the queue widget: is the model getting better as the annotator goes?

Two series against the number of accepted corrections: the fraction of pixels the
annotator changed on each accepted image (dots, orange), and each fine-tuned version's
held-out Dice on the accepted corrections (squares, blue; its parent's as a hollow
square). Painted with QPainter: no plotting library needed.
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

CHANGED_COLOUR, DICE_COLOUR = QColor(230, 120, 40), QColor(40, 160, 220)


class TrendPlot(QWidget):
    """Fraction of pixels changed per accepted image and held-out Dice per fine-tune."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.changed: list[tuple[int, float]] = []  # (accepted count, fraction changed)
        self.dice: list[tuple[int, float | None, float | None]] = []  # (count, parent's, child's)
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Orange dots: fraction of pixels you changed on each accepted image (lower is better).\n"
            "Blue squares: each fine-tuned version's Dice on held-out corrections (hollow: its parent's)."
        )

    def add_changed(self, accepted: int, fraction: float) -> None:
        self.changed.append((accepted, float(fraction)))
        self.update()

    def add_finetune(self, accepted: int, before: float | None, after: float | None) -> None:
        self.dice.append((accepted, before, after))
        self.update()

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(34, 8, -8, -18)
        painter.setPen(QPen(self.palette().text().color()))
        painter.drawRect(area)
        painter.drawText(QPointF(2, area.top() + 10), "1.0")
        painter.drawText(QPointF(2, area.bottom()), "0")
        count = max([c for c, _ in self.changed] + [c for c, _, _ in self.dice] + [1])
        painter.drawText(QPointF(area.right() - 60, area.bottom() + 15), f"{count} accepted")
        peak = max([f for _, f in self.changed] + [0.01])

        def at(accepted: int, value: float, top: float) -> QPointF:
            x = area.left() + area.width() * accepted / max(count, 1)
            return QPointF(x, area.bottom() - area.height() * min(value / top, 1.0))

        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(CHANGED_COLOUR)
        for accepted, fraction in self.changed:
            painter.drawEllipse(at(accepted, fraction, peak), 2.5, 2.5)
        if self.changed:
            painter.setPen(QPen(CHANGED_COLOUR))
            painter.drawText(QPointF(area.left() + 4, area.top() + 12), f"changed (max {100 * peak:.1f}%)")
        for accepted, before, after in self.dice:
            if before is not None:
                painter.setPen(QPen(DICE_COLOUR, 1.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(QRectF(at(accepted, before, 1.0) - QPointF(3, 3), QRectF(0, 0, 6, 6).size()))
            if after is not None:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(DICE_COLOUR)
                painter.drawRect(QRectF(at(accepted, after, 1.0) - QPointF(3, 3), QRectF(0, 0, 6, 6).size()))
        if self.dice:
            painter.setPen(QPen(DICE_COLOUR))
            painter.drawText(QPointF(area.left() + 4, area.top() + 26), "held-out Dice")
        painter.end()
