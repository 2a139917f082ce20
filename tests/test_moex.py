"""MoEx: PONO exchange against a NumPy reference, training-only behaviour, the mixed loss."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from cxr_cascade.models import MoEx, MoExClassifier, MomentExchange, moment_exchange, pono_moments


def numpy_moex(x: np.ndarray, partner: np.ndarray, epsilon: float = 1e-5) -> np.ndarray:
    """Reference: (x - mu_a) / sigma_a * sigma_b + mu_b over the channel axis, unbiased variance."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    std = np.sqrt(x64.var(axis=-1, ddof=1, keepdims=True) + epsilon)
    return ((x64 - mean) / std * std[partner] + mean[partner]).astype(x.dtype)


def _features(batch=4, seed=0):
    rng = np.random.default_rng(seed)
    # Different per-sample offsets and scales so the moments really differ.
    return (rng.normal(size=(batch, 5, 6, 8)) * rng.uniform(0.5, 3, (batch, 1, 1, 1)) + rng.normal(size=(batch, 1, 1, 1))).astype("float32")


def _np(t):
    return keras.ops.convert_to_numpy(t)


def test_moment_exchange_matches_numpy_reference():
    x = _features()
    partner = np.array([2, 0, 3, 1])
    np.testing.assert_allclose(_np(moment_exchange(x, partner)), numpy_moex(x, partner), rtol=1e-5, atol=1e-5)
    mean, std = pono_moments(x)
    assert tuple(mean.shape) == (4, 5, 6, 1) and keras.backend.standardize_dtype(std.dtype) == "float32"


def test_exchanged_features_carry_partner_moments():
    x = _features()
    partner = np.array([1, 2, 3, 0])
    out = _np(moment_exchange(x, partner)).astype(np.float64)
    np.testing.assert_allclose(out.mean(axis=-1), x.mean(axis=-1)[partner], atol=1e-4)
    np.testing.assert_allclose(out.std(axis=-1, ddof=1), x.std(axis=-1, ddof=1)[partner], rtol=1e-3)


def test_identity_permutation_is_exact_identity():
    x = _features()
    np.testing.assert_array_equal(_np(moment_exchange(x, np.arange(4))), x)


def test_layer_training_output_equals_reference_with_recorded_permutation():
    layer = MomentExchange(prob=1.0, seed=3)
    x = _features(batch=6)
    out = _np(layer(x, training=True))
    partner = _np(layer.partner_indices(6))
    assert sorted(partner.tolist()) == list(range(6))
    assert float(_np(layer.applied)) == 1.0
    np.testing.assert_allclose(out, numpy_moex(x, partner), rtol=1e-5, atol=1e-5)
    # A new call draws a new permutation (6! = 720 choices; 5 draws all equal is ~1e-11).
    perms = set()
    for _ in range(5):
        layer(x, training=True)
        perms.add(tuple(_np(layer.partner_indices(6)).tolist()))
    assert len(perms) > 1


def test_inference_is_identity_and_batch_of_one_is_handled():
    layer = MomentExchange(prob=1.0, seed=0)
    x = _features()
    np.testing.assert_array_equal(_np(layer(x, training=False)), x)
    np.testing.assert_array_equal(_np(layer(x)), x)
    assert float(_np(layer.applied)) == 0.0
    one = x[:1]
    np.testing.assert_array_equal(_np(layer(one, training=True)), one)
    assert _np(layer.partner_indices(1)).tolist() == [0]


def test_prob_zero_never_fires_and_bernoulli_rate():
    x = _features()
    never = MomentExchange(prob=0.0, seed=0)
    np.testing.assert_array_equal(_np(never(x, training=True)), x)
    half = MomentExchange(prob=0.5, seed=1)
    fired = []
    for _ in range(120):
        out = _np(half(x, training=True))
        fired.append(float(_np(half.applied)))
        if fired[-1] == 0.0:
            np.testing.assert_array_equal(out, x)
    assert 0.3 < np.mean(fired) < 0.7


