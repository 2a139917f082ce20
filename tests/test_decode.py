"""pipelines.decode: every container and bit depth to one gray float32 channel, bad files by path."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

cv2 = pytest.importorskip("cv2")

from pipelines import decode as D  # noqa: E402

LUMA = np.asarray(D.LUMA_WEIGHTS, np.float32)


def luma(rgb: np.ndarray) -> np.ndarray:
    """NumPy reference: BT.601 luma of float32 RGB [H, W, 3] -> [H, W, 1]."""
    rgb = rgb.astype(np.float32)
    return (rgb[..., 0:1] * LUMA[0] + rgb[..., 1:2] * LUMA[1] + rgb[..., 2:3] * LUMA[2]).astype(np.float32)


def unit(a: np.ndarray, max_value: int = 255) -> np.ndarray:
    """NumPy reference of the documented scaling: float32(v) * float32(1 / max_value)."""
    return a.astype(np.float32) * np.float32(1.0 / max_value)


def decode_file(path) -> np.ndarray:
    return D.decode_image(tf.io.read_file(str(path))).numpy()


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(7)


def test_gray_8bit_png_exact(tmp_path, rng):
    a = rng.integers(0, 256, (9, 13), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g8.png"), a)
    out = decode_file(tmp_path / "g8.png")
    assert out.shape == (9, 13, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], unit(a))
    assert np.abs(out[..., 0] - a / 255.0).max() <= 2.0**-23  # within one ulp of v / 255


def test_gray_16bit_png_scaled_by_65535(tmp_path, rng):
    a = rng.integers(0, 65536, (7, 5), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), a)
    out = decode_file(tmp_path / "g16.png")
    np.testing.assert_array_equal(out[..., 0], unit(a, 65535))
    assert out.max() <= 1.0


def test_rgb_png_is_bt601_luma(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb[..., ::-1])  # cv2 writes BGR
    out = decode_file(tmp_path / "c.png")
    np.testing.assert_allclose(out, luma(rgb / 255.0), atol=1e-6)
    # Independent check against OpenCV's own RGB->gray (integer arithmetic, rounded to 8 bit).
    ref = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    assert np.abs(out[..., 0] * 255 - ref).max() <= 0.51


def test_rgb_16bit_png(tmp_path, rng):
    rgb = rng.integers(0, 65536, (4, 6, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "c16.png"), rgb[..., ::-1])
    np.testing.assert_allclose(decode_file(tmp_path / "c16.png"), luma(rgb / 65535.0), atol=1e-6)


def test_gray_stored_as_rgb_keeps_its_value(tmp_path, rng):
    a = rng.integers(0, 256, (5, 5), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgb_gray.png"), np.dstack([a, a, a]))
    np.testing.assert_allclose(decode_file(tmp_path / "rgb_gray.png")[..., 0], a / 255.0, atol=1e-6)


def test_rgba_drops_alpha(tmp_path, rng):
    rgba = rng.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    rgba[..., 3] = rng.integers(0, 256, (6, 7))  # translucent pixels must not change the gray value
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c.png")
    np.testing.assert_allclose(decode_file(tmp_path / "c.png"), luma(rgba[..., :3] / 255.0), atol=1e-6)


def test_gray_alpha_keeps_gray(tmp_path, rng):
    la = rng.integers(0, 256, (5, 6, 2), dtype=np.uint8)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(decode_file(tmp_path / "la.png")[..., 0], unit(la[..., 0]))


def test_palette_png_expanded_then_luma(tmp_path, rng):
    rgb = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("P").save(tmp_path / "p.png")
    ref_rgb = np.asarray(Image.open(tmp_path / "p.png").convert("RGB"))
    np.testing.assert_allclose(decode_file(tmp_path / "p.png"), luma(ref_rgb / 255.0), atol=1e-6)


@pytest.mark.parametrize("color", [False, True])
def test_jpeg_matches_opencv_within_codec_tolerance(tmp_path, rng, color):
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (32, 24, 3), dtype=np.uint8), (7, 7), 2)
    image = smooth if color else smooth[..., 0]
    cv2.imwrite(str(tmp_path / "x.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
    decoded = cv2.imread(str(tmp_path / "x.jpg"), cv2.IMREAD_UNCHANGED)
    ref = luma(decoded[..., ::-1] / 255.0) if color else decoded[..., None] / 255.0
    out = decode_file(tmp_path / "x.jpg")
    assert out.shape == (32, 24, 1)
    # Same accurate IDCT as OpenCV; two libjpeg builds may still differ in colour upsampling.
    assert np.abs(out - ref).max() <= (1 / 255 if color else 1e-6)


def test_8bit_gray_png_gives_exact_unit_floats(tmp_path, rng):
    a = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "g.png"), a)
    np.testing.assert_array_equal(decode_file(tmp_path / "g.png"), unit(a)[..., None])


def test_1bit_png_scaled_to_full_range(tmp_path):
    bits = np.zeros((4, 8), bool)
    bits[:, ::2] = True
    Image.fromarray(bits).save(tmp_path / "b.png")  # mode "1": a 1-bit grey PNG
    np.testing.assert_array_equal(decode_file(tmp_path / "b.png")[..., 0], bits.astype(np.float32))


def test_bmp_and_gif_are_refused_by_the_one_decode_policy(tmp_path, rng):
    """Only PNG and JPEG are read, by every command and the SavedModel."""
    a = rng.integers(0, 256, (6, 9), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "x.bmp"), a)
    Image.fromarray(a).save(tmp_path / "x.gif")
    for name in ("x.bmp", "x.gif"):
        with pytest.raises(tf.errors.InvalidArgumentError, match="not a PNG or JPEG"):
            decode_file(tmp_path / name)


def test_decode_in_graph_with_string_input(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "c.png"), rgb)
    fn = tf.function(D.decode_image, input_signature=[tf.TensorSpec([], tf.string)])
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, None, 1]
    data = (tmp_path / "c.png").read_bytes()
    np.testing.assert_array_equal(fn(tf.constant(data)).numpy(), D.decode_image(tf.constant(data)).numpy())


def test_masks_threshold_and_union(tmp_path):
    left = np.zeros((4, 6), np.uint8)
    left[:, :2] = 255
    left[0, 2] = 127  # V7 "Ignore" is not lung
    right = np.zeros((4, 6), np.uint8)
    right[:, 4:] = 255
    cv2.imwrite(str(tmp_path / "l.png"), left)
    cv2.imwrite(str(tmp_path / "r.png"), right)
    one = D.read_mask(str(tmp_path / "l.png")).numpy()[..., 0]
    np.testing.assert_array_equal(one, (left == 255).astype(np.float32))
    both = D.read_mask(f"{tmp_path / 'l.png'}|{tmp_path / 'r.png'}").numpy()[..., 0]
    np.testing.assert_array_equal(both, ((left == 255) | (right == 255)).astype(np.float32))


def test_validate_names_each_bad_file(tmp_path, rng):
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rng.integers(0, 256, (8, 8), dtype=np.uint8))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:40])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    missing = tmp_path / "missing.png"
    small_mask = tmp_path / "small_mask.png"
    cv2.imwrite(str(small_mask), np.zeros((4, 4), np.uint8))
    paths = [good, truncated, empty, text, missing, good]
    masks = ["", "", "", "", "", small_mask]
    bad = D.validate_image_files([str(p) for p in paths], [str(m) for m in masks])
    reasons = {b.path: b.reason for b in bad}
    assert len(bad) == 5
    assert "corrupt or truncated png" in reasons[str(truncated)]
    assert "empty" in reasons[str(empty)]
    assert "signature" in reasons[str(text)]
    assert "not found" in reasons[str(missing)]
    mask_reason = [b.reason for b in bad if b.path == str(good)][0]
    assert str(small_mask) in mask_reason and "4x4" in mask_reason
    assert str(truncated) in D.format_bad_files(bad)


def test_validate_rejects_mismatched_mask_list():
    with pytest.raises(ValueError, match="mask_paths"):
        D.validate_image_files(["a.png"], ["m.png", "n.png"])


# --- real data (skipped when ../shared/data is absent) -----------------------------------------

IEEE_SAMPLES = {
    "PNG RGBA named .jpg": "000001-12.jpg",
    "JPEG RGB": "000001-19.jpg",
    "JPEG L": "00870a9c.jpg",
    "PNG RGB": "1-s2.0-S0085253820303616-gr1_lrg-a.png",
    "PNG L": "10.1016-slash-j.crad.2020.04.002-b.png",
}


@pytest.mark.parametrize("kind", sorted(IEEE_SAMPLES))
def test_real_ieee8023_containers_decode_by_content(ieee8023_dir, kind):
    path = ieee8023_dir / "images" / IEEE_SAMPLES[kind]
    if not path.is_file():
        pytest.skip(f"sample absent: {path}")
    pil = Image.open(path)
    ref = luma(np.asarray(pil.convert("RGB")) / 255.0)  # alpha dropped, as documented
    out = decode_file(path)
    assert out.shape == ref.shape
    # PIL and TF bundle different libjpeg builds (colour upsampling may differ by a grey level).
    assert np.abs(out - ref).max() <= (2 / 255 if pil.format == "JPEG" else 1e-6)


def test_real_kermany_rgb_jpeg_is_its_gray(kermany_dir):
    path = sorted((kermany_dir / "train" / "NORMAL").glob("*.jpeg"))[0]
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    out = decode_file(path)[..., 0]
    assert out.shape == gray.shape
    assert np.abs(out * 255 - gray).max() <= 2


@pytest.mark.slow
def test_real_ieee8023_all_images_validate(ieee8023_dir):
    paths = sorted(str(p) for p in (ieee8023_dir / "images").iterdir())
    assert D.validate_image_files(paths) == []
