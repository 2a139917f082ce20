"""pipelines.datasets and pipelines.preprocess: tf.data pipelines as the paper's training used them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

cv2 = pytest.importorskip("cv2")
pytest.importorskip("pipelines.clahe")

from pipelines.config import AugmentConfig, PreprocessConfig  # noqa: E402
from pipelines.datasets import build_dataset, build_segmentation_dataset, class_weights  # noqa: E402
from pipelines.preprocess import preprocess_batch_bytes, preprocess_image_bytes  # noqa: E402
from pipelines.records import Record, write_manifest  # noqa: E402

CLASSES = ["normal", "bacterial", "viral"]
SIZE = 16
PRE = PreprocessConfig(image_size=SIZE)


def Rec(path, label, mask_path=""):
    return Record(path=str(path), label=label, patient_id=f"p{abs(hash(str(path))) % 997}",
                  source="tiny", mask_path=str(mask_path))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """12 tiny chest-like images (PNG 8/16 bit, RGB JPEG, RGBA PNG) with lung masks."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    records = []
    for i in range(12):
        h, w = 20 + i % 3, 18 + i % 4
        base = cv2.GaussianBlur(rng.integers(40, 200, (h, w), dtype=np.uint8), (5, 5), 1.5)
        kind = i % 4
        if kind == 0:
            path = root / f"im{i}.png"
            cv2.imwrite(str(path), base)
        elif kind == 1:
            path = root / f"im{i}.png"
            cv2.imwrite(str(path), base.astype(np.uint16) * 257)
        elif kind == 2:
            path = root / f"im{i}.jpg"
            cv2.imwrite(str(path), np.dstack([base] * 3))
        else:
            path = root / f"im{i}.png"
            cv2.imwrite(str(path), np.dstack([base] * 3 + [np.full_like(base, 255)]))
        mask = np.zeros((h, w), np.uint8)
        mask[3 : h - 3, 2 : w // 2 - 1] = 255
        mask[3 : h - 3, w // 2 + 1 : w - 2] = 255
        mask_path = root / f"im{i}_mask.png"
        cv2.imwrite(str(mask_path), mask)
        records.append(Rec(path, CLASSES[i % 3] if i < 9 else "normal", mask_path))
    return records


def batches(ds, n=None):
    out = []
    for i, batch in enumerate(ds):
        if n is not None and i >= n:
            break
        out.append([t.numpy() for t in batch])
    return out


def images_of(ds):
    return np.concatenate([b[0] for b in batches(ds)])


def test_feeds_a_keras_model(files):
    import keras

    ds = build_dataset(
        files, class_names=CLASSES, preprocess=PRE, batch_size=4, training=True, seed=0,
        augment=AugmentConfig(clahe_fraction=0.4, rotation_degrees=30), label_mode="one_hot",
    )
    images, labels = next(iter(ds))
    assert images.shape == (4, SIZE, SIZE, 1) and images.dtype == tf.float32
    assert labels.shape == (4, 3)
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(optimizer="sgd", loss="categorical_crossentropy")
    history = model.fit(ds, epochs=1, steps_per_epoch=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


def test_same_seed_same_batches_other_seed_differs(files):
    kwargs = dict(
        class_names=CLASSES, preprocess=PRE, batch_size=4, training=True,
        augment=AugmentConfig(clahe_fraction=0.4, rotation_degrees=30, shift=0.1, zoom=0.1),
    )
    a = batches(build_dataset(files, seed=5, **kwargs), 2)
    b = batches(build_dataset(files, seed=5, **kwargs), 2)
    c = batches(build_dataset(files, seed=6, **kwargs), 2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x[0], y[0])
        np.testing.assert_array_equal(x[1], y[1])
    assert not all(np.array_equal(x[0], z[0]) for x, z in zip(a, c))


def test_epochs_reshuffle_and_redraw(files):
    ds = build_dataset(files, class_names=CLASSES, preprocess=PRE, batch_size=12, training=True,
                       seed=1, augment=AugmentConfig(rotation_degrees=30))
    first, second = images_of(ds), images_of(ds)
    assert not np.array_equal(first, second)


def test_evaluation_is_ordered_and_unaugmented(files):
    ds = build_dataset(files, class_names=CLASSES, preprocess=PRE, batch_size=5, training=False,
                       augment=AugmentConfig(rotation_degrees=30, clahe_fraction=0.4))
    got = batches(ds)
    assert [len(b[1]) for b in got] == [5, 5, 2]
    labels = np.concatenate([b[1] for b in got])
    np.testing.assert_array_equal(labels, [CLASSES.index(r.label) for r in files])
    first = preprocess_image_bytes(tf.io.read_file(files[0].path), image_size=SIZE).numpy()
    np.testing.assert_array_equal(got[0][0][0], first)


def test_eval_pipeline_and_serving_graph_are_bit_identical(files, tmp_path):
    settings = dict(image_size=SIZE, resize_mode="pad", clahe=True, clip_limit=2.0)
    ds = build_dataset(files, class_names=CLASSES, batch_size=len(files), training=False,
                       preprocess=PreprocessConfig(**settings))
    from_pipeline = images_of(ds)

    class Serving(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def serve(self, image_bytes):
            return {"images": preprocess_batch_bytes(image_bytes, **settings)}

    module = Serving()
    data = tf.constant([open(r.path, "rb").read() for r in files])
    np.testing.assert_array_equal(module.serve(data)["images"].numpy(), from_pipeline)
    tf.saved_model.save(module, str(tmp_path / "serving"), signatures={"serving_default": module.serve})
    reloaded = tf.saved_model.load(str(tmp_path / "serving")).signatures["serving_default"]
    np.testing.assert_array_equal(reloaded(image_bytes=data)["images"].numpy(), from_pipeline)


@pytest.mark.parametrize(
    "settings",
    [
        dict(training=False, preprocess=PreprocessConfig(image_size=SIZE, clahe=True, resize_mode="pad")),
        dict(training=True, seed=3, balance="sample_weight", label_mode="one_hot"),
        dict(training=False, drop_remainder=True),
    ],
)
def test_clahe_per_batch_gives_the_per_image_batches(files, monkeypatch, settings):
    """CLAHE on whole batches (clahe=True, tf-xla) = CLAHE in the decode stage, bit for bit."""
    import pipelines.datasets as datasets

    used, per_batch = [], datasets._clahe_per_batch

    def spy(*args, **kwargs):
        used.append(per_batch(*args, **kwargs))
        return used[-1]

    monkeypatch.setattr(datasets, "_clahe_per_batch", spy)
    settings = {"preprocess": PreprocessConfig(image_size=SIZE, clahe=True), **settings}
    build = lambda: build_dataset(files, class_names=CLASSES, batch_size=5, **settings)
    batched = batches(build())
    monkeypatch.setattr(datasets, "_clahe_per_batch", lambda *a, **k: False)
    per_image = batches(build())
    assert used == [True]
    assert [len(b[0]) for b in batched] == [len(b[0]) for b in per_image]
    for got, want in zip(batched, per_image):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w)


def test_clahe_per_batch_only_where_exact(files, tmp_path):
    from pipelines.config import AugmentConfig
    from pipelines.datasets import _clahe_per_batch

    every, none = np.ones(4, bool), np.zeros(4, bool)
    half = np.array([True, False, True, False])
    plain = AugmentConfig()
    exact = dict(with_clahe=every, with_seg=none, cache=False, clahe_backend="tf-xla")
    assert _clahe_per_batch(plain, **exact)
    assert not _clahe_per_batch(plain, **{**exact, "with_clahe": half})
    assert not _clahe_per_batch(plain, **{**exact, "with_seg": half})
    assert not _clahe_per_batch(plain, **{**exact, "cache": str(tmp_path / "c")})
    assert not _clahe_per_batch(plain, **{**exact, "clahe_backend": "tf"})
    assert not _clahe_per_batch(AugmentConfig(rotation_degrees=30.0), **exact)


def test_clahe_replace_fraction_is_about_40_percent(tmp_path):
    """200 low-contrast images: CLAHE stretches their range, so an enhanced image is recognisable."""
    ramp = np.tile(np.linspace(100, 120, 8).astype(np.uint8), (8, 1))
    path = tmp_path / "ramp.png"
    cv2.imwrite(str(path), ramp)
    paths = [str(path)] * 200
    ds = build_dataset((paths, ["normal"] * 200), class_names=CLASSES, batch_size=50, training=True,
                       seed=11, preprocess=PreprocessConfig(image_size=8, clip_limit=40.0, tile_grid_size=(1, 1)),
                       augment=AugmentConfig(clahe_fraction=0.4))
    images = images_of(ds)
    enhanced = (images.max(axis=(1, 2, 3)) - images.min(axis=(1, 2, 3))) > 0.5
    assert images.shape[0] == 200
    # Binomial(200, 0.4): mean 80, sd 6.9; +-3.5 sd.
    assert 56 <= enhanced.sum() <= 104
    again = images_of(ds)  # redrawn in the next epoch
    assert not np.array_equal(enhanced, (again.max(axis=(1, 2, 3)) - again.min(axis=(1, 2, 3))) > 0.5)


def test_stage2_copies_multiply_the_data_set(files):
    common = dict(class_names=CLASSES, preprocess=PRE, batch_size=64, training=True, seed=2)
    n = len(files)
    stage2 = AugmentConfig(clahe_fraction=1.0, clahe_mode="add", segmented_copies=True)
    four = build_dataset(files, augment=stage2, **common)
    assert four.num_examples == 4 * n
    images = images_of(four)
    assert images.shape[0] == 4 * n
    # Half the copies are lung-masked: their border (outside both lungs) is black.
    border_black = (images[:, 0, :, 0].max(axis=1) == 0) & (images[:, :, 0, 0].max(axis=1) == 0)
    assert border_black.sum() == 2 * n
    # Random CLAHE ("replace") comes before the mask of the segmented copies.
    replace = images_of(build_dataset(
        files, augment=AugmentConfig(clahe_fraction=0.5, segmented_copies=True), **common))
    assert replace.shape[0] == 2 * n
    assert ((replace[:, 0, :, 0].max(axis=1) == 0) & (replace[:, :, 0, 0].max(axis=1) == 0)).sum() == n
    partial = build_dataset(files, augment=AugmentConfig(clahe_fraction=0.5, clahe_mode="add"), **common)
    assert partial.num_examples == n + n // 2
    assert images_of(partial).shape[0] == n + n // 2
    plain = build_dataset(files, augment=stage2, **{**common, "training": False})
    assert plain.num_examples == n  # copies are for training only


def test_segment_masks_every_image(files):
    masked = PreprocessConfig(image_size=SIZE, segment=True)
    ds = build_dataset(files, class_names=CLASSES, preprocess=masked, batch_size=12, training=False)
    images = images_of(ds)
    assert images[:, 0].max() == 0 and images[:, :, 0].max() == 0
    with_fn = build_dataset(files, class_names=CLASSES, preprocess=masked, batch_size=12, training=False,
                            mask_fn=lambda x: tf.cast(x > 2.0, tf.float32))
    assert images_of(with_fn).max() == 0  # a segmenter that finds no lung blanks everything


def test_balance_oversample_and_sample_weight(files):
    common = dict(class_names=CLASSES, preprocess=PRE, batch_size=64, training=True, seed=0)
    over = build_dataset(files, balance="oversample", **common)
    labels = np.concatenate([b[1] for b in batches(over)])
    np.testing.assert_array_equal(np.bincount(labels), [6, 6, 6])
    weighted = build_dataset(files, balance="sample_weight", **common)
    _, y, w = batches(weighted)[0]
    expected = class_weights(files, CLASSES)
    np.testing.assert_allclose(w, [expected[int(c)] for c in y])
    assert expected == pytest.approx({0: 12 / 18, 1: 12 / 9, 2: 12 / 9})


def test_bad_image_is_named_or_skipped(files, tmp_path):
    broken = tmp_path / "broken_scan.png"
    broken.write_bytes(open(files[0].path, "rb").read()[:60])
    records = list(files) + [Rec(broken, "viral")]
    common = dict(class_names=CLASSES, preprocess=PRE, batch_size=4, training=True, seed=0)
    with pytest.raises(ValueError, match="broken_scan.png") as info:
        build_dataset(records, **common)
    assert "skip_bad=True" in str(info.value)
    with pytest.warns(UserWarning, match="broken_scan.png"):
        ds = build_dataset(records, skip_bad=True, **common)
    assert [b.path for b in ds.bad_files] == [str(broken)]
    assert sum(len(b[1]) for b in batches(ds)) == len(files)


def test_segmentation_dataset_moves_image_and_mask_together(files):
    # Each image *is* its mask, so after the joint transform the image must still match the mask.
    pairs = ([r.mask_path for r in files], [r.mask_path for r in files])
    ds = build_segmentation_dataset(pairs, preprocess=PRE, batch_size=12, training=True, seed=4,
                                    augment=AugmentConfig(rotation_degrees=30, shift=0.1, zoom=0.1))
    images, masks = batches(ds)[0]
    assert images.shape == masks.shape == (12, SIZE, SIZE, 1)
    assert set(np.unique(masks)) <= {0.0, 1.0}
    # Same seed, same order, no augmentation: the masks did move.
    still = batches(build_segmentation_dataset(pairs, preprocess=PRE, batch_size=12, training=True, seed=4))[0][1]
    assert (still != masks).mean() > 0.05
    # Bilinear image vs nearest mask differ only along the (long, at 16 px) lung borders.
    assert ((images > 0.5) == (masks > 0.5)).mean() > 0.9
    assert ((images > 0.5) == (masks > 0.5)).mean() > ((images > 0.5) == (still > 0.5)).mean() + 0.03


def test_manifest_path_and_records_give_the_same_data(files, tmp_path):
    manifest = write_manifest(files, tmp_path / "manifest.csv", relative=True)
    common = dict(class_names=CLASSES, preprocess=PRE, batch_size=12, training=False)
    from_csv = batches(build_dataset(manifest, **common))[0]
    from_records = batches(build_dataset(files, **common))[0]
    np.testing.assert_array_equal(from_csv[0], from_records[0])
    np.testing.assert_array_equal(from_csv[1], from_records[1])


def test_real_kermany_and_ieee8023_through_the_pipeline(kermany_dir, ieee8023_dir):
    """A few real files of every container (RGB JPEG, L JPEG, RGBA PNG named .jpg) in pad mode."""
    kermany = sorted((kermany_dir / "train" / "NORMAL").glob("*.jpeg"))[:3]
    ieee = [ieee8023_dir / "images" / n for n in ("000001-12.jpg", "00870a9c.jpg", "000001-19.jpg")]
    paths = [str(p) for p in kermany + ieee if p.is_file()]
    ds = build_dataset((paths, ["normal"] * len(paths)), class_names=CLASSES,
                       preprocess=PreprocessConfig(image_size=64, resize_mode="pad"),
                       batch_size=len(paths), training=True, seed=0,
                       augment=AugmentConfig(clahe_fraction=0.5, rotation_degrees=30))
    images, labels = batches(ds)[0]
    assert images.shape == (len(paths), 64, 64, 1)
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.std() > 0.05


def test_segmentation_needs_masks(files):
    with pytest.raises(ValueError, match="mask"):
        build_segmentation_dataset([Rec(files[0].path, "normal")], preprocess=PRE, batch_size=1,
                                   training=False)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"augment": {"clahe_mode": "double"}}, "clahe_mode"),
        ({"augment": {"clahe_fraction": 1.5}}, "clahe_fraction"),
        ({"balance": "undersample"}, "balance"),
        ({"balance": None}, "balance"),  # "off" is the one spelling of no balancing
        ({"label_mode": "sparse"}, "label_mode"),
        ({"batch_size": 0}, "batch_size"),
        ({"augment": {"rotation_degrees": -30}}, "rotation_degrees"),
        ({"preprocess": {"clahe": True}, "augment": {"clahe_fraction": 0.4}}, "clahe_fraction"),
        ({"class_names": ["normal"]}, "class_names"),
        ({"preprocess": None}, "preprocess"),
        ({"augment": "rotate"}, "augment"),
    ],
)
def test_bad_arguments(files, kwargs, match):
    args = dict(class_names=CLASSES, preprocess=PRE, batch_size=4, training=True, seed=0)
    with pytest.raises(ValueError, match=match):
        # The config objects check their own fields, so they are built inside the `raises`.
        if isinstance(kwargs.get("preprocess"), dict):
            kwargs = {**kwargs, "preprocess": PreprocessConfig(image_size=SIZE, **kwargs["preprocess"])}
        if isinstance(kwargs.get("augment"), dict):
            kwargs = {**kwargs, "augment": AugmentConfig(**kwargs["augment"])}
        build_dataset(files, **{**args, **kwargs})


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"preprocess": PreprocessConfig(image_size=SIZE, segment=True)}, "preprocess.segment=True"),
        ({"augment": AugmentConfig(clahe_fraction=0.5, clahe_mode="add")}, "augment.clahe_mode='add'"),
        ({"augment": AugmentConfig(segmented_copies=True)}, "augment.segmented_copies=True"),
        ({"preprocess": None}, "preprocess"),
    ],
)
def test_segmentation_refuses_what_it_cannot_do(files, settings, match):
    pairs = ([r.path for r in files], [r.mask_path for r in files])
    with pytest.raises(ValueError, match=match):
        build_segmentation_dataset(pairs, **{"preprocess": PRE, **settings}, batch_size=4, training=True)


