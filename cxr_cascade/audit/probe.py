"""Source probe: can the data set an image came from be decoded from the model's features?

A linear probe (Alain & Bengio 2016) on the global-average-pooled ``cam_features``: a logistic
regression scored by stratified (patient-grouped when ids are given) cross-validation. High
balanced accuracy means the features encode the source. Because sources differ in label mix
(on the real data all COVID-19 images come from ieee8023), the probe is also run *within* each
class present in several sources, where the label cannot explain the source.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def pooled_features(model, images, layer: str = "cam_features", batch_size: int = 32) -> np.ndarray:
    """Global-average-pooled output of ``layer``: float32 ``[N, K]`` (inference mode)."""
    import keras  # lazy: the probe itself needs only scikit-learn, not Keras and TensorFlow

    names = {l.name for l in model.layers}
    if layer not in names:
        raise ValueError(f"`layer` must name a layer of the model. Received: layer={layer!r}")
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    extractor = keras.Model(inputs, model.get_layer(layer).output)
    out = []
    images = np.asarray(images, dtype=np.float32)
    for start in range(0, len(images), batch_size):
        fmap = keras.ops.convert_to_numpy(extractor(images[start : start + batch_size], training=False))
        out.append(fmap.reshape(len(fmap), -1, fmap.shape[-1]).mean(axis=1))
    return np.concatenate(out).astype(np.float32)


def source_probe(features, sources: Sequence[str], groups: Sequence | None = None,
                 n_splits: int = 5, seed: int = 0) -> dict:
    """Cross-validated logistic-regression probe of ``sources`` from ``features``.

    Args:
        features: float ``[N, K]``.
        sources: ``N`` source names.
        groups: optional ``N`` patient ids; folds then never split a patient.
        n_splits: folds (reduced to the smallest source's size when needed, at least 2).

    Returns:
        ``{"balanced_accuracy", "accuracy", "chance_balanced": 1 / n_sources,
        "chance_accuracy": majority share, "n_splits", "counts"}``, or ``{"skipped": reason}``.
    """
    features = np.asarray(features, dtype=np.float64)
    sources = np.asarray([str(s) for s in sources])
    if features.ndim != 2 or len(features) != len(sources):
        raise ValueError(
            "`features` must have shape [N, K] with one source per row. "
            f"Received: features.shape={features.shape}, len(sources)={len(sources)}"
        )
    names, counts = np.unique(sources, return_counts=True)
    if names.size < 2:
        return {"skipped": f"one source only ({names[0] if names.size else 'none'})"}
    k = int(min(n_splits, counts.min()))
    if k < 2:
        return {"skipped": "a source has fewer than 2 images", "counts": dict(zip(names.tolist(), counts.tolist()))}
    if groups is not None:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        split_groups = np.asarray([str(g) for g in groups])
    else:
        cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        split_groups = None
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    predicted = cross_val_predict(probe, features, sources, cv=cv, groups=split_groups)
    return {
        "balanced_accuracy": float(balanced_accuracy_score(sources, predicted)),
        "accuracy": float(accuracy_score(sources, predicted)),
        "chance_balanced": 1.0 / names.size,
        "chance_accuracy": float(counts.max() / counts.sum()),
        "n_splits": k,
        "counts": dict(zip(names.tolist(), counts.tolist())),
    }


def source_probe_within_classes(features, sources, labels, groups=None,
                                n_splits: int = 5, seed: int = 0) -> dict:
    """``source_probe`` run separately inside each label present in at least two sources."""
    features = np.asarray(features)
    sources = np.asarray([str(s) for s in sources])
    labels = np.asarray([str(l) for l in labels])
    groups = None if groups is None else np.asarray([str(g) for g in groups])
    out = {}
    for label in np.unique(labels):
        rows = labels == label
        if np.unique(sources[rows]).size < 2:
            continue
        out[str(label)] = source_probe(features[rows], sources[rows],
                                       None if groups is None else groups[rows], n_splits, seed)
    return out
