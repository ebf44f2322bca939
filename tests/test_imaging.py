from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyspng
import pytest
import simplejpeg
from PIL import Image

from patchscan.errors import ImageError
from patchscan.imaging import MAX_PIXELS, load_rgb, to_model_input, to_rgb


def test_every_awkward_file_gets_rgb_or_a_reason(bad_inputs: tuple[Path, dict]) -> None:
    folder, expected = bad_inputs
    for name, error in expected.items():
        path = folder / name
        if error is None:
            pixels = load_rgb(path, (50, 50))
            assert pixels.shape == (50, 50, 3) and pixels.dtype == np.uint8, name
        else:
            with pytest.raises(ImageError, match=error):
                load_rgb(path, (50, 50))


def test_sixteen_bit_is_scaled_to_eight_not_clipped(tmp_path: Path) -> None:
    """Each 16-bit value v becomes round(v / 65535 * 255): clipping would make most white.
    Every one of the 65536 values, so that a scale of 65536 (off by one) shows too."""
    ramp = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    pixels = load_rgb(tmp_path / "ramp.png", (256, 256))
    expected = np.floor(ramp / 65535 * 255 + 0.5).astype(np.uint8)
    for channel in range(3):
        assert (pixels[..., channel] == expected).all()


@pytest.mark.parametrize(
    ("values", "dtype", "expected"),
    [
        ([0, 1000, 30000, 65535], np.uint16, [0, 4, 117, 255]),  # I;16: of 65535
        ([0, 100, 200, 255], np.uint16, [0, 0, 1, 1]),  # I;16 of low values: still of 65535
        ([0, 1000, 30000, 65535], ">u2", [0, 4, 117, 255]),  # big-endian TIFF: I;16B
        ([0, 128, 255, 256], np.int32, [0, 0, 1, 1]),  # I above 255 anywhere: of 65535
        ([-30000, 0, 65535, 100000], np.int32, [0, 0, 255, 255]),  # I out of 16 bits: clipped
        ([0, 100, 200, 255], np.int32, [0, 100, 200, 255]),  # I holding 8-bit values: kept
        ([0, 1000, 30000, 65535], np.int32, [0, 4, 117, 255]),  # I holding 16-bit values
        ([0.0, 0.25, 0.5, 1.0], np.float32, [0, 64, 128, 255]),  # F in 0..1
        ([0.0, 0.5, 1.0, 2.0], np.float32, [0, 64, 128, 255]),  # F beyond 1: of its maximum
        ([0.0, 0.125, 0.25, 0.5], np.float32, [0, 32, 64, 128]),  # F below 1: not stretched
    ],
)
def test_wide_grey_images_are_scaled_to_eight_bits(
    tmp_path: Path, values: list[float], dtype: type | str, expected: list[int]
) -> None:
    path = tmp_path / "wide.tif"
    Image.fromarray(np.array([values], dtype=dtype)).save(path)
    pixels = load_rgb(path, (4, 1))
    assert pixels[0].tolist() == [[v, v, v] for v in expected]


def test_little_endian_sixteen_bit_is_scaled_too() -> None:
    """I;16L, which no file opens as here (a little-endian TIFF is I;16), but PIL can make."""
    from patchscan.imaging import to_rgb

    values = np.array([0, 1000, 30000, 65535], dtype="<u2")
    image = Image.frombytes("I;16L", (4, 1), values.tobytes())
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 4, 117, 255]


