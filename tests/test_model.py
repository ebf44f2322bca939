"""The onnxruntime session: a batch runs in cache-sized pieces and comes back whole, in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from patchscan import model as model_module
from patchscan.model import Model, Session


@pytest.mark.parametrize("pieces_of", [1, 7, 100, 1000])
def test_a_batch_run_in_pieces_gives_every_image_its_own_answer_in_order(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch, pieces_of: int
) -> None:
    # The tiny model answers each image's mean pixel value, so any mix-up of the pieces shows.
    monkeypatch.setattr(model_module, "PIXELS_PER_RUN", pieces_of * 8 * 8)
    session = Session(Model.open(tiny_model), threads=1)
    batch = np.random.default_rng(0).random((250, 8, 8, 3), dtype=np.float32)
    answers = session.predict(batch)
    assert answers.shape == (250,) and answers.dtype == np.float32
    np.testing.assert_allclose(answers, batch.mean(axis=(1, 2, 3)), rtol=1e-5)


def test_an_empty_batch_has_no_answers(tiny_model: Path) -> None:
    session = Session(Model.open(tiny_model), threads=1)
    assert session.predict(np.zeros((0, 8, 8, 3), np.float32)).shape == (0,)


def test_a_run_holds_as_many_images_as_fit_the_pixel_budget(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    session = Session(Model.open(tiny_model), threads=1)
    run = session._session.run
    monkeypatch.setattr(
        session._session,
        "run",
        lambda names, feeds: calls.append(len(feeds["image"])) or run(names, feeds),
        raising=False,
    )
    session.predict(np.zeros((1500, 8, 8, 3), np.float32))
    per_run = model_module.PIXELS_PER_RUN // 64
    assert calls == [per_run, per_run, 1500 - 2 * per_run]


def test_decoded_pixels_are_scaled_as_the_model_expects(tiny_model: Path) -> None:
    """A worker hands over uint8 pixels as decoded; each piece is scaled to [0, 1] on its own."""
    session = Session(Model.open(tiny_model), threads=1)
    pixels = np.random.default_rng(1).integers(0, 256, (700, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        session.predict(pixels), session.predict(pixels.astype(np.float32) / 255), rtol=1e-6
    )
    np.testing.assert_allclose(session.predict(pixels[:3]), pixels[:3].mean(axis=(1, 2, 3)) / 255)