def test_segmented_copies_need_masks(files):
    with pytest.raises(ValueError, match="mask"):
        build_dataset([Rec(files[0].path, "normal")], class_names=CLASSES, preprocess=PRE,
                      batch_size=1, training=True, augment=AugmentConfig(segmented_copies=True))


def test_plan_copies_lists_originals_then_clahe_then_masked_copies():
    from pipelines.datasets import plan_copies

    indices = np.array([4, 7, 9, 11])
    entry, clahe, seg = plan_copies(indices, np.random.default_rng(0), add_clahe_fraction=0.5,
                                    segmented_copies=True)
    assert len(entry) == 2 * (4 + 2)
    np.testing.assert_array_equal(entry[:4], indices)
    assert set(entry[4:6]) <= set(indices) and list(entry[4:6]) == sorted(entry[4:6])
    np.testing.assert_array_equal(clahe, [0, 0, 0, 0, 1, 1] * 2)
    np.testing.assert_array_equal(seg, [0] * 6 + [1] * 6)
    # Same seed, same plan; no copies at all without the options.
    again = plan_copies(indices, np.random.default_rng(0), add_clahe_fraction=0.5, segmented_copies=True)
    np.testing.assert_array_equal(entry, again[0])
    plain = plan_copies(indices, np.random.default_rng(0), clahe=True)
    np.testing.assert_array_equal(plain[0], indices)
    assert plain[1].all() and not plain[2].any()
