"""Decode and preprocess images: the one definition shared by `patchscan scan` and the trainer.

Every image, whatever its mode, becomes 8-bit RGB, is resized to the model's input size with
bilinear interpolation (aspect ratio not kept: an edge patch of 50x38 is stretched to 50x50, as it
was in training), and is scaled to float32 in [0, 1] only when batched for the model.
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyspng
import simplejpeg
from PIL import Image, UnidentifiedImageError

from patchscan.errors import ImageError

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_HEADER_CHUNK = b"\x00\x00\x00\x0dIHDR"  # IHDR first, 13 bytes long
_SPNG_COLOURS = (0, 2, 6)  # PNG colour types grey, RGB and RGBA (not palette, not grey+alpha)
_JPEG_SIGNATURE = b"\xff\xd8\xff"
_JPEG_COLOURS = {"YCbCr": "RGB", "Gray": "GRAY"}  # JPEG colourspace → simplejpeg's output

# Refused before decoding: far above any patch or dermoscopy photo, far below what exhausts memory.
MAX_PIXELS = 64_000_000
Image.MAX_IMAGE_PIXELS = None  # our own check below runs first and gives a clearer reason


def load_rgb(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Return the image at `path` as a read-only uint8 array of shape (height, width, 3) at
    `size` (w, h).

    Raises ImageError with a short reason for anything that is not a whole, sane image.
    """
    try:
        with open(path, "rb") as handle:
            pixels = _decode_common(handle, size)
            if pixels is not None:
                return _fit(pixels, size)
            rgb = _decode(handle, size)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image PIL can read") from None
    # Truncated data, broken chunks, I/O errors; PIL's parsers also let struct.error, EOFError and
    # IndexError out of some broken headers.
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as exc:
        raise ImageError(_describe(exc)) from None
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return to_array(rgb)


def to_array(rgb: Image.Image) -> np.ndarray:
    """An RGB image's pixels as a read-only (height, width, 3) uint8 array of their own.

    np.asarray(rgb) gives the same bytes by a slower road (20 µs against 14 on a patch), and an
    array viewing a PIL image keeps the image's whole memory block alive.
    """
    return np.frombuffer(rgb.tobytes(), np.uint8).reshape(rgb.height, rgb.width, 3)


