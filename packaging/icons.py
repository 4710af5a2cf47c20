"""Render the app icon from its SVG source into every format an installer needs.

    python packaging/icons.py

``assets/icons/localchat.svg`` is the source (our own artwork). This writes,
beside it, ``localchat-N.png`` at the sizes Linux desktops look up (hicolor
theme), ``localchat.ico`` (Windows: 16-256 px in one file) and
``localchat.icns`` (macOS: 16-1024 px), and ``localchat/assets/icon.png``, the
window's icon at run time (package data). Qt renders the SVG; Pillow writes the
ICO and ICNS containers (``pip install -e ".[package]"``). The outputs are
committed, so building the app never needs this step.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "assets" / "icons" / "localchat.svg"
PNG_SIZES = (16, 22, 24, 32, 48, 64, 128, 256, 512)
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)
ICNS_SIZES = (16, 32, 64, 128, 256, 512, 1024)
WINDOW_ICON = ROOT / "localchat" / "assets" / "icon.png"


def render(size: int) -> bytes:
    """The SVG drawn at ``size`` x ``size`` pixels, as PNG bytes."""
    from PySide6.QtCore import QBuffer, QByteArray, QIODevice, Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    _app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    renderer = QSvgRenderer(str(SOURCE))
    if not renderer.isValid():
        raise SystemExit(f"error: {SOURCE} is not a valid SVG")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
    renderer.render(painter)
    painter.end()
    data = QByteArray()
    buffer = QBuffer(data)
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    image.save(buffer, "PNG")
    buffer.close()
    return bytes(data.data())


def main() -> int:
    from PIL import Image

    out = SOURCE.parent
    rendered = {n: render(n) for n in sorted({*PNG_SIZES, *ICO_SIZES, *ICNS_SIZES})}
    images = {n: Image.open(io.BytesIO(data)).convert("RGBA") for n, data in rendered.items()}
    for n in PNG_SIZES:
        (out / f"localchat-{n}.png").write_bytes(rendered[n])
    WINDOW_ICON.write_bytes(rendered[256])
    # Each size drawn from the vector, not scaled down from the largest.
    largest = images[max(ICO_SIZES)]
    largest.save(
        out / "localchat.ico",
        format="ICO",
        sizes=[(n, n) for n in ICO_SIZES],
        append_images=[images[n] for n in ICO_SIZES if n != max(ICO_SIZES)],
    )
    images[max(ICNS_SIZES)].save(
        out / "localchat.icns",
        format="ICNS",
        append_images=[images[n] for n in ICNS_SIZES if n != max(ICNS_SIZES)],
    )
    for path in sorted(out.iterdir()):
        print(f"{path.relative_to(ROOT)}  {path.stat().st_size:,} bytes")
    print(f"{WINDOW_ICON.relative_to(ROOT)}  {WINDOW_ICON.stat().st_size:,} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