def test_layer_config_round_trip_and_serialisation():
    layer = MomentExchange(prob=0.25, lam=0.8, epsilon=1e-3, seed=7, name="moex")
    config = layer.get_config()
    assert {k: config[k] for k in ("prob", "lam", "epsilon", "seed")} == {"prob": 0.25, "lam": 0.8, "epsilon": 1e-3, "seed": 7}
    assert config["max_batch_size"] == 4096
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, MomentExchange) and clone.get_config() == config


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"prob": 1.5}, "Received: prob=1.5"),
        ({"prob": -0.1}, "Received: prob=-0.1"),
        ({"lam": 2}, "Received: lam=2"),
        ({"epsilon": 0.0}, "Received: epsilon=0.0"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    with pytest.raises(ValueError, match=fragment):
        MomentExchange(**kwargs)
    with pytest.raises(ValueError, match=fragment):
        MoEx(**kwargs)


def test_batch_larger_than_record_rejected():
    with pytest.raises(ValueError, match="Received: batch size 5"):
        MomentExchange(max_batch_size=4)(np.zeros((5, 2, 2, 3), "float32"), training=True)
    with pytest.raises(ValueError, match="Received: max_batch_size=0"):
        MomentExchange(max_batch_size=0)


def test_single_channel_rejected():
    with pytest.raises(ValueError, match="at least 2 channels"):
        MomentExchange()(np.zeros((2, 4, 4, 1), "float32"))


def _tiny_moex_model(lam=0.7, seed=0):
    inputs = keras.Input((6, 6, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    x = MomentExchange(prob=1.0, lam=lam, seed=seed, name="moex")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(3, name="logits")(x)
    outputs = keras.layers.Activation("softmax", name="probabilities")(x)
    model = MoExClassifier(inputs, outputs, name="tiny")
    model.compile(optimizer="sgd", loss=keras.losses.SparseCategoricalCrossentropy())
    return model


def _ce(y, p):
    return -np.log(p[np.arange(len(y)), y])


def test_mixed_loss_equals_two_term_formula():
    model = _tiny_moex_model(lam=0.7)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5, 6, 6, 3)).astype("float32")
    y = np.array([0, 1, 2, 1, 0])
    y_pred = model(x, training=True)
    loss = float(_np(model.compute_loss(x, y, y_pred, training=True)))
    partner = _np(model.get_layer("moex").partner_indices(5))
    p = _np(y_pred).astype(np.float64)
    expected = 0.7 * _ce(y, p).mean() + 0.3 * _ce(y[partner], p).mean()
    assert np.isclose(loss, expected, rtol=1e-5)
    # Evaluation uses the plain loss.
    plain = float(_np(model.compute_loss(x, y, y_pred, training=False)))
    assert np.isclose(plain, _ce(y, p).mean(), rtol=1e-5)


def test_mixed_loss_permutes_sample_weights_for_partner_term():
    model = _tiny_moex_model(lam=0.6, seed=4)
    x = np.random.default_rng(1).normal(size=(4, 6, 6, 3)).astype("float32")
    y = np.array([0, 1, 2, 2])
    w = np.array([1.0, 2.0, 0.5, 3.0], "float32")
    y_pred = model(x, training=True)
    loss = float(_np(model.compute_loss(x, y, y_pred, sample_weight=w, training=True)))
    partner = _np(model.get_layer("moex").partner_indices(4))
    p = _np(y_pred).astype(np.float64)
    expected = 0.6 * (w * _ce(y, p)).mean() + 0.4 * (w[partner] * _ce(y[partner], p)).mean()
    assert np.isclose(loss, expected, rtol=1e-5)


def test_fit_and_predict_run_and_inference_ignores_moex():
    model = _tiny_moex_model()
    rng = np.random.default_rng(2)
    x = rng.normal(size=(8, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, 8)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert float(_np(model.get_layer("moex").applied)) == 1.0
    # Inference equals the same graph without the exchange.
    feats = keras.Model(model.input, model.get_layer("conv").output)(x)
    pooled = keras.ops.mean(feats, axis=(1, 2))
    expected = keras.ops.softmax(model.get_layer("logits")(pooled))
    np.testing.assert_allclose(model.predict(x, verbose=0), _np(expected), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_train_step_loss_equals_formula_with_recorded_partner(jit_compile):
    """Inside fit's compiled step (graph / XLA) the recorded permutation is the one the layer used."""
    model = _tiny_moex_model(lam=0.75, seed=5)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.0),
        loss=keras.losses.SparseCategoricalCrossentropy(),
        jit_compile=jit_compile,
    )
    rng = np.random.default_rng(3)
    x = rng.normal(size=(6, 6, 6, 3)).astype("float32")
    y = rng.integers(0, 3, 6)
    loss = float(model.train_on_batch(x, y))
    partner = _np(model.get_layer("moex").partner_indices(6))
    feats = numpy_moex(_np(model.get_layer("conv")(x)), partner)
    p = _np(model.get_layer("probabilities")(model.get_layer("logits")(feats.mean(axis=(1, 2))))).astype(np.float64)
    expected = 0.75 * _ce(y, p).mean() + 0.25 * _ce(y[partner], p).mean()
    assert np.isclose(loss, expected, rtol=1e-4)
