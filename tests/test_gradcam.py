"""Grad-CAM / Grad-CAM++ against independent GradientTape computations, overlays, CLI-free."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras

from cxr_cascade.explain import gradcam as gc
from cxr_cascade.explain import overlay


def tiny_classifier(size=24, num_classes=3, seed=0, dropout=False):
    """Flat functional net with the project's layer names: cam_features -> pool -> logits."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(5, 3, padding="same", activation="relu", name="conv2")(x)
    if dropout:
        x = keras.layers.Dropout(0.9, name="drop")(x)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probs = keras.layers.Softmax(name="probabilities")(logits)
    return keras.Model(inputs, probs, name="tiny")


@pytest.fixture(scope="module")
def model():
    return tiny_classifier()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 24, 24, 1)).astype(np.float32)


def _head(model, features):
    return model.get_layer("logits")(model.get_layer("avg_pool")(features))


def _features(model, images):
    x = tf.convert_to_tensor(images)
    for name in ("conv1", "pool1", "conv2", "cam_features"):
        x = model.get_layer(name)(x)
    return x


def test_gradcam_matches_direct_gradient_tape(model, images):
    maps, classes = gc.gradcam(model, images, class_index=1)
    # Independent: run the layers by hand, differentiate the class-1 logit w.r.t. the features.
    feats = _features(model, images)
    with tf.GradientTape() as tape:
        tape.watch(feats)
        score = _head(model, feats)[:, 1]
    grads = tape.gradient(score, feats).numpy()
    a = feats.numpy()
    cam = np.maximum(np.einsum("bijk,bk->bij", a, grads.mean(axis=(1, 2))), 0)
    up = tf.image.resize(cam[..., None], (24, 24), method="bilinear")[..., 0].numpy()
    expected = up / up.reshape(5, -1).max(1)[:, None, None]
    np.testing.assert_allclose(maps, expected, atol=1e-5)
    assert maps.shape == (5, 24, 24) and maps.dtype == np.float32
    assert np.all(classes == 1)
    assert maps.min() >= 0.0 and np.allclose(maps.reshape(5, -1).max(1), 1.0)


def test_gap_head_gradcam_equals_class_activation_map(model, images):
    # With a GAP + Dense head, Grad-CAM weights are W[:, c] / (h w): Zhou et al.'s CAM.
    cam, _ = gc.GradCAM(model)(images, class_index=2, upsample=False, normalise=False)
    a = _features(model, images).numpy()
    kernel = model.get_layer("logits").kernel.numpy()
    expected = np.maximum(a @ kernel[:, 2], 0) / (a.shape[1] * a.shape[2])
    np.testing.assert_allclose(cam, expected, rtol=1e-4, atol=1e-7)


def test_class_index_none_is_argmax(model, images):
    maps_none, classes = gc.gradcam(model, images, class_index=None)
    predicted = model.predict(images, verbose=0).argmax(1)
    np.testing.assert_array_equal(classes, predicted)
    maps_argmax, _ = gc.gradcam(model, images, class_index=predicted)
    np.testing.assert_allclose(maps_none, maps_argmax, atol=1e-6)


def test_gradcam_plus_plus_matches_higher_order_derivatives():
    # Chattopadhay et al. eq. 10 with Y = exp(S): true 2nd/3rd derivatives by nested tapes
    # (full Jacobians, so the feature map is kept tiny: 4 x 4 x 5).
    model = tiny_classifier(size=8, seed=2)
    x = np.random.default_rng(1).random((1, 8, 8, 1)).astype(np.float32)
    maps, _ = gc.gradcam(model, x, class_index=0, method="gradcam++")
    a = _features(model, x)
    shape = a.shape
    with tf.GradientTape(persistent=True) as t3:
        t3.watch(a)
        with tf.GradientTape(persistent=True) as t2:
            t2.watch(a)
            with tf.GradientTape() as t1:
                t1.watch(a)
                y = tf.exp(_head(model, a)[0, 0])
            d1 = tf.reshape(t1.gradient(y, a), [-1])
        d2 = tf.linalg.diag_part(tf.reshape(t2.jacobian(d1, a), [d1.shape[0], -1]))
    d3 = tf.linalg.diag_part(tf.reshape(t3.jacobian(d2, a), [d2.shape[0], -1]))
    d1, d2, d3 = (tf.reshape(t, shape).numpy()[0] for t in (d1, d2, d3))
    a0 = a.numpy()[0]
    denom = 2 * d2 + a0.sum(axis=(0, 1), keepdims=True) * d3
    alpha = np.where(denom != 0, d2 / np.where(denom != 0, denom, 1), 0)
    weights = (alpha * np.maximum(d1, 0)).sum(axis=(0, 1))
    cam = np.maximum(a0 @ weights, 0)
    up = tf.image.resize(cam[None, ..., None], (8, 8), method="bilinear")[0, ..., 0].numpy()
    assert up.max() > 0
    np.testing.assert_allclose(maps[0], up / up.max(), atol=1e-4)
    # Grad-CAM++ differs from Grad-CAM on the same input (the test can tell them apart).
    plain, _ = gc.gradcam(model, x, class_index=0)
    assert not np.allclose(plain, maps, atol=1e-3)


