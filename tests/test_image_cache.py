"""pipelines.image_cache: a disk cache of decoded images, reused only for identical inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from pipelines.config import AugmentConfig, PreprocessConfig  # noqa: E402
from pipelines.datasets import build_dataset  # noqa: E402
from pipelines.image_cache import ImageCache, cache_key, resolve_cache  # noqa: E402

SIZE = 16


@pytest.fixture
def pngs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        path = tmp_path / "img" / f"im{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, (20 + i, 18), dtype=np.uint8))
        paths.append(str(path))
    return paths


def build(paths, cache, clahe=False, **kwargs):
    kwargs = {"training": False, "batch_size": 4, "seed": 0, **kwargs}
    return build_dataset((paths, ["a"] * len(paths)), class_names=["a"], cache=cache,
                         preprocess=PreprocessConfig(image_size=SIZE, clahe=clahe), **kwargs)


def all_images(ds) -> np.ndarray:
    return np.concatenate([images.numpy() for images, _ in ds])


def cache_files(directory) -> list[str]:
    return sorted(f for f in os.listdir(directory) if f.endswith(".index"))


# ----------------------------------------------------------------------------------------- key
def test_key_depends_on_settings_elements_and_file_contents(pngs):
    columns = {"path": np.asarray(pngs), "label": np.zeros(len(pngs), np.int32)}
    key = cache_key({"image_size": 16}, columns)
    assert key == cache_key({"image_size": 16}, dict(columns))  # deterministic
    assert len(key) == 20
    assert key != cache_key({"image_size": 32}, columns)
    assert key != cache_key({"image_size": 16}, {**columns, "path": np.asarray(pngs[::-1])})
    assert key != cache_key({"image_size": 16}, {**columns, "label": np.ones(len(pngs), np.int32)})
    stat = os.stat(pngs[2])
    os.utime(pngs[2], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # an edited file
    assert key != cache_key({"image_size": 16}, columns)


def test_cache_skips_decoding_once_complete(pngs, tmp_path):
    cache = ImageCache(str(tmp_path / "cache"))
    first = all_images(build(pngs, cache))
    assert len(cache_files(tmp_path / "cache")) == 1
    np.testing.assert_array_equal(first, all_images(build(pngs, False)))
    # Garbage of the same size and time (what the key sees): the cached images are served, so
    # nothing is decoded any more.
    for path in pngs:
        stat = os.stat(path)
        with open(path, "wb") as f:
            f.write(b"x" * stat.st_size)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    np.testing.assert_array_equal(all_images(build(pngs, cache, validate=False)), first)
    with pytest.raises(Exception):  # negative control: without the cache the files are read
        all_images(build(pngs, False, validate=False))


def test_cache_is_reused_for_same_inputs_and_not_for_others(pngs, tmp_path):
    directory = tmp_path / "cache"
    cache = ImageCache(str(directory))
    a = all_images(build(pngs, cache))
    b = all_images(build(pngs, cache))
    np.testing.assert_array_equal(a, b)
    assert len(cache_files(directory)) == 1  # reused
    c = all_images(build(pngs, cache, clahe=True))
    assert len(cache_files(directory)) == 2  # other settings: another cache, not the stale one
    np.testing.assert_array_equal(c, all_images(build(pngs, False, clahe=True)))
    assert not np.array_equal(a, c)
    d = all_images(build(pngs[:4], cache))
    assert len(cache_files(directory)) == 3 and len(d) == 4


def test_training_cache_gives_the_same_batches_as_no_cache(pngs, tmp_path):
    kwargs = dict(training=True, augment=AugmentConfig(rotation_degrees=10.0, clahe_fraction=0.5))
    cache = ImageCache(str(tmp_path / "cache"))
    for _ in range(2):  # first build writes, second reads
        cached = all_images(build(pngs, cache, **kwargs))
        np.testing.assert_array_equal(cached, all_images(build(pngs, False, **kwargs)))


def test_bad_arguments():
    with pytest.raises(ValueError, match="directory"):
        ImageCache("")
    with pytest.raises(ValueError, match="cache_key"):
        resolve_cache(ImageCache("x"), {}, {"path": np.asarray(["a"])}, mask_fn=lambda image: image)
    assert resolve_cache(True, {}, {}) is True and resolve_cache("p", {}, {}) == "p"


def test_segmentation_cache_is_keyed_and_reused(pngs, tmp_path):
    from pipelines.datasets import build_segmentation_dataset

    masks = []
    for i, path in enumerate(pngs):
        mask = tmp_path / "mask" / f"m{i}.png"
        mask.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(mask), np.full((20 + i, 18), 255 * (i % 2), np.uint8))
        masks.append(str(mask))
    directory = tmp_path / "cache"

    def images(cache, clahe=False):
        ds = build_segmentation_dataset((pngs, masks), batch_size=4, training=False, cache=cache,
                                        preprocess=PreprocessConfig(image_size=SIZE, clahe=clahe))
        return np.concatenate([np.concatenate([x.numpy(), y.numpy()], -1) for x, y in ds])

    first = images(ImageCache(str(directory)))
    np.testing.assert_array_equal(first, images(False))
    assert len(cache_files(directory)) == 1
    np.testing.assert_array_equal(images(ImageCache(str(directory))), first)
    assert len(cache_files(directory)) == 1  # reused
    images(ImageCache(str(directory)), clahe=True)
    assert len(cache_files(directory)) == 2  # another setting, another cache
