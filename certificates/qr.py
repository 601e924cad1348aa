"""QR images of HC1 strings: zxing-cpp's writer at error-correction level Q, a 4-module quiet
zone, written as a 1-bit PNG.

An HC1 string of one dose (~520 characters) is a version-17 symbol (85 modules, 93 with the
quiet zone); at 6 pixels a module the PNG is 558 px square and about 2–3 KB, sharp on a phone
screen and on paper. Rows of a module repeat, so they are PNG-filtered "Up" (all zeros) and
compress to nothing. Renders are cached by content (an LRU of recent strings).
"""

from __future__ import annotations

import struct
import zlib
from functools import lru_cache

import zxingcpp
from PIL import Image

MODULE_PIXELS = 6
CACHE_SIZE = 1024


class QrError(Exception):
    """The text does not fit a QR code."""


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_1bit(modules: Image.Image, scale: int) -> bytes:
    """A 1-bit grayscale PNG of a black/white module image, each module `scale` pixels square."""
    width, height = modules.size
    rows = modules.resize((width * scale, height), Image.Resampling.NEAREST).convert(
        "1", dither=Image.Dither.NONE
    )
    stride = (width * scale + 7) // 8
    packed = rows.tobytes()
    repeat = b"\x02" + bytes(stride)  # filter "Up": the same row again
    parts = []
    for y in range(height):
        parts.append(b"\x00" + packed[y * stride : (y + 1) * stride])
        parts.extend([repeat] * (scale - 1))
    header = struct.pack(">IIBBBBB", width * scale, height * scale, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"".join(parts), 6))
        + _chunk(b"IEND", b"")
    )


def render_png_uncached(text: str, scale: int = MODULE_PIXELS) -> bytes:
    try:
        barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode, ec_level="Q")
    except Exception as exc:  # zxing raises ValueError/RuntimeError when the data does not fit
        raise QrError(str(exc)) from exc
    image = barcode.to_image(scale=1, add_quiet_zones=True)
    height, width = image.shape[:2]
    pixels = memoryview(image).tobytes()  # type: ignore[arg-type]  # zxing's Image is a buffer
    modules = Image.frombuffer("L", (width, height), pixels, "raw", "L", 0, 1)
    return _png_1bit(modules, scale)


@lru_cache(maxsize=CACHE_SIZE)
def render_png(text: str, scale: int = MODULE_PIXELS) -> bytes:
    """The QR PNG of `text`, from the cache when it was rendered recently."""
    return render_png_uncached(text, scale)
