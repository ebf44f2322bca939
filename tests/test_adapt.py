"""Test-time adaptation (AdaBN): each slide's scores with the batch norms re-estimated on that
slide's own patches, and the model left as it was."""

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from patchscan_train import nets
from patchscan_train.adapt import adapted_scores
from patchscan_train.train import predict


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    import keras

    keras.utils.set_random_seed(0)
    return nets.idc_cnn((50, 50))


def patches(seed: int, n: int, tint: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = rng.integers(60, 200, size=(n, 50, 50, 3)).astype(np.int16)
    out[..., 0] += tint
    return np.clip(out, 0, 255).astype(np.uint8)


def test_no_share_of_the_slide_is_the_model_as_trained(model) -> None:  # type: ignore[no-untyped-def]
    images = patches(0, 40)
    groups = np.array(["a"] * 20 + ["b"] * 20)
    unadapted = adapted_scores(model, images, groups, share=0.0)
    np.testing.assert_allclose(unadapted, predict(model, images), atol=1e-6)


def test_a_slide_is_scored_with_its_own_statistics_only(model) -> None:  # type: ignore[no-untyped-def]
    """A slide's scores do not depend on the other slides scored beside it, and do depend on
    the slide's own statistics (adaptation changes them), and the model is restored after."""
    weights = [w.copy() for w in model.get_weights()]
    first, second = patches(1, 30), patches(2, 30, tint=50)
    together = adapted_scores(
        model, np.concatenate([first, second]), np.array(["a"] * 30 + ["b"] * 30)
    )
    alone = adapted_scores(model, first, np.array(["a"] * 30))
    np.testing.assert_allclose(together[:30], alone, atol=1e-5)
    assert not np.allclose(alone, predict(model, first), atol=1e-3)
    for kept, now in zip(weights, model.get_weights(), strict=True):
        np.testing.assert_array_equal(kept, now)


def test_the_slide_statistics_replace_or_mix_with_the_trained_ones() -> None:
    """On a model whose one batch norm sees each patch's mean red value, the scores are exactly
    those of that batch norm normalised by the trained statistics (share 0), the slide's own
    (share 1) or their average (share 0.5)."""
    import keras

    inputs = keras.Input((50, 50, 3))
    red = keras.layers.GlobalAveragePooling2D()(inputs)[:, :1]
    norm = keras.layers.BatchNormalization(epsilon=1e-6)
    logit = keras.layers.Dense(1, kernel_initializer="ones")(norm(red))
    tiny = keras.Model(inputs, keras.layers.Activation("sigmoid")(logit))
    norm.moving_mean.assign([0.2])
    norm.moving_variance.assign([0.04])
    images = patches(4, 30, tint=40)
    red_means = images[..., 0].mean(axis=(1, 2)) / 255.0
    groups = np.array(["a"] * 30)
    for share in (0.0, 0.5, 1.0):
        mean = share * red_means.mean() + (1 - share) * 0.2
        var = share * red_means.var() + (1 - share) * 0.04
        expected = 1 / (1 + np.exp(-(red_means - mean) / np.sqrt(var + 1e-6)))
        got = adapted_scores(tiny, images, groups, share=share)
        np.testing.assert_allclose(got, expected, atol=1e-4)
