"""Test-time adaptation to a slide: batch-norm statistics re-estimated on the slide's own patches
(AdaBN, Li et al. 2016).

A new lab's stain and scanner shift the network's features as a whole, and with them every score
of the slide: a patient can be ranked well (ROC AUC 0.97) and still have most of its IDC under
the threshold. Each batch norm normalises its input by the training patches' mean and variance;
AdaBN swaps in the slide's, so the features downstream see the slide centred as the training
slides were. `share` mixes the two (1 = the slide's alone): a slide's statistics also carry how
much IDC it holds, which full adaptation would partly normalise away.
"""

from __future__ import annotations

import keras
import numpy as np

from patchscan.imaging import to_model_input


def adapted_scores(
    model: keras.Model, images: np.ndarray, groups: np.ndarray, share: float = 1.0
) -> np.ndarray:
    """P(positive) of every uint8 image, each group's (slide's) with the batch norms adapted to
    that group's images; the model is left as it was."""
    norms = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    inputs = [keras.Model(model.inputs, layer.input) for layer in norms]
    kept = [(n.moving_mean.numpy(), n.moving_variance.numpy()) for n in norms]
    scores = np.empty(len(images), np.float32)
    try:
        for name in np.unique(groups):
            members = np.flatnonzero(groups == name)
            x = to_model_input(images[members])
            for norm, upstream, (mean, var) in zip(norms, inputs, kept, strict=True):
                features = _predict(upstream, x)
                axes = tuple(range(features.ndim - 1))
                norm.moving_mean.assign(_mix(share, features.mean(axis=axes), mean))
                norm.moving_variance.assign(_mix(share, features.var(axis=axes), var))
            scores[members] = _predict(model, x).reshape(-1)
    finally:
        for norm, (mean, var) in zip(norms, kept, strict=True):
            norm.moving_mean.assign(mean)
            norm.moving_variance.assign(var)
    return scores


def _mix(share: float, slide: np.ndarray, trained: np.ndarray) -> np.ndarray:
    return (share * slide + (1 - share) * trained).astype(np.float32)


def _predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=512, verbose=0))