def test_a_palette_with_alpha_is_composited_on_white() -> None:
    """PA, which PIL can make though no file here opens as it: transparent is white too."""
    from patchscan.imaging import to_rgb

    clear = Image.new("PA", (2, 1))  # palette entry 0 (black), alpha 0
    assert np.asarray(to_rgb(clear)).tolist() == [[[255, 255, 255]] * 2]


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (load_rgb(tmp_path / "clear.png", (10, 10)) == 255).all()
    Image.new("RGBA", (10, 10), (0, 100, 200, 128)).save(tmp_path / "half.png")
    half = load_rgb(tmp_path / "half.png", (10, 10))
    expected = [round(c * 128 / 255 + 255 * 127 / 255) for c in (0, 100, 200)]
    assert np.abs(half.astype(int) - expected).max() <= 1
    Image.new("LA", (10, 10), (40, 0)).save(tmp_path / "grey_clear.png")
    assert (load_rgb(tmp_path / "grey_clear.png", (10, 10)) == 255).all()


def test_grey_and_palette_images_give_their_colours(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 100).save(tmp_path / "grey.png")
    assert (load_rgb(tmp_path / "grey.png", (10, 10)) == 100).all()
    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([10, 20, 30, 200, 150, 100] + [0] * 762)
    palette.paste(1, (5, 0, 10, 10))
    palette.save(tmp_path / "palette.png")
    pixels = load_rgb(tmp_path / "palette.png", (10, 10))
    assert (pixels[:, :5] == (10, 20, 30)).all() and (pixels[:, 5:] == (200, 150, 100)).all()
    palette.info["transparency"] = 1  # the second colour is see-through: white
    palette.save(tmp_path / "keyed.png", transparency=1)
    pixels = load_rgb(tmp_path / "keyed.png", (10, 10))
    assert (pixels[:, :5] == (10, 20, 30)).all() and (pixels[:, 5:] == 255).all()


@pytest.mark.parametrize(
    ("cmyk", "rgb"),
    [
        ((0, 0, 0, 0), (255, 255, 255)),
        ((255, 0, 0, 0), (0, 255, 255)),
        ((0, 0, 0, 255), (0, 0, 0)),
        ((0, 128, 255, 0), (255, 127, 0)),
        ((40, 80, 120, 60), (164, 134, 103)),
    ],
)
def test_cmyk_jpeg_gives_its_rgb(
    tmp_path: Path, cmyk: tuple[int, ...], rgb: tuple[int, ...]
) -> None:
    Image.new("CMYK", (16, 16), cmyk).save(tmp_path / "c.jpg", quality=95)
    pixels = load_rgb(tmp_path / "c.jpg", (16, 16)).astype(int)
    assert np.abs(pixels - rgb).max() <= 2  # JPEG rounding


def test_the_awkward_sample_files_give_the_pixels_they_hold(
    bad_inputs: tuple[Path, dict],
) -> None:
    """conftest.write_bad_inputs draws them all from one random RGB image."""
    folder, _ = bad_inputs
    rgb = (np.random.default_rng(0).random((50, 50, 3)) * 255).astype(np.uint8)
    grey = np.asarray(Image.fromarray(rgb).convert("L"))
    assert (load_rgb(folder / "sixteen.png", (50, 50)) == rgb[..., :1]).all()  # v * 257 → v
    assert (load_rgb(folder / "grey.png", (50, 50)) == grey[..., None]).all()
    assert (load_rgb(folder / "alpha.png", (50, 50)) == rgb).all()  # opaque alpha
    assert (load_rgb(folder / "UPPER.PNG", (50, 50)) == rgb).all()
    assert (load_rgb(folder / "ünïcødé 名前.png", (50, 50)) == rgb).all()
    assert (load_rgb(folder / "x.png" / "inside.tif", (50, 50)) == rgb).all()
    cmyk = load_rgb(folder / "cmyk.jpg", (50, 50)).astype(int)
    assert np.abs(cmyk - rgb).mean() < 8  # lossy, but the same picture


