"""pipelines.transforms: resize/pad geometry, CLAHE bridge, masking and the affine augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipelines import transforms as T


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(3)


def rotate(image, degrees, interpolation="bilinear", **kwargs):
    image = tf.constant(image, tf.float32)
    matrix = T.affine_matrix(image.shape[0], image.shape[1], degrees, **kwargs)
    return T.affine_transform(image, matrix, interpolation=interpolation).numpy()


# --- resize ------------------------------------------------------------------------------------


def test_stretch_gives_requested_shape():
    image = tf.random.uniform([30, 50, 1], seed=1)
    assert T.resize(image, 16).shape == (16, 16, 1)
    assert T.resize(image, (12, 20)).shape == (12, 20, 1)


def test_pad_keeps_aspect_ratio_and_centres():
    wide = tf.ones([20, 40, 1])
    out = T.resize(wide, 16, "pad").numpy()[..., 0]
    assert out.shape == (16, 16)
    rows = np.where(out.max(axis=1) > 0)[0]
    np.testing.assert_array_equal(rows, np.arange(4, 12))  # 40 -> 16 wide, 20 -> 8 high, centred
    np.testing.assert_allclose(out[4:12], 1.0, atol=1e-6)
    assert out[:4].max() == 0 and out[12:].max() == 0
    tall = T.resize(tf.ones([40, 20, 1]), 16, "pad").numpy()[..., 0]
    np.testing.assert_array_equal(np.where(tall.max(axis=0) > 0)[0], np.arange(4, 12))


def test_resize_same_size_is_identity(rng):
    image = rng.random((12, 12, 1), dtype=np.float32)
    np.testing.assert_array_equal(T.resize(image, 12).numpy(), image)
    np.testing.assert_array_equal(T.resize(image, 12, "pad").numpy(), image)


def test_resize_mask_stays_binary():
    mask = np.zeros((40, 30, 1), np.float32)
    mask[10:30, 5:20] = 1
    out = T.resize_mask(mask, 16, "pad").numpy()
    assert set(np.unique(out)) <= {0.0, 1.0} and out.sum() > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"image_size": 0}, "image_size"),
        ({"image_size": (3,)}, "image_size"),
        ({"image_size": 8, "resize_mode": "crop"}, "resize_mode"),
    ],
)
def test_resize_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        T.resize(tf.zeros([4, 4, 1]), **kwargs)


# --- CLAHE bridge, masking ---------------------------------------------------------------------


def test_to_uint8_rounds_and_saturates():
    x = tf.constant([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 2.0])
    np.testing.assert_array_equal(T.to_uint8(x).numpy(), [0, 0, 0, 2, 255, 255])


def test_apply_clahe_tf_equals_opencv(rng):
    cv2 = pytest.importorskip("cv2")
    pytest.importorskip("pipelines.clahe")
    image = (rng.random((24, 20, 1)) * 0.3 + 0.3).astype(np.float32)
    tf_out = T.apply_clahe(image, 2.0, (4, 4), backend="tf").numpy()
    cv_out = T.apply_clahe(image, 2.0, (4, 4), backend="cv2").numpy()
    ref = cv2.createCLAHE(2.0, (4, 4)).apply(np.round(image[..., 0] * 255).astype(np.uint8))
    np.testing.assert_array_equal(tf_out[..., 0], ref.astype(np.float32) * np.float32(1 / 255))
    np.testing.assert_array_equal(tf_out, cv_out)
    # tf-xla: quantisation, CLAHE and the way back as one XLA computation, the same bits; also
    # inside a tf.data map (static shape) and with an unknown shape (the unfused path).
    np.testing.assert_array_equal(T.apply_clahe(image, 2.0, (4, 4), backend="tf-xla").numpy(), tf_out)
    mapped = tf.data.Dataset.from_tensors(image).map(
        lambda x: T.apply_clahe(x, 2.0, (4, 4), backend="tf-xla"))
    np.testing.assert_array_equal(next(iter(mapped)).numpy(), tf_out)
    unknown = tf.function(lambda x: T.apply_clahe(x, 2.0, (4, 4), backend="tf-xla"),
                          input_signature=[tf.TensorSpec([None, None, 1], tf.float32)])
    np.testing.assert_array_equal(unknown(image).numpy(), tf_out)
    with pytest.raises(ValueError, match="clahe_backend"):
        T.apply_clahe(image, backend="skimage")


def test_apply_clahe_batch_equals_apply_clahe_per_image(rng):
    pytest.importorskip("pipelines.clahe")
    images = (rng.random((5, 24, 20, 1)) * 0.3 + 0.3).astype(np.float32)
    each = np.stack([T.apply_clahe(x, 2.0, (4, 4), backend="tf").numpy() for x in images])
    np.testing.assert_array_equal(T.apply_clahe_batch(images, 2.0, (4, 4)).numpy(), each)
    # In a tf.data map over batches (unknown batch size; the last batch is partial).
    mapped = tf.data.Dataset.from_tensor_slices(images).batch(2).map(
        lambda x: T.apply_clahe_batch(x, 2.0, (4, 4)))
    np.testing.assert_array_equal(np.concatenate([b.numpy() for b in mapped]), each)
    with pytest.raises(ValueError, match=r"Received: images.shape=\(24, 20, 1\)"):
        T.apply_clahe_batch(images[0])


def test_apply_mask_zeroes_outside_lung(rng):
    image = rng.random((5, 5, 1), dtype=np.float32)
    mask = np.zeros((5, 5, 1), np.float32)
    mask[1:4, 1:4] = 0.9  # probabilities are thresholded
    out = T.apply_mask(image, mask).numpy()
    np.testing.assert_array_equal(out[1:4, 1:4], image[1:4, 1:4])
    assert out.sum() == pytest.approx(image[1:4, 1:4].sum())


# --- rotation / affine -------------------------------------------------------------------------


def test_angle_zero_is_identity(rng):
    image = rng.random((11, 9, 1), dtype=np.float32)
    np.testing.assert_array_equal(rotate(image, 0.0), image)


@pytest.mark.parametrize("k, degrees", [(1, 90.0), (2, 180.0), (3, -90.0)])
def test_rotation_matches_np_rot90(rng, k, degrees):
    image = rng.random((10, 10, 1), dtype=np.float32)
    np.testing.assert_allclose(rotate(image, degrees), np.rot90(image, k=k), atol=1e-5)


def test_shift_moves_content_and_fills_black(rng):
    image = rng.random((6, 8, 1), dtype=np.float32) + 0.1
    out = rotate(image, 0.0, shift_x=2.0, shift_y=1.0)
    np.testing.assert_allclose(out[1:, 2:], image[:-1, :-2], atol=1e-6)
    assert out[:1].max() == 0 and out[:, :2].max() == 0


def test_zoom_scales_about_the_centre():
    image = np.zeros((9, 9, 1), np.float32)
    image[3:6, 3:6] = 1.0  # 3x3 block at the centre
    out = rotate(image, 0.0, scale=3.0, interpolation="nearest")
    assert out.sum() == 81  # the centre block fills the whole 9x9 image


def test_masks_stay_binary_and_follow_the_image(rng):
    mask = np.zeros((32, 32, 1), np.float32)
    mask[6:26, 4:14] = 1
    mask[8:24, 18:28] = 1
    for degrees in (17.0, -29.0):
        nearest = rotate(mask, degrees, interpolation="nearest", scale=1.1, shift_x=1.5)
        assert set(np.unique(nearest)) <= {0.0, 1.0}
        # The mask rotated as an image (bilinear) and thresholded is the same region.
        as_image = rotate(mask, degrees, scale=1.1, shift_x=1.5) > 0.5
        assert (as_image == (nearest > 0.5)).mean() > 0.97


def test_random_affine_matrix_ranges():
    u_mid = tf.constant([0.5, 0.5, 0.5, 0.5])
    identity = T.random_affine_matrix(u_mid, 8, 8, rotation_degrees=30, shift=0.1, zoom=0.2)
    np.testing.assert_allclose(identity.numpy(), [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-6)
    extreme = T.random_affine_matrix(tf.constant([1.0, 0.5, 0.5, 0.5]), 8, 8, rotation_degrees=30)
    np.testing.assert_allclose(extreme.numpy(), T.affine_matrix(8, 8, 30.0).numpy(), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"interpolation": "bicubic"}, "interpolation"), ({"fill_mode": "mirror"}, "fill_mode")],
)
def test_affine_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        T.affine_transform(tf.zeros([4, 4, 1]), T.affine_matrix(4, 4, 10.0), **kwargs)


@pytest.mark.parametrize("name, value", [("rotation_degrees", -1.0), ("shift", 2.0), ("zoom", 1.0)])
def test_check_augmentation(name, value):
    kwargs = {"rotation_degrees": 0.0, "shift": 0.0, "zoom": 0.0, name: value}
    with pytest.raises(ValueError, match=name):
        T.check_augmentation(**kwargs)
