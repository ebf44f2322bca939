from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from patchscan.errors import ImageError
from patchscan.imaging import MAX_PIXELS, load_rgb, to_model_input


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