@pytest.fixture
def no_bomb_allocations(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[int, int]]]:
    """PIL's pixel allocations (core.new, core.fill...) are recorded, and refused outright for
    more than MAX_PIXELS: a bomb must be turned away before any of its memory is asked for."""
    from PIL import Image as PILImage

    calls: list[tuple[str, tuple[int, int]]] = []
    names = [
        n
        for n in ("new", "fill", "map_buffer", "new_block", "new_arrow")
        if hasattr(PILImage.core, n)
    ]
    assert "new" in names and "fill" in names

    def spy(name: str, real: object) -> object:
        def allocate(mode: str, size: tuple[int, int], *args: object) -> object:
            calls.append((name, tuple(size)))  # type: ignore[arg-type]
            if size[0] * size[1] > MAX_PIXELS:
                raise AssertionError(f"core.{name} asked for {size[0]}x{size[1]} pixels")
            return real(mode, size, *args)  # type: ignore[operator]

        return allocate

    for name in names:
        monkeypatch.setattr(PILImage.core, name, spy(name, getattr(PILImage.core, name)))
    for module, name in ((pyspng, "load"), (simplejpeg, "decode_jpeg")):
        monkeypatch.setattr(module, name, decoder_spy(name, getattr(module, name), calls))
    return calls


def decoder_spy(name: str, real: object, calls: list[tuple[str, tuple[int, int]]]) -> object:
    """pyspng and simplejpeg allocate the whole image at once: any call is recorded (for a bomb,
    one too many), then the size of the pixels it gave."""

    def decode(*args: object, **kwargs: object) -> np.ndarray:
        calls.append((name, (0, 0)))
        pixels: np.ndarray = real(*args, **kwargs)  # type: ignore[operator]
        calls[-1] = (name, (pixels.shape[1], pixels.shape[0]))
        return pixels

    return decode


def png_bomb(colour_type: int, depth: int = 8) -> bytes:
    """conftest.png_with_size's 30000x30000 PNG, of another colour type or depth."""
    import struct
    import zlib

    from conftest import png_with_size

    data = bytearray(png_with_size(30000, 30000))
    data[24], data[25] = depth, colour_type  # IHDR's bit depth and colour type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))  # and its CRC again
    return bytes(data)


@pytest.mark.parametrize(
    "kind", ["rgb png", "rgb png, exactly over", "grey png", "16-bit png", "jpeg", "bmp"]
)
def test_bomb_is_refused_before_any_pixel_memory_is_allocated(
    tmp_path: Path, no_bomb_allocations: list, kind: str
) -> None:
    from conftest import png_with_size

    path = tmp_path / "bomb.img"
    if kind == "rgb png":
        path.write_bytes(png_with_size(30000, 30000))
    elif kind == "rgb png, exactly over":
        path.write_bytes(png_with_size(MAX_PIXELS + 1, 1))
    elif kind == "grey png":
        path.write_bytes(png_bomb(0))
    elif kind == "16-bit png":
        path.write_bytes(png_bomb(0, depth=16))
    elif kind == "jpeg":
        Image.new("RGB", (16, 16)).save(path, format="JPEG")
        data = bytearray(path.read_bytes())
        frame = data.index(b"\xff\xc0")  # SOF0: marker, length, precision, height, width
        data[frame + 5 : frame + 9] = (30000).to_bytes(2, "big") * 2
        path.write_bytes(bytes(data))
    else:
        Image.new("RGB", (4, 4)).save(path, format="BMP")
        data = bytearray(path.read_bytes())
        data[18:26] = (30000).to_bytes(4, "little") * 2  # BITMAPINFOHEADER width, height
        path.write_bytes(bytes(data))
    no_bomb_allocations.clear()  # (drawing the BMP above allocated its 4x4 pixels)
    with pytest.raises(ImageError, match=r"too large.*decompression bomb"):
        load_rgb(path, (50, 50))
    assert no_bomb_allocations == []