def _decode(handle: BinaryIO, size: tuple[int, int]) -> Image.Image:
    if handle.seek(0, os.SEEK_END) == 0:
        raise ImageError("empty file (0 bytes)")
    handle.seek(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL's own warnings (EXIF, palette) are not errors
        with Image.open(handle) as image:
            _refuse_bombs(image)
            image.draft("RGB", size)  # JPEG: decode at reduced scale when much larger
            image.load()
            return to_rgb(image)


def _decode_common(handle: BinaryIO, size: tuple[int, int]) -> np.ndarray | None:
    """Decode the common kinds with a library made for them: 8-bit RGB, RGBA and grey PNGs (every
    slide patch we have met) with libspng (pyspng), and baseline or progressive colour and grey
    JPEGs with libjpeg-turbo (simplejpeg), both from bytes in memory, without PIL's chunk and
    marker parsing in Python. The pixels are PIL's, bit for bit (tests/test_imaging.py compares
    them on every sample and on odd files).

    Anything else, too large, or anything odd about the file returns None: PIL's path (`_decode`)
    then decodes it, refuses it as a bomb, or says exactly what is wrong with it.
    """
    head = handle.read(len(_PNG_SIGNATURE))
    if head == _PNG_SIGNATURE:
        return _png_by_libspng(head + handle.read())
    if head.startswith(_JPEG_SIGNATURE):
        return _jpeg_by_libjpeg_turbo(head + handle.read(), size)
    return None  # a TIFF, BMP...: only its first bytes were read


def _png_by_libspng(data: bytes) -> np.ndarray | None:
    """An 8-bit grey, RGB or RGBA PNG's own pixels, (height, width) or (height, width, channels).

    The header is read here, before libspng allocates anything: a size over MAX_PIXELS is left to
    PIL's path, which refuses the bomb with its reason. libspng ignores tRNS, gAMA and the like
    here, as PIL's conversion to RGB does.
    """
    if data[8:16] != _PNG_HEADER_CHUNK or len(data) < 33:
        return None
    width, height, depth, colour = struct.unpack_from(">IIBB", data, 16)
    if depth != 8 or colour not in _SPNG_COLOURS or not 0 < width * height <= MAX_PIXELS:
        return None
    if not _png_chunks_intact(data):
        return None
    try:
        return pyspng.load(data)
    except RuntimeError:  # broken image data: PIL's path gives the reason
        return None


def _png_chunks_intact(data: bytes) -> bool:
    """Every chunk's checksum holds, up to IEND. pyspng sets libspng to check
    neither the chunks' CRCs nor the image data's Adler-32, so a damaged patch would give damaged
    pixels without a word; PIL's path says what is wrong instead. (2-4 µs on a patch.)"""
    view, position = memoryview(data), len(_PNG_SIGNATURE)
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        end = position + 8 + length  # where the chunk's CRC starts
        if end + 4 > len(data):
            return False
        if zlib.crc32(view[position + 4 : end]) != struct.unpack_from(">I", data, end)[0]:
            return False
        if data[position + 4 : position + 8] == b"IEND":
            return True  # bytes after it (some tools append data) are not PNG's: PIL skips them
        position = end + 4
    return False


def _jpeg_by_libjpeg_turbo(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """A YCbCr or grey JPEG's pixels, decoded at the reduced scale PIL's draft mode picks (the
    largest of 1/8, 1/4, 1/2 that keeps the image at least `size`): the same libjpeg-turbo,
    accurate DCT and smooth upsampling as PIL, so the same pixels.

    CMYK, YCCK and Adobe RGB JPEGs, and anything larger than MAX_PIXELS, are PIL's business.
    """
    try:
        height, width, colourspace, _ = simplejpeg.decode_jpeg_header(data)
        if colourspace not in _JPEG_COLOURS or not 0 < width * height <= MAX_PIXELS:
            return None
        scale = _draft_scale((width, height), size)
        wanted = (-(-height // scale), -(-width // scale))  # rounded up, as libjpeg does
        pixels = simplejpeg.decode_jpeg(
            data, _JPEG_COLOURS[colourspace], min_height=wanted[0], min_width=wanted[1]
        )
    except ValueError:  # broken or unsupported: PIL's path decodes it or gives the reason
        return None
    return pixels if pixels.shape[:2] == wanted else None


def _draft_scale(image_size: tuple[int, int], size: tuple[int, int]) -> int:
    """The reduction PIL's JPEG draft mode chooses for `image_size` shown at `size`."""
    fits = min(image_size[0] // size[0], image_size[1] // size[1])
    return next((scale for scale in (8, 4, 2) if fits >= scale), 1)


def _fit(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A decoded image's pixels as load_rgb gives them: RGB, at `size`, read-only. An RGB
    patch already at `size` (nearly every one) is kept as it is; anything else goes through
    PIL's own conversion and bilinear resize, so the pixels cannot drift from PIL's path."""
    if pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.shape[1::-1] == size:
        pixels.flags.writeable = False
        return pixels
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[..., 0]
    rgb = to_rgb(Image.fromarray(pixels))
    if rgb.size != size:
        rgb = rgb.resize(size, Image.Resampling.BILINEAR)
    return to_array(rgb)


def to_rgb(image: Image.Image) -> Image.Image:
    """Bring any PIL mode to 8-bit RGB: alpha composited on white, 16/32-bit scaled down."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _wide_to_rgb(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _wide_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit and float grey images: scale their full range to 0..255 (PIL would clip instead)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        top = max(float(values.max()), 1.0)
    elif image.mode.startswith("I;16") or values.max() > 255:
        top = 65535.0
    else:
        top = 255.0
    grey = np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _refuse_bombs(image: Image.Image) -> None:
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(
            f"image too large: {width}x{height} pixels, more than {MAX_PIXELS:,} "
            "(refused before decoding: possible decompression bomb)"
        )


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    if "truncated" in text:
        return "truncated image (file ends before the image data does)"
    return f"cannot decode image: {text}"


def to_model_input(batch: np.ndarray) -> np.ndarray:
    """uint8 (N, H, W, 3) → float32 in [0, 1], the scaling every bundled model expects."""
    return batch.astype(np.float32) * np.float32(1.0 / 255.0)
