"""The image view: zoom, pan, mask overlay, and the gestures that make prompts.

Scene coordinates are original-image pixels (the photo's pixmap sits at the
origin at scale 1), so a position in the scene *is* a prompt coordinate:
x = column, y = row of the EXIF-oriented image.

Gestures (prompt tool): left click = object point, right click = background
point, left drag = box. Brush and eraser tools paint strokes. Wheel zooms
under the cursor, middle drag pans. The canvas only reports gestures as
signals; it never talks to the model.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPainterPath, QPen, QPixmap, QTransform
from PySide6.QtWidgets import (
    QApplication,
    QGraphicsEllipseItem,
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPixmapItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
)

from persam_studio.core.io.album import Stroke
from persam_studio.core.types import Box, Point
from persam_studio.gui.convert import MAX_PATH_POINTS, indexed_qimage, outline_path, overlay_colors, overlay_index

PROMPT, BRUSH, ERASER = "prompt", "brush", "eraser"
MIN_ZOOM, MAX_ZOOM = 0.01, 32.0
MASK_COLOR = QColor(30, 144, 255)  # the overlay's blue
OUTLINE_COLOR = QColor(255, 255, 255)
OBJECT_COLOR, BACKGROUND_COLOR = QColor(40, 200, 80), QColor(230, 50, 50)


class Canvas(QGraphicsView):
    """Shows one image with its mask; emits prompt and stroke gestures."""

    point_clicked = Signal(object)  # Point
    box_drawn = Signal(object)  # Box
    stroke_drawn = Signal(object)  # Stroke
    zoom_changed = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setBackgroundBrush(QColor(40, 40, 44))
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        self.setMouseTracking(True)
        self.setAcceptDrops(False)  # drops go to the window
        self.viewport().setAcceptDrops(False)
        self.tool = PROMPT
        self.brush_px = 24.0  # brush diameter on screen
        self.image_size: tuple[int, int] | None = None  # (H, W)
        self._fit_mode = True
        self._press: QPointF | None = None  # scene pos of a left press
        self._press_view = None
        self._dragging = False
        self._pan_from = None
        self._stroke: list[tuple[float, float]] = []

        scene = self.scene()
        self._image_item = QGraphicsPixmapItem()
        self._image_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # Smooth-scaling a 12 MP pixmap costs ~200 ms a paint: render it once per
        # zoom and reuse that while only the overlay changes (a click's repaint).
        self._image_item.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)
        self._preview_item = QGraphicsPixmapItem(self._image_item)  # the object on a new background
        self._preview_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        # The mask's fill, and its outline when too ragged for a path, as one
        # image at the view's resolution (see _build_overlay).
        self._overlay_item = QGraphicsPixmapItem()
        self._overlay_item.setTransformationMode(Qt.TransformationMode.SmoothTransformation)
        self._overlay: QImage | None = None
        self._overlay_scale = 0.0  # overlay pixels per display-mask pixel
        self._raster_outline = False
        self._opacity = 0.5
        self._outline_visible = True
        self._outline_item = QGraphicsPathItem()
        pen = QPen(OUTLINE_COLOR, 1.5)
        pen.setCosmetic(True)
        self._outline_item.setPen(pen)
        self._box_item = QGraphicsRectItem()
        box_pen = QPen(QColor(255, 210, 0), 2, Qt.PenStyle.DashLine)
        box_pen.setCosmetic(True)
        self._box_item.setPen(box_pen)
        self._stroke_item = QGraphicsPathItem()
        self._cursor_item = QGraphicsEllipseItem()
        cursor_pen = QPen(QColor(255, 255, 255), 1)
        cursor_pen.setCosmetic(True)
        self._cursor_item.setPen(cursor_pen)
        for z, item in enumerate(
            [self._image_item, self._overlay_item, self._outline_item, self._box_item, self._stroke_item, self._cursor_item]
        ):
            item.setZValue(z)
            scene.addItem(item)
        self._markers: list[QGraphicsEllipseItem] = []
        self._marked: tuple[Point, ...] = ()  # the points self._markers show
        self._box_item.hide()
        self._cursor_item.hide()

    # -- content -------------------------------------------------------------

    def set_image(self, image: QImage | None) -> None:
        """Show ``image`` (full size; scene = its pixels) and fit it in view."""
        self.set_mask(None)
        self.set_preview(None)
        self.set_prompts((), None)
        if image is None or image.isNull():
            self._image_item.setPixmap(QPixmap())
            self.image_size = None
            self.scene().setSceneRect(QRectF())
            return
        self._image_item.setPixmap(QPixmap.fromImage(image))
        self.image_size = (image.height(), image.width())
        self.scene().setSceneRect(QRectF(0, 0, image.width(), image.height()))
        self.fit()

    def set_mask(self, mask: np.ndarray | None) -> None:
        """Overlay ``mask`` (bool (h, w), any size: stretched over the image)."""
        self.current_mask = None if mask is None or self.image_size is None else mask
        if self.current_mask is None:
            self._overlay = None
            self._overlay_item.setPixmap(QPixmap())
            self._outline_item.setPath(QPainterPath())
            return
        h, w = mask.shape
        path = outline_path(mask, self.image_size[1] / w, self.image_size[0] / h, MAX_PATH_POINTS)
        self._outline_item.setPath(QPainterPath() if path is None else path)
        self._raster_outline = path is None
        self._build_overlay()

    def _view_scale(self) -> float:
        """Device pixels per display-mask pixel at the current zoom, at most 1."""
        return min(1.0, self.zoom * self.image_size[1] / self.current_mask.shape[1])

    def _build_overlay(self) -> None:
        """The overlay image of ``current_mask`` at the view's resolution.

        A click's answer is shown by one small image instead of two of the
        display mask's size (fill and outline) scaled at every repaint: on a
        12 MP photo in a laptop window that is ~0.3 of the pixels to convert
        and to draw. Zooming in rebuilds it, up to the display mask's own size.
        """
        self._overlay_scale = self._view_scale()
        index = overlay_index(self.current_mask, self._overlay_scale, self._raster_outline)
        self._overlay = indexed_qimage(index, self._colors())
        self._overlay_item.setPixmap(QPixmap.fromImage(self._overlay))
        self._overlay_item.setTransform(QTransform.fromScale(self.image_size[1] / index.shape[1],
                                                             self.image_size[0] / index.shape[0]))

    def _colors(self) -> list[int]:
        return overlay_colors(MASK_COLOR, self._opacity, OUTLINE_COLOR if self._outline_visible else None)

    def _recolor(self) -> None:
        if self._overlay is not None:
            self._overlay.setColorTable(self._colors())
            self._overlay_item.setPixmap(QPixmap.fromImage(self._overlay))

    def _zoomed(self) -> None:
        """After a zoom: rebuild the overlay when its resolution is off the view's by > 10 %."""
        if self.current_mask is not None and self.image_size is not None:
            if abs(self._view_scale() - self._overlay_scale) > 0.1 * self._overlay_scale:
                self._build_overlay()
        self.zoom_changed.emit(self.zoom)

    current_mask: np.ndarray | None = None
    preview_image: QImage | None = None

    def set_preview(self, image: QImage | None) -> None:
        """Show ``image`` (RGB, any size: stretched over the photo) instead of the photo and
        its blue overlay (a background preview), or the photo again (None)."""
        self.preview_image = None if image is None or self.image_size is None else image
        self._overlay_item.setVisible(self.preview_image is None)
        if self.preview_image is None:
            self._preview_item.setPixmap(QPixmap())
            return
        self._preview_item.setPixmap(QPixmap.fromImage(image))
        self._preview_item.setTransform(QTransform.fromScale(self.image_size[1] / image.width(),
                                                             self.image_size[0] / image.height()))

    def set_prompts(self, points: tuple[Point, ...], box: Box | None) -> None:
        """Draw the click markers and the box of the current prompts."""
        # Markers already drawn for the same leading points stay: a click adds
        # one item instead of rebuilding all of them (50 points: ~1 ms a click).
        keep = 0
        while keep < min(len(points), len(self._markers)) and self._marked[keep] == points[keep]:
            keep += 1
        for m in self._markers[keep:]:
            self.scene().removeItem(m)
        del self._markers[keep:]
        self._marked = tuple(points[:keep])
        for p in points[keep:]:
            item = QGraphicsEllipseItem(-5, -5, 10, 10)
            item.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations)
            item.setBrush(QBrush(OBJECT_COLOR if p.label == 1 else BACKGROUND_COLOR))
            item.setPen(QPen(QColor(255, 255, 255), 1.5))
            item.setPos(p.x, p.y)
            item.setZValue(10)
            self.scene().addItem(item)
            self._markers.append(item)
        self._marked = tuple(points)
        if box is None:
            self._box_item.hide()
        else:
            self._box_item.setRect(QRectF(QPointF(box.x0, box.y0), QPointF(box.x1, box.y1)))
            self._box_item.show()

    def set_opacity(self, opacity: float) -> None:
        """Opacity of the mask's fill, 0..1 (the outline stays opaque)."""
        self._opacity = max(0.0, min(1.0, opacity))
        self._recolor()

    def set_outline(self, visible: bool) -> None:
        self._outline_visible = visible
        self._outline_item.setVisible(visible)
        self._recolor()

    def set_tool(self, tool: str) -> None:
        self.tool = tool
        self._cursor_item.setVisible(False)
        self.viewport().setCursor(Qt.CursorShape.CrossCursor if tool == PROMPT else Qt.CursorShape.BlankCursor)

    # -- zoom ----------------------------------------------------------------------

    @property
    def zoom(self) -> float:
        return float(self.transform().m11())

    def fit(self) -> None:
        self._fit_mode = True
        if self.image_size is not None:
            self.fitInView(self._image_item, Qt.AspectRatioMode.KeepAspectRatio)
        self._zoomed()

    def zoom_100(self) -> None:
        self._fit_mode = False
        self.setTransform(QTransform())
        self._zoomed()

    def zoom_by(self, factor: float) -> None:
        target = max(MIN_ZOOM, min(MAX_ZOOM, self.zoom * factor))
        self._fit_mode = False
        self.scale(target / self.zoom, target / self.zoom)
        self._zoomed()

    def view_point(self, x: float, y: float):
        """Viewport position (QPoint) of image pixel (x, y) (tests, tools)."""
        return self.mapFromScene(QPointF(x, y))

    # -- events ----------------------------------------------------------------------

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_mode:
            self.fit()

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(1.25**steps)
        event.accept()

    def mousePressEvent(self, event) -> None:
        pos = self.mapToScene(event.position().toPoint())
        button = event.button()
        if button == Qt.MouseButton.MiddleButton:
            self._pan_from = (event.position(), self.horizontalScrollBar().value(), self.verticalScrollBar().value())
        elif self.image_size is None:
            pass
        elif button == Qt.MouseButton.LeftButton and self.tool != PROMPT:
            self._stroke = [(pos.x(), pos.y())]
            self._update_stroke_preview()
        elif button in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self._press, self._press_view, self._dragging = pos, event.position(), False
        event.accept()

    def mouseMoveEvent(self, event) -> None:
        pos = self.mapToScene(event.position().toPoint())
        self._move_cursor(pos)
        if self._pan_from is not None:
            start, hx, vy = self._pan_from
            delta = event.position() - start
            self.horizontalScrollBar().setValue(int(hx - delta.x()))
            self.verticalScrollBar().setValue(int(vy - delta.y()))
        elif self._stroke:
            self._stroke.append((pos.x(), pos.y()))
            self._update_stroke_preview()
        elif self._press is not None and event.buttons() & Qt.MouseButton.LeftButton:
            moved = (event.position() - self._press_view).manhattanLength()
            if self._dragging or moved >= QApplication.startDragDistance():
                self._dragging = True
                self._box_item.setRect(QRectF(self._press, pos).normalized())
                self._box_item.show()
        event.accept()

    def mouseReleaseEvent(self, event) -> None:
        pos = self.mapToScene(event.position().toPoint())
        button = event.button()
        if button == Qt.MouseButton.MiddleButton:
            self._pan_from = None
        elif self._stroke and button == Qt.MouseButton.LeftButton:
            self._stroke.append((pos.x(), pos.y()))
            self._finish_stroke()
        elif self._press is not None:
            press, dragging = self._press, self._dragging
            self._press, self._dragging = None, False
            if dragging and button == Qt.MouseButton.LeftButton:
                box = self._clamped_box(press, pos)
                if box is not None:
                    self.box_drawn.emit(box)
            elif self._inside(pos):
                label = 1 if button == Qt.MouseButton.LeftButton else 0
                self.point_clicked.emit(Point(float(pos.x()), float(pos.y()), label))
        event.accept()

    def drawForeground(self, painter: QPainter, rect: QRectF) -> None:
        if self.image_size is not None:
            return
        # An empty canvas says what to do instead of staying blank.
        painter.save()
        painter.resetTransform()
        painter.setPen(QColor(170, 170, 176))
        painter.drawText(self.viewport().rect(), Qt.AlignmentFlag.AlignCenter,
                         "Open a folder (Ctrl+O) or drop photos here")
        painter.restore()

    def contextMenuEvent(self, event) -> None:
        event.accept()  # right click is a background point, not a menu

    def leaveEvent(self, event) -> None:
        self._cursor_item.hide()
        super().leaveEvent(event)

    # -- helpers ------------------------------------------------------------------------

    @property
    def brush_radius(self) -> float:
        """Brush radius in image pixels (constant on screen across zoom)."""
        return max(0.5, self.brush_px / 2 / max(self.zoom, 1e-6))

    def _inside(self, pos: QPointF) -> bool:
        if self.image_size is None:
            return False
        h, w = self.image_size
        return 0 <= pos.x() < w and 0 <= pos.y() < h

    def _clamped_box(self, a: QPointF, b: QPointF) -> Box | None:
        h, w = self.image_size
        box = Box.from_corners(
            min(max(a.x(), 0), w - 1), min(max(a.y(), 0), h - 1),
            min(max(b.x(), 0), w - 1), min(max(b.y(), 0), h - 1),
        )
        self._box_item.hide()
        return box if box.x1 - box.x0 >= 1 and box.y1 - box.y0 >= 1 else None

    def _move_cursor(self, pos: QPointF) -> None:
        if self.tool == PROMPT or self.image_size is None:
            return
        r = self.brush_radius
        self._cursor_item.setRect(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))
        self._cursor_item.show()

    def _update_stroke_preview(self) -> None:
        path = QPainterPath(QPointF(*self._stroke[0]))
        for x, y in self._stroke[1:]:
            path.lineTo(QPointF(x, y))
        if len(self._stroke) == 1:
            path.lineTo(QPointF(self._stroke[0][0] + 0.01, self._stroke[0][1]))
        color = QColor(MASK_COLOR) if self.tool == BRUSH else QColor(255, 255, 255)
        color.setAlpha(140)
        pen = QPen(color, 2 * self.brush_radius, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        self._stroke_item.setPen(pen)
        self._stroke_item.setPath(path)

    def _finish_stroke(self) -> None:
        mode = "add" if self.tool == BRUSH else "erase"
        stroke = Stroke(mode, float(self.brush_radius), tuple(self._stroke))
        self._stroke = []
        self._stroke_item.setPath(QPainterPath())
        self.stroke_drawn.emit(stroke)