def test_the_largest_image_allowed_is_not_a_bomb(tmp_path: Path) -> None:
    """MAX_PIXELS itself is allowed: the check is `>`, not `>=` (read as far as the size check,
    then the missing pixel data is the reason)."""
    from conftest import png_with_size

    (tmp_path / "big.png").write_bytes(png_with_size(MAX_PIXELS // 8, 8))
    with pytest.raises(ImageError) as error:
        load_rgb(tmp_path / "big.png", (50, 50))
    assert "too large" not in str(error.value)


def test_reasons_are_worded_for_the_csv(tmp_path: Path) -> None:
    """The error column says these exactly (a reason is read by lab staff, not a program)."""
    from patchscan.imaging import _describe, _refuse_bombs

    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError) as error:
        load_rgb(tmp_path / "empty.jpg", (50, 50))
    assert str(error.value) == "empty file (0 bytes)"
    truncated = _describe(OSError("image file is truncated (3 bytes not processed)"))
    assert truncated == "truncated image (file ends before the image data does)"
    assert _describe(EOFError()) == "cannot decode image: EOFError"  # no message: its type
    assert _describe(OSError(5, "Input/output error")) == "cannot decode image: Input/output error"
    with pytest.raises(ImageError) as error:
        _refuse_bombs(SimpleNamespace(size=(30000, 3000)))  # (only its size is looked at)
    assert str(error.value) == (
        "image too large: 30000x3000 pixels, more than 64,000,000 "
        "(refused before decoding: possible decompression bomb)"
    )


@pytest.mark.parametrize("size", [(0, 5), (5, 0), (0, 0)])
def test_an_image_without_pixels_is_refused(size: tuple[int, int]) -> None:
    from patchscan.imaging import _refuse_bombs

    with pytest.raises(ImageError) as error:
        _refuse_bombs(Image.new("RGB", size))
    assert str(error.value) == f"image has no pixels ({size[0]}x{size[1]})"
    _refuse_bombs(Image.new("RGB", (1, 1)))  # the smallest image is one


def test_a_large_jpeg_is_decoded_at_reduced_scale(
    tmp_path: Path, no_bomb_allocations: list
) -> None:
    """A 1600x1600 photo for a 50x50 model is decoded at 1/8 scale (JPEG's draft mode): PIL
    never allocates the full image, which costs 64 times the memory and most of the time."""
    rgb = (np.random.default_rng(4).random((1600, 1600, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=90)
    no_bomb_allocations.clear()
    assert load_rgb(tmp_path / "photo.jpg", (50, 50)).shape == (50, 50, 3)
    assert no_bomb_allocations and max(w * h for _, (w, h) in no_bomb_allocations) <= 200 * 200


def test_resize_is_bilinear_to_model_size(tmp_path: Path) -> None:
    Image.new("RGB", (100, 40), (10, 200, 30)).save(tmp_path / "wide.png")
    pixels = load_rgb(tmp_path / "wide.png", (50, 50))
    assert pixels.shape == (50, 50, 3)
    assert tuple(pixels[25, 25]) == (10, 200, 30)
    # Bilinear exactly, as in training: PIL's default (bicubic) differs on anything but a flat
    # colour.
    rgb = (np.random.default_rng(5).random((40, 100, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "noise.png")
    bilinear = Image.fromarray(rgb).resize((50, 50), Image.Resampling.BILINEAR)
    assert (load_rgb(tmp_path / "noise.png", (50, 50)) == np.asarray(bilinear)).all()


def test_model_input_is_float_in_unit_range() -> None:
    batch = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    out = to_model_input(batch)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, 128 / 255, 1.0], rtol=1e-6)


def pil_pixels(path: Path, size: tuple[int, int]) -> np.ndarray:
    """What load_rgb gave before libspng and libjpeg-turbo: PIL's reader (JPEG draft mode
    included), its conversion to RGB and its bilinear resize."""
    from patchscan.imaging import _decode

    with open(path, "rb") as handle:
        rgb = _decode(handle, size)
    return np.asarray(rgb.resize(size, Image.Resampling.BILINEAR) if rgb.size != size else rgb)


def takes_fast_path(path: Path, size: tuple[int, int]) -> bool:
    from patchscan.imaging import _decode_common

    with open(path, "rb") as handle:
        return _decode_common(handle, size) is not None


SKIN = Path(__file__).resolve().parents[1] / "assets" / "samples" / "skin"


def test_every_sample_patch_gets_pils_pixels_from_libspng() -> None:
    from conftest import SAMPLES

    paths = sorted(SAMPLES.rglob("*.png"))
    assert len(paths) > 400
    for path in paths:
        assert takes_fast_path(path, (50, 50)), path
        pixels = load_rgb(path, (50, 50))
        assert not pixels.flags.writeable, path
        assert (pixels == pil_pixels(path, (50, 50))).all(), path


@pytest.mark.parametrize("size", [(160, 160), (50, 50), (30, 30)])
def test_every_sample_photo_gets_pils_pixels_from_libjpeg_turbo(size: tuple[int, int]) -> None:
    """At the skin model's size (no reduction: the photos are 200x150 and 256x256) and at sizes
    where PIL's draft mode decodes at 1/2, 1/4 or 1/8 scale."""
    paths = sorted(SKIN.rglob("*.jpg"))
    assert len(paths) >= 60
    for path in paths:
        assert takes_fast_path(path, size), path
        assert (load_rgb(path, size) == pil_pixels(path, size)).all(), path


def odd_picture() -> np.ndarray:
    return (np.random.default_rng(2).random((37, 50, 3)) * 255).astype(np.uint8)


def odd_file(folder: Path, kind: str) -> Path:
    """One image of `kind`, drawn from one random picture with a random alpha channel."""
    rgb = odd_picture()
    image = Image.fromarray(rgb)
    alpha = Image.fromarray((np.random.default_rng(3).random((37, 50)) * 255).astype(np.uint8))
    path = folder / f"{kind.replace(' ', '_')}.{'jpg' if 'jpeg' in kind else 'png'}"
    if kind == "rgba png":
        image.putalpha(alpha)
    elif kind == "grey png":
        image = image.convert("L")
    elif kind == "grey+alpha png":
        image = image.convert("LA")
        image.putalpha(alpha)
    elif kind == "grey jpeg":
        image = image.convert("L")
    elif kind == "interlaced png":  # PIL writes no Adam7 PNG: written by hand
        path.write_bytes(adam7_png(rgb))
        return path
    elif kind == "palette png":
        image = image.convert("P")
    elif kind == "palette png with transparency":
        image = image.convert("P")
        image.info["transparency"] = 3
    elif kind == "16-bit png":
        image = Image.fromarray(np.asarray(image.convert("L")).astype(np.uint16) * 257)
    elif kind == "cmyk jpeg":
        image = image.convert("CMYK")
    elif kind == "large cmyk jpeg":  # PIL's alone, and still decoded at 1/8 (draft mode)
        image = image.resize((800, 592), Image.Resampling.BICUBIC).convert("CMYK")
    elif kind == "large jpeg":  # 800x592: PIL decodes it at 1/8 for a 50x50 patch
        image = image.resize((800, 592), Image.Resampling.BICUBIC)
    elif kind == "tall jpeg":  # 110x1600: at 1/2, by its width, not 1/8 by its height
        image = image.resize((110, 1600), Image.Resampling.BICUBIC)
    options: dict[str, object] = {
        "rgb png with tRNS": {"transparency": (10, 20, 30)},  # a colour key: ignored by both
        "progressive jpeg": {"progressive": True, "quality": 90},
        "4:4:4 jpeg": {"subsampling": 0, "quality": 95},
        "palette png with transparency": {"transparency": 3},
    }.get(kind, {})
    image.save(path, **options)
    return path


def adam7_png(rgb: np.ndarray) -> bytes:
    """An interlaced (Adam7) 8-bit RGB PNG of `rgb`: seven passes of sub-images, rows unfiltered."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2)]
    rows = b""
    for x, y, dx, dy in [*passes, (0, 1, 1, 2)]:
        part = rgb[y::dy, x::dx]
        if part.size:
            rows += b"".join(b"\x00" + row.tobytes() for row in part)
    height, width = rgb.shape[:2]
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 1)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# Which kinds libspng and libjpeg-turbo decode; PIL keeps every other.
FAST = [
    "rgb png",
    "rgba png",
    "grey png",
    "interlaced png",
    "rgb png with tRNS",
    "baseline jpeg",
    "progressive jpeg",
    "4:4:4 jpeg",
    "grey jpeg",
    "large jpeg",
    "tall jpeg",
]
PIL_ONLY = [
    "grey+alpha png",
    "palette png",
    "palette png with transparency",
    "16-bit png",
    "cmyk jpeg",
    "large cmyk jpeg",
]


@pytest.mark.parametrize("kind", FAST + PIL_ONLY)
@pytest.mark.parametrize("size", [(50, 37), (50, 50)])
def test_odd_files_get_pils_pixels_by_either_path(
    tmp_path: Path, kind: str, size: tuple[int, int]
) -> None:
    path = odd_file(tmp_path, kind)
    if kind == "interlaced png":
        assert path.read_bytes()[28] == 1 and (pil_pixels(path, (50, 37)) == odd_picture()).all()
    pixels = load_rgb(path, size)
    assert (pixels == pil_pixels(path, size)).all() and not pixels.flags.writeable
    assert takes_fast_path(path, size) == (kind in FAST)


def test_a_png_with_more_than_one_image_data_chunk_goes_to_libspng(tmp_path: Path) -> None:
    from PIL import ImageFile

    rgb = (np.random.default_rng(2).random((37, 50, 3)) * 255).astype(np.uint8)
    saved, ImageFile.MAXBLOCK = ImageFile.MAXBLOCK, 1024
    try:
        Image.fromarray(rgb).save(tmp_path / "two.png")
    finally:
        ImageFile.MAXBLOCK = saved
    assert (tmp_path / "two.png").read_bytes().count(b"IDAT") > 1
    assert takes_fast_path(tmp_path / "two.png", (50, 37))
    assert (load_rgb(tmp_path / "two.png", (50, 37)) == rgb).all()


@pytest.mark.parametrize("damage", ["cut", "header checksum", "data checksum", "no IEND"])
def test_a_damaged_png_is_left_to_pil(tmp_path: Path, damage: str) -> None:
    """Whatever PIL says of a damaged file (a reason, or pixels) it still says: libspng, as
    pyspng sets it up, checks no checksum, so imaging checks the chunks' CRCs up to IEND."""
    rgb = (np.random.default_rng(3).random((50, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    if damage == "cut":
        data = data[: len(data) // 2]
    elif damage == "header checksum":
        data = data[:29] + bytes(4) + data[33:]
    elif damage == "data checksum":
        data = data[:-16] + bytes(4) + data[-12:]  # the last chunk before IEND: IDAT's CRC
    else:
        data = data[:-12]
    path = tmp_path / "damaged.png"
    path.write_bytes(data)
    assert not takes_fast_path(path, (50, 50))
    try:
        expected: object = pil_pixels(path, (50, 50)).tolist()
    except Exception:  # PIL's own exception, which load_rgb turns into a reason
        expected = "a reason"
    try:
        got: object = load_rgb(path, (50, 50)).tolist()
    except ImageError:
        got = "a reason"
    assert got == expected


def test_a_plain_png_keeps_the_fast_path_past_a_text_chunk_and_a_tail(tmp_path: Path) -> None:
    """A 13-byte tEXt chunk (the IHDR's length) after the image data is not a header."""
    from PIL import PngImagePlugin

    rgb = (np.random.default_rng(6).random((20, 30, 3)) * 255).astype(np.uint8)
    info = PngImagePlugin.PngInfo()
    info.add_text("Title", "abcdefg")  # "Title\0abcdefg": 13 bytes
    Image.fromarray(rgb).save(tmp_path / "text.png", pnginfo=info)
    assert takes_fast_path(tmp_path / "text.png", (30, 20))
    assert (load_rgb(tmp_path / "text.png", (30, 20)) == rgb).all()
    # Bytes after IEND (some tools append data) are not read as chunks either.
    (tmp_path / "tail.png").write_bytes((tmp_path / "text.png").read_bytes() + bytes(20))
    assert takes_fast_path(tmp_path / "tail.png", (30, 20))


def test_a_png_without_iend_leaves_the_fast_path_not_the_image(tmp_path: Path) -> None:
    """A PNG that ends after its image data, without IEND, is PIL's to read, and PIL does."""
    rgb = (np.random.default_rng(7).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: data.index(b"IEND") - 4])
    assert (load_rgb(tmp_path / "cut.png", (30, 20)) == rgb).all()
    assert not takes_fast_path(tmp_path / "cut.png", (30, 20))


def test_a_png_without_its_header_is_pils_to_refuse(tmp_path: Path) -> None:
    """No IHDR (here renamed), though image data and IEND follow: no header for the fast path,
    and PIL gives the reason (a crash on the missing header would end the scan)."""
    rgb = (np.random.default_rng(8).random((20, 30, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = bytearray((tmp_path / "whole.png").read_bytes())
    data[12:16] = b"IHDX"  # the IHDR's type
    (tmp_path / "odd.png").write_bytes(bytes(data))
    assert not takes_fast_path(tmp_path / "odd.png", (30, 20))
    with pytest.raises(ImageError):
        load_rgb(tmp_path / "odd.png", (30, 20))


def test_a_plain_png_with_corrupt_image_data_gets_pils_reason(tmp_path: Path) -> None:
    rgb = (np.random.default_rng(3).random((50, 50, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "whole.png")
    data = bytearray((tmp_path / "whole.png").read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 40] = bytes(30)  # zeros over the deflate stream, CRC left stale
    (tmp_path / "corrupt.png").write_bytes(bytes(data))
    with pytest.raises(ImageError, match=r"^cannot decode image: broken data stream"):
        load_rgb(tmp_path / "corrupt.png", (50, 50))


@pytest.mark.parametrize("length", [16, 20, 28, 32])
def test_a_png_cut_inside_its_header_is_a_reason_not_a_crash(
    tmp_path: Path, length: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by tests/test_fuzz.py: a PNG cut in its IHDR raised struct.error, which no caller
    expects, and the whole scan ended with a traceback instead of one error row. The reason is
    PIL's, as if the fast path were not there (not one about our own parsing)."""
    from conftest import SAMPLES

    source = sorted(SAMPLES.glob("*/*/*.png"))[0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(source[:length])
    with pytest.raises(ImageError) as error:
        load_rgb(cut, (50, 50))
    monkeypatch.setattr("patchscan.imaging._decode_common", lambda handle, size: None)
    with pytest.raises(ImageError) as general:
        load_rgb(cut, (50, 50))
    assert str(error.value) == str(general.value)


def test_a_colour_key_in_a_grey_png_is_ignored_whichever_path_reads_it(tmp_path: Path) -> None:
    """A grey PNG's tRNS colour key is ignored, as an RGB PNG's is: libspng (the fast path)
    keeps the keyed grey, and so must PIL's conversion, which decodes the same file when the
    fast path is not taken. (Compositing it on white, as for an alpha channel, would give one
    file two sets of pixels.)"""
    grey = (np.arange(2500).reshape(50, 50) % 256).astype(np.uint8)
    Image.fromarray(grey, "L").save(tmp_path / "keyed.png", transparency=10)
    fast = load_rgb(tmp_path / "keyed.png", (50, 50))
    with Image.open(tmp_path / "keyed.png") as image:
        assert image.info["transparency"] == 10
        by_pil = np.asarray(to_rgb(image))
    assert (fast == by_pil).all() and tuple(by_pil[0, 10]) == (10, 10, 10)