def test_training_false_makes_dropout_identity(images):
    m = tiny_classifier(dropout=True, seed=1)
    a, _ = gc.gradcam(m, images, class_index=0)
    b, _ = gc.gradcam(m, images, class_index=0)
    np.testing.assert_array_equal(a, b)


def test_bad_arguments(model, images):
    with pytest.raises(ValueError, match="method"):
        gc.GradCAM(model, method="cam")
    with pytest.raises(ValueError, match="feature_layer"):
        gc.GradCAM(model, feature_layer="nope")
    with pytest.raises(ValueError, match="class_index"):
        gc.gradcam(model, images, class_index=7)
    with pytest.raises(ValueError, match="images"):
        gc.gradcam(model, images[0])


def test_overlay_and_atomic_writes(tmp_path):
    image = np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16, 1)
    heat = np.zeros((16, 16), np.float32)
    heat[4, 4] = 1.0
    rgb = overlay.overlay_heatmap(image, heat, alpha=0.5)
    assert rgb.shape == (16, 16, 3) and rgb.dtype == np.uint8
    assert rgb[4, 4, 0] > rgb[4, 4, 2]  # jet's hot end is red
    assert np.array_equal(overlay.overlay_heatmap(image, heat, alpha=0.0)[..., 0],
                          (image[..., 0] * 255 + 0.5).astype(np.uint8))
    panel = overlay.side_by_side(image, heat)
    assert panel.shape == (16, 36, 3)
    assert overlay.side_by_side(image, heat, min_size=64).shape == (64, 132, 3)
    path = overlay.save_png(tmp_path / "o.png", panel)
    assert path.read_bytes()[:4] == b"\x89PNG"
    npy = overlay.save_npy(tmp_path / "m.npy", heat)
    np.testing.assert_array_equal(np.load(npy), heat)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npy", "o.png"]
    with pytest.raises(ValueError, match="heatmap"):
        overlay.overlay_heatmap(image, heat[:8])
    with pytest.raises(ValueError, match="alpha"):
        overlay.overlay_heatmap(image, heat, alpha=2)


@pytest.mark.slow
def test_gradcam_on_the_projects_seme_resnet50():
    # The paper's stage-1 network (SE + MoEx) from the real builder: flat graph, MoEx identity.
    from cxr_cascade.models import MoEx, build_classifier

    keras.utils.set_random_seed(0)
    model = build_classifier("resnet50", 3, (32, 32, 1), head="gap", se_reduction=16, moex=MoEx())
    x = np.random.default_rng(3).random((2, 32, 32, 1)).astype(np.float32)
    maps, classes = gc.gradcam(model, x)
    np.testing.assert_array_equal(classes, model.predict(x, verbose=0).argmax(1))
    assert maps.shape == (2, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    again, _ = gc.gradcam(model, x)
    np.testing.assert_array_equal(maps, again)  # training=False: MoEx exchanges nothing
    # GAP head: Grad-CAM is the class activation map of the logits kernel.
    cam, cls = gc.GradCAM(model)(x, upsample=False, normalise=False)
    a = keras.Model(model.inputs[0], model.get_layer("cam_features").output).predict(x, verbose=0)
    kernel = model.get_layer("logits").kernel.numpy()
    expected = np.maximum(np.einsum("bijk,bk->bij", a, kernel[:, cls].T), 0) / (a.shape[1] * a.shape[2])
    np.testing.assert_allclose(cam, expected, rtol=1e-3, atol=1e-6)
