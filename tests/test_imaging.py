from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchscan.errors import ImageError
from patchscan.imaging import MAX_PIXELS, _plain_png, load_rgb, to_model_input


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


def test_sixteen_bit_keeps_its_range(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 50 * 50).reshape(50, 50).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "ramp.png")
    pixels = load_rgb(tmp_path / "ramp.png", (50, 50))
    assert pixels.min() == 0 and pixels.max() == 255  # scaled, not clipped to white


def test_alpha_is_composited_on_white(tmp_path: Path) -> None:
    Image.new("RGBA", (10, 10), (0, 0, 0, 0)).save(tmp_path / "clear.png")
    assert (load_rgb(tmp_path / "clear.png", (10, 10)) == 255).all()


def test_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    from conftest import png_with_size

    (tmp_path / "big.png").write_bytes(png_with_size(MAX_PIXELS, 2))
    with pytest.raises(ImageError, match="decompression bomb"):
        load_rgb(tmp_path / "big.png", (50, 50))


def test_resize_is_bilinear_to_model_size(tmp_path: Path) -> None:
    Image.new("RGB", (100, 40), (10, 200, 30)).save(tmp_path / "wide.png")
    pixels = load_rgb(tmp_path / "wide.png", (50, 50))
    assert pixels.shape == (50, 50, 3)
    assert tuple(pixels[25, 25]) == (10, 200, 30)


def test_model_input_is_float_in_unit_range() -> None:
    batch = np.array([[[[0, 128, 255]]]], dtype=np.uint8)
    out = to_model_input(batch)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [0.0, 128 / 255, 1.0], rtol=1e-6)


def pil_pixels(path: Path) -> np.ndarray:
    """What PIL's own reader makes of a file, through the general path's conversion."""
    from patchscan.imaging import to_rgb

    with Image.open(path) as image:
        return np.asarray(to_rgb(image))


def plain_png(path: Path) -> Image.Image | None:
    with open(path, "rb") as handle:
        return _plain_png(handle)


@pytest.mark.parametrize("kind", ["rgb", "rgba", "palette", "grey", "two idat"])
def test_plain_png_fast_path_gives_pil_pixels(tmp_path: Path, kind: str) -> None:
    rgb = (np.random.default_rng(2).random((37, 50, 3)) * 255).astype(np.uint8)
    image = Image.fromarray(rgb)
    path = tmp_path / f"{kind}.png"
    if kind == "rgba":
        image.putalpha(Image.fromarray(rgb[..., 0]))
    image = image.convert({"palette": "P", "grey": "L"}.get(kind, image.mode))
    if kind == "two idat":
        from PIL import ImageFile

        saved, ImageFile.MAXBLOCK = ImageFile.MAXBLOCK, 1024
    image.save(path)
    if kind == "two idat":
        ImageFile.MAXBLOCK = saved
        assert path.read_bytes().count(b"IDAT") > 1
    assert (load_rgb(path, (50, 37)) == pil_pixels(path)).all()
    fast = plain_png(path) is not None
    assert fast == (kind in ("rgb", "rgba", "two idat"))  # the others take the general path

    if kind == "rgb":  # the same header marked interlaced (Adam7) is not for the fast path
        data = bytearray(path.read_bytes())
        data[data.index(b"IHDR") + 16] = 1
        path.write_bytes(bytes(data))
        assert plain_png(path) is None


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
def test_a_png_cut_inside_its_header_is_a_reason_not_a_crash(tmp_path: Path, length: int) -> None:
    """Found by tests/test_fuzz.py: a PNG cut in its IHDR raised struct.error, which no caller
    expects, and the whole scan ended with a traceback instead of one error row."""
    from conftest import SAMPLES

    source = sorted(SAMPLES.glob("*/*/*.png"))[0].read_bytes()
    cut = tmp_path / "cut.png"
    cut.write_bytes(source[:length])
    with pytest.raises(ImageError):
        load_rgb(cut, (50, 50))
