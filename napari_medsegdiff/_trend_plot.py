"""A small plot for the queue widget: is the model getting better as the annotator goes?

Two series against the number of accepted images (the x axis, labelled): the share of
pixels the annotator changed on each accepted image (orange dots joined by a line, left
axis in %), and each fine-tuned version's held-out Dice (blue squares, its parent's on the
same corrections as a hollow square, right axis 0-1). A legend names both; a single point
carries its value, so a lone dot still says something. Painted with QPainter: napari users
have no plotting library in common, and this needs none.
"""

from __future__ import annotations

from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen
from qtpy.QtWidgets import QSizePolicy, QWidget

CHANGED_COLOUR, DICE_COLOUR = QColor(230, 120, 40), QColor(40, 160, 220)
X_TITLE = "accepted images"
CHANGED_TITLE = "pixels changed (%)"
DICE_TITLE = "held-out Dice"


class TrendPlot(QWidget):
    """Share of pixels changed per accepted image and held-out Dice per fine-tune."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.changed: list[tuple[int, float]] = []  # (accepted count, fraction changed)
        self.dice: list[tuple[int, float | None, float | None]] = []  # (count, parent's, child's)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setToolTip(
            "Orange: share of the pixels you changed on each accepted image (lower is better).\n"
            "Blue squares: each fine-tuned version's Dice on its held-out corrections; hollow: its "
            "parent's Dice on the same corrections."
        )

    def add_changed(self, accepted: int, fraction: float) -> None:
        self.changed.append((accepted, float(fraction)))
        self.update()

    def add_finetune(self, accepted: int, before: float | None, after: float | None) -> None:
        self.dice.append((accepted, before, after))
        self.update()

    def peak_percent(self) -> float:
        """The top of the left axis, in %: the largest share changed, at least 1 %."""
        return max([100 * f for _, f in self.changed] + [1.0])

    def axis_texts(self) -> list[str]:
        """Every text the plot draws: titles, ticks, legend (what a reader sees, testable)."""
        count = max([c for c, _ in self.changed] + [c for c, _, _ in self.dice] + [1])
        texts = [
            X_TITLE,
            "0",
            str(count),
            CHANGED_TITLE,
            "0",
            f"{self.peak_percent():.1f}",
            DICE_TITLE,
            "1.0",
        ]
        if len(self.changed) == 1:
            texts.append(f"{100 * self.changed[0][1]:.1f} %")
        if len(self.dice) == 1 and self.dice[0][2] is not None:
            texts.append(f"{self.dice[0][2]:.3f}")
        if not self.changed and not self.dice:
            texts.append("nothing accepted yet")
        return texts

    def paintEvent(self, event: object) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        text = self.palette().text().color()
        area = QRectF(self.rect()).adjusted(36, 22, -34, -32)
        count = max([c for c, _ in self.changed] + [c for c, _, _ in self.dice] + [1])
        peak = self.peak_percent()
        self._axes(painter, area, text, count, peak)

        def at(accepted: int, value: float, top: float) -> QPointF:
            x = area.left() + area.width() * accepted / max(count, 1)
            return QPointF(x, area.bottom() - area.height() * min(value / top, 1.0))

        points = [at(accepted, 100 * fraction, peak) for accepted, fraction in self.changed]
        painter.setPen(QPen(CHANGED_COLOUR, 1.2))
        for start, end in zip(points, points[1:], strict=False):
            painter.drawLine(start, end)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(CHANGED_COLOUR)
        for point in points:
            painter.drawEllipse(point, 3.0, 3.0)
        if len(points) == 1:
            painter.setPen(QPen(CHANGED_COLOUR))
            painter.drawText(points[0] + QPointF(6, -4), f"{100 * self.changed[0][1]:.1f} %")
        for accepted, before, after in self.dice:
            if before is not None:
                painter.setPen(QPen(DICE_COLOUR, 1.5))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRect(QRectF(at(accepted, before, 1.0) - QPointF(4, 4), QRectF(0, 0, 8, 8).size()))
            if after is not None:
                painter.setPen(Qt.PenStyle.NoPen)
                painter.setBrush(DICE_COLOUR)
                painter.drawRect(QRectF(at(accepted, after, 1.0) - QPointF(4, 4), QRectF(0, 0, 8, 8).size()))
                if len(self.dice) == 1:
                    painter.setPen(QPen(DICE_COLOUR))
                    painter.drawText(at(accepted, after, 1.0) + QPointF(-44, -6), f"{after:.3f}")
        if not self.changed and not self.dice:
            painter.setPen(QPen(text))
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "nothing accepted yet")
        painter.end()

    def _axes(self, painter: QPainter, area: QRectF, text: QColor, count: int, peak: float) -> None:
        """Frame, ticks, axis titles and the legend."""
        painter.setPen(QPen(text))
        painter.drawRect(area)
        metrics = painter.fontMetrics()
        painter.drawText(QPointF(area.left(), area.bottom() + 14), "0")
        painter.drawText(
            QPointF(area.right() - metrics.horizontalAdvance(str(count)), area.bottom() + 14), str(count)
        )
        painter.drawText(
            QPointF(area.center().x() - metrics.horizontalAdvance(X_TITLE) / 2, area.bottom() + 28), X_TITLE
        )
        painter.setPen(QPen(CHANGED_COLOUR))  # left axis: % changed
        top = f"{peak:.1f}"
        painter.drawText(QPointF(area.left() - 4 - metrics.horizontalAdvance(top), area.top() + 10), top)
        painter.drawText(QPointF(area.left() - 4 - metrics.horizontalAdvance("0"), area.bottom()), "0")
        painter.drawText(QPointF(area.left(), area.top() - 6), CHANGED_TITLE)
        painter.setPen(QPen(DICE_COLOUR))  # right axis: Dice
        painter.drawText(QPointF(area.right() + 4, area.top() + 10), "1.0")
        painter.drawText(QPointF(area.right() + 4, area.bottom()), "0")
        title = DICE_TITLE
        painter.drawText(QPointF(area.right() - metrics.horizontalAdvance(title), area.top() - 6), title)
