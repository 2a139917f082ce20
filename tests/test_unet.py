"""U-Net builder, Dice+BCE loss and mean IoU metric."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from cxr_cascade.models import DiceBCELoss, build_unet, mean_iou

FILTERS = (4, 8, 16)


def _np(t):
    return keras.ops.convert_to_numpy(t)


@pytest.fixture(scope="module")
def unet():
    return build_unet(input_shape=(32, 32, 1), filters=FILTERS)


def test_shape_range_and_names(unet):
    out = _np(unet(np.random.default_rng(0).random((2, 32, 32, 1), dtype="float32")))
    assert out.shape == (2, 32, 32, 1) and out.dtype == np.float32
    assert ((out > 0) & (out < 1)).all()
    names = [layer.name for layer in unet.layers]
    for expected in ("enc1_conv1", "enc2_pool", "bottleneck_conv2", "dec2_upconv", "dec1_concat", "mask_logits", "mask"):
        assert expected in names
    assert names[-1] == "mask"
    assert unet.get_layer("bottleneck_conv1").filters == FILTERS[-1]
    # Skip connection: dec1 concatenates enc1's output with the up-sampled map.
    assert unet.get_layer("dec1_concat").input[0] is unet.get_layer("enc1_relu2").output
    for layer in unet.layers:
        if isinstance(layer, keras.layers.Conv2D):
            assert isinstance(layer.kernel_initializer, keras.initializers.HeUniform)


def test_batch_norm_option_and_channels():
    model = build_unet(input_shape=(16, 24, 3), filters=(4, 8), batch_norm=True)
    assert "enc1_bn1" in [layer.name for layer in model.layers]
    assert tuple(model(np.zeros((1, 16, 24, 3), "float32")).shape) == (1, 16, 24, 1)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"input_shape": (62, 62, 1)}, "divisible by 2\\*\\*depth = 4.*Received: input_shape=\\(62, 62, 1\\)"),
        ({"input_shape": (2, 2, 1)}, "Received: input_shape=\\(2, 2, 1\\)"),
        ({"filters": (8,)}, "Received: filters=\\(8,\\)"),
        ({"filters": (8, 0)}, "Received: filters=0"),
    ],
)
def test_bad_arguments(kwargs, fragment):
    args = {"input_shape": (64, 64, 1), "filters": FILTERS}
    args.update(kwargs)
    with pytest.raises(ValueError, match=fragment):
        build_unet(**args)


def test_save_load_round_trip(tmp_path, unet):
    x = np.random.default_rng(1).random((1, 32, 32, 1), dtype="float32")
    unet.save(tmp_path / "unet.keras")
    loaded = keras.saving.load_model(tmp_path / "unet.keras")
    np.testing.assert_array_equal(_np(loaded(x)), _np(unet(x)))


def _numpy_dice_bce(t, p, smooth=1.0):
    t = t.reshape(len(t), -1).astype(np.float64)
    p = np.clip(p.reshape(len(p), -1).astype(np.float64), 1e-7, 1 - 1e-7)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(axis=1)
    dice = (2 * (t * p).sum(axis=1) + smooth) / (t.sum(axis=1) + p.sum(axis=1) + smooth)
    return (bce + 1 - dice).mean()


def test_dice_bce_matches_numpy_and_perfect_mask():
    rng = np.random.default_rng(2)
    t = (rng.random((3, 8, 8, 1)) > 0.6).astype("float32")
    p = rng.uniform(0.05, 0.95, (3, 8, 8, 1)).astype("float32")
    loss = DiceBCELoss()
    assert np.isclose(float(_np(loss(t, p))), _numpy_dice_bce(t, p), rtol=1e-5)
    perfect = float(_np(loss(t, np.clip(t, 1e-7, 1 - 1e-7))))
    assert perfect < 1e-3
    logits = np.log(p / (1 - p))
    assert np.isclose(float(_np(DiceBCELoss(from_logits=True)(t, logits))), _numpy_dice_bce(t, p), rtol=1e-4)


def test_dice_bce_config_and_bad_argument():
    loss = DiceBCELoss(smooth=0.5, dice_weight=2.0, bce_weight=0.5)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert isinstance(clone, DiceBCELoss) and clone.get_config() == loss.get_config()
    with pytest.raises(ValueError, match="Received: smooth=-1"):
        DiceBCELoss(smooth=-1)


def test_mean_iou_matches_sklearn():
    rng = np.random.default_rng(3)
    t = (rng.random((2, 8, 8, 1)) > 0.5).astype("float32")
    p = rng.random((2, 8, 8, 1)).astype("float32")
    metric = mean_iou()
    metric.update_state(t, p)
    expected = jaccard_score(t.ravel().astype(int), (p.ravel() > 0.5).astype(int), average="macro")
    assert np.isclose(float(_np(metric.result())), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="Received: threshold=1.0"):
        mean_iou(threshold=1.0)


def test_one_training_step_with_loss_and_metric(unet):
    model = build_unet(input_shape=(16, 16, 1), filters=(4, 8))
    model.compile(optimizer="adam", loss=DiceBCELoss(), metrics=[mean_iou()])
    rng = np.random.default_rng(4)
    x = rng.random((2, 16, 16, 1), dtype="float32")
    y = (x > 0.5).astype("float32")
    logs = model.fit(x, y, epochs=1, verbose=0).history
    assert np.isfinite(logs["loss"][0]) and 0.0 <= logs["mean_iou"][0] <= 1.0
