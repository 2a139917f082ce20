"""Export for TF Serving: SavedModels that take file bytes, in TF Serving's layout.

One module-scoped export (tiny stage 1 with MoEx and dropout, tiny stage 2 on U-Net lung-masked
input at another size, a real-builder U-Net) is shared by most tests; the real SEME-ResNet50 builder
is exported once on its own.
"""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf
import keras

from cxr_cascade.artifacts import Stage
from cxr_cascade.export import export_models, models_config, rest, serving
from cxr_cascade.export.serving import StagePreprocessing
from cxr_cascade.evaluation.cascade import cascade_decision
from cxr_cascade.export.archive import existing_versions, next_version
from cxr_cascade.models import MoEx, MomentExchange, build_classifier, build_unet
from pipelines.datasets import build_dataset
from pipelines.preprocess import PreprocessConfig

REPO = Path(__file__).resolve().parent.parent
SAVED_MODEL_CLI = REPO / ".venv" / "bin" / "saved_model_cli"
STAGE1 = ("normal", "bacterial", "viral")
STAGE2 = ("covid19", "viral")
RANDOM_OPS = {
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal",
    "RandomShuffle", "Multinomial", "RandomGamma", "RandomPoisson", "RandomPoissonV2",
    "StatelessRandomUniformV2", "StatelessRandomNormalV2", "StatelessRandomUniformIntV2",
    "StatelessRandomUniform", "StatelessRandomNormal", "StatelessRandomUniformInt",
    "StatelessRandomGetKeyCounter", "StatelessShuffle", "RngReadAndSkip", "RngSkip",
    "StatefulUniform", "StatefulStandardNormalV2", "StatefulUniformInt", "RandomIndexShuffle",
    "Dropout", "StatelessRandomGetKeyCounterAlg", "StatelessRandomGetAlg",
}


def tiny_classifier(num_classes: int, size: int, moex: bool, name: str) -> keras.Model:
    """Same naming as `build_classifier`: ... -> cam_features -> pooling -> logits -> probabilities."""
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1_conv")(inputs)
    if moex:
        x = MomentExchange(prob=1.0, seed=1, name="moex")(x)
    x = keras.layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = keras.layers.Dense(num_classes, name="logits")(x)
    probs = keras.layers.Activation("softmax", name="probabilities")(logits)
    return keras.Model(inputs, probs, name=name)


def write_images(folder: Path) -> list[Path]:
    """Seven files: PNG 8/16 bit gray, RGB, RGBA, JPEG gray/colour, various sizes."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    gray = lambda h, w: (rng.random((h, w)) * 255).astype(np.uint8)  # noqa: E731
    files = {
        "gray8.png": gray(40, 30),
        "gray16.png": (rng.random((33, 47)) * 65535).astype(np.uint16),
        "rgb.png": (rng.random((20, 20, 3)) * 255).astype(np.uint8),
        "rgba.png": (rng.random((25, 31, 4)) * 255).astype(np.uint8),
        "gray.jpg": gray(36, 36),
        "colour.jpg": (rng.random((28, 44, 3)) * 255).astype(np.uint8),
        "small.png": gray(9, 13),
    }
    paths = []
    for name, array in files.items():
        path = folder / name
        assert cv2.imwrite(str(path), array)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    keras.utils.set_random_seed(0)
    root = tmp_path_factory.mktemp("export")
    stage1 = tiny_classifier(3, 16, moex=True, name="stage1")
    stage2 = tiny_classifier(2, 24, moex=False, name="stage2")
    unet = build_unet(input_shape=(16, 16, 1), filters=(4, 8))
    s1 = Stage("stage1", stage1, STAGE1, PreprocessConfig(image_size=16, clahe=True), source="s1")
    s2 = Stage("stage2", stage2, STAGE2, PreprocessConfig(image_size=24), segment=True, source="s2")
    u = Stage("unet", unet, (), PreprocessConfig(image_size=16), source="unet")
    models = root / "models"
    written = export_models(models, stage1=s1, stage2=s2, lung_unet=u)
    return {
        "models": models,
        "written": written,
        "stage1": stage1,
        "stage2": stage2,
        "unet": unet,
        "images": write_images(root / "images"),
        "cascade": tf.saved_model.load(str(written["cascade"])),
    }


def eval_tensors(paths, size, clahe=False, segment=False, mask_fn=None) -> np.ndarray:
    """The evaluation pipeline's input tensors (pipelines.datasets.build_dataset(training=False))."""
    ds = build_dataset(
        ([str(p) for p in paths], ["viral"] * len(paths)),
        class_names=["viral"], batch_size=len(paths), training=False, mask_fn=mask_fn,
        preprocess=PreprocessConfig(image_size=size, clahe=clahe, segment=segment),
    )
    return np.concatenate([images.numpy() for images, _ in ds])


def file_bytes(paths) -> tf.Tensor:
    return tf.constant([Path(p).read_bytes() for p in paths])


# ---------------------------------------------------------------------------------------- layout
def test_layout_and_models_config(setup):
    models = setup["models"]
    assert set(setup["written"]) == {"stage1", "stage2", "lung_unet", "cascade"}
    for name, path in setup["written"].items():
        assert path == models / name / "1"
        assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
        assert [p.name for p in (models / name).iterdir()] == ["1"], "temporary folders left"
    config = models_config.parse_models_config((models / "models.config").read_text())
    assert config == {n: f"/models/{n}" for n in ("cascade", "lung_unet", "stage1", "stage2")}


def test_saved_model_cli_and_load_find_the_signatures(setup):
    path = setup["written"]["cascade"]
    out = subprocess.run(
        [str(SAVED_MODEL_CLI), "show", "--all", "--dir", str(path)],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert "signature_def['serving_default']" in out
    assert "signature_def['serving_images']" in out
    assert "inputs['image_bytes'] tensor_info:\n        dtype: DT_STRING" in out
    for name in ("probabilities", "class_index", "class_name", "stage1_probabilities",
                 "stage2_probabilities"):
        assert f"outputs['{name}']" in out
    loaded = setup["cascade"]
    assert {"serving_default", "serving_images", "preprocess", "explain_stage1",
            "explain_stage2"} <= set(loaded.signatures)
    stage1 = tf.saved_model.load(str(setup["written"]["stage1"]))
    inputs = rest.signature_inputs(stage1.signatures["serving_default"])
    assert inputs["image_bytes"].dtype == tf.string and inputs["image_bytes"].shape.as_list() == [None]
    assert set(stage1.signatures["serving_default"].structured_outputs) == {
        "probabilities", "class_index", "class_name"}


# ---------------------------------------------------------------------------------------- parity
@pytest.mark.parametrize("batch", [1, 7])
def test_cascade_outputs_equal_keras_on_evaluation_tensors(setup, batch):
    paths = setup["images"][:batch]
    x1 = eval_tensors(paths, 16, clahe=True)
    # As training does (cxr_cascade.artifacts.load_unet_mask_fn): the U-Net rebuilt at the stage's size.
    unet24 = build_unet(input_shape=(24, 24, 1), filters=(4, 8))
    unet24.set_weights(setup["unet"].get_weights())
    x2 = eval_tensors(paths, 24, segment=True,
                      mask_fn=lambda x: unet24(x[tf.newaxis], training=False)[0])
    p1 = setup["stage1"](x1, training=False).numpy()
    p2 = setup["stage2"](x2, training=False).numpy()
    # The cascade arithmetic, written out independently: p(covid19) = p1(viral) * p2(covid19 | viral).
    expected = np.stack(
        [p1[:, 0], p1[:, 1], p1[:, 2] * p2[:, 0], p1[:, 2] * p2[:, 1]], axis=-1)

    out = setup["cascade"].signatures["serving_default"](image_bytes=file_bytes(paths))
    diffs = {
        "probabilities": np.abs(out["probabilities"].numpy() - expected).max(),
        "stage1": np.abs(out["stage1_probabilities"].numpy() - p1).max(),
        "stage2": np.abs(out["stage2_probabilities"].numpy() - p2).max(),
    }
    print(f"batch {batch}: max abs diff bytes->outputs vs Keras on eval tensors: {diffs}")
    assert max(diffs.values()) <= 1e-5, diffs
    # The decision is the paper's hard gate (stage 1's argmax; stage 2's where that is viral),
    # written out independently, and equal to the evaluation code's.
    k1, k2 = p1.argmax(-1), p2.argmax(-1)
    gate = np.where(k1 == 2, 2 + k2, k1)
    np.testing.assert_array_equal(out["class_index"].numpy(), gate)
    np.testing.assert_array_equal(out["class_index"].numpy(), cascade_decision(p1, p2, 2, "gate"))
    names = np.array(["normal", "bacterial", "covid19", "viral"])
    assert [n.decode() for n in out["class_name"].numpy()] == list(names[gate])
    np.testing.assert_allclose(out["probabilities"].numpy().sum(-1), 1.0, atol=1e-5)

    pre = setup["cascade"].signatures["preprocess"](image_bytes=file_bytes(paths))
    assert np.abs(pre["stage1_images"].numpy() - x1).max() <= 1e-5
    assert np.abs(pre["stage2_images"].numpy() - x2).max() <= 1e-5
    images_out = setup["cascade"].signatures["serving_images"](
        stage1_images=tf.constant(x1), stage2_images=tf.constant(x2))
    assert np.abs(images_out["probabilities"].numpy() - expected).max() <= 1e-5


def test_exported_rules_agree_with_evaluation_on_planted_disagreement(setup):
    """serving_images with stage outputs forced by constant models: the issue's example."""
    def constant(values, size, name):
        inputs = keras.Input((size, size, 1))
        x = keras.layers.GlobalAveragePooling2D()(inputs)
        x = keras.layers.Dense(len(values), kernel_initializer="zeros",
                               bias_initializer=keras.initializers.Constant(np.log(values)))(x)
        return keras.Model(inputs, keras.layers.Softmax()(x), name=name)

    s1 = constant([0.35, 0.25, 0.40], 16, "c1")
    s2 = constant([0.55, 0.45], 16, "c2")
    prep = StagePreprocessing(16, lambda data: tf.zeros([16, 16, 1]))
    x = tf.zeros([2, 16, 16, 1])
    got = {}
    for rule in ("gate", "soft"):
        fn = serving.cascade_endpoints(s1, STAGE1, prep, s2, STAGE2, prep, rule=rule)["serving_images"][0]
        out = fn(x, x)
        got[rule] = [n.decode() for n in out["class_name"].numpy()]
        np.testing.assert_allclose(out["probabilities"].numpy()[0], [0.35, 0.25, 0.22, 0.18], atol=1e-5)
        p1, p2 = out["stage1_probabilities"].numpy(), out["stage2_probabilities"].numpy()
        np.testing.assert_array_equal(out["class_index"].numpy(), cascade_decision(p1, p2, 2, rule))
    assert got == {"gate": ["covid19"] * 2, "soft": ["normal"] * 2}
    with pytest.raises(ValueError, match="rule"):
        serving.cascade_endpoints(s1, STAGE1, prep, s2, STAGE2, prep, rule="max")


def test_single_models_match_keras(setup):
    paths = setup["images"]
    x = eval_tensors(paths, 16)
    unet = tf.saved_model.load(str(setup["written"]["lung_unet"]))
    out = unet.signatures["serving_default"](image_bytes=file_bytes(paths))
    expected = setup["unet"](x, training=False).numpy()
    assert np.abs(out["mask_probabilities"].numpy() - expected).max() <= 1e-5
    np.testing.assert_array_equal(out["mask"].numpy(), (expected > 0.5).astype(np.uint8))
    stage1 = tf.saved_model.load(str(setup["written"]["stage1"]))
    x1 = eval_tensors(paths, 16, clahe=True)
    out = stage1.signatures["serving_images"](images=tf.constant(x1))
    assert np.abs(out["probabilities"].numpy() - setup["stage1"](x1, training=False).numpy()).max() <= 1e-5


# ---------------------------------------------------------------------------------------- REST
def test_rest_request_is_decoded_and_run(setup):
    paths = setup["images"][:2]
    body = json.dumps({"instances": [
        {"image_bytes": {"b64": base64.b64encode(p.read_bytes()).decode("ascii")}} for p in paths]})
    response = rest.predict_rest(setup["cascade"], body)
    direct = setup["cascade"].signatures["serving_default"](image_bytes=file_bytes(paths))
    assert len(response["predictions"]) == 2
    for i, row in enumerate(response["predictions"]):
        assert row["class_name"] == direct["class_name"].numpy()[i].decode()
        np.testing.assert_allclose(row["probabilities"], direct["probabilities"].numpy()[i], atol=1e-6)
        assert len(row["stage1_probabilities"]) == 3 and len(row["stage2_probabilities"]) == 2
    columnar = rest.predict_rest(setup["cascade"], {"inputs": {"image_bytes": [
        {"b64": base64.b64encode(paths[0].read_bytes()).decode("ascii")}]}})
    np.testing.assert_allclose(columnar["outputs"]["probabilities"][0],
                               response["predictions"][0]["probabilities"], atol=1e-6)


@pytest.mark.parametrize("body, match", [
    ("{not json", "not JSON"),
    ({"instances": [{"images": {"b64": "AAAA"}}]}, "inputs must be"),
    ({"instances": [{"image_bytes": {"b64": "!!"}}]}, "invalid base64"),
    ({"instances": []}, "non-empty"),
])
def test_bad_rest_requests_are_named(setup, body, match):
    with pytest.raises(ValueError, match=match):
        rest.predict_rest(setup["cascade"], body)


def test_corrupt_bytes_give_invalid_argument_and_next_request_works(setup):
    serve = setup["cascade"].signatures["serving_default"]
    good = setup["images"][0].read_bytes()
    with pytest.raises(tf.errors.InvalidArgumentError, match="element.*1.*is not a PNG or JPEG"):
        serve(image_bytes=tf.constant([good, b"this is not an image"]))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Invalid PNG data"):
        serve(image_bytes=tf.constant([good[:60]]))
    out = serve(image_bytes=tf.constant([good]))
    assert out["probabilities"].shape == (1, 4)


# ---------------------------------------------------------------------------------------- MoEx
def _function_defs(saved_model_dir: Path):
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((saved_model_dir / "saved_model.pb").read_bytes())
    graph = proto.meta_graphs[0].graph_def
    return list(graph.node), list(graph.library.function)


def _scopes(node_name: str) -> list[str]:
    """Name-scope components of a node, without TensorFlow's `_1` uniquifying suffixes."""
    import re

    return [re.sub(r"_\d+$", "", part) for part in node_name.split("/")]


def test_moex_and_random_ops_absent_from_the_exported_graph(setup):
    assert any(isinstance(layer, MomentExchange) for layer in setup["stage1"].layers)
    assert any(isinstance(layer, keras.layers.Dropout) for layer in setup["stage1"].layers)
    for name in ("stage1", "cascade"):
        nodes, functions = _function_defs(setup["written"][name])
        assert functions, "no function defs found"
        ops = {n.op for n in nodes} | {n.op for f in functions for n in f.node_def}
        scopes = {s for f in functions for n in f.node_def for s in _scopes(n.name)}
        assert not ops & RANDOM_OPS, ops & RANDOM_OPS
        assert not scopes & {"moex", "drop"}, "a training-only layer's ops were exported"
        assert "logits" in scopes  # the check sees layer scopes at all
    # MoEx's state (seed generators, exchange seed) is not saved either: stage 1's SavedModel holds
    # exactly the inference model's weights, fewer than the training model's.
    loaded = tf.saved_model.load(str(setup["written"]["stage1"]))
    inference_weights = serving.inference_model(setup["stage1"]).weights
    assert len(inference_weights) < len(setup["stage1"].weights)
    assert len(loaded.variables) == len(inference_weights)
    assert all(v.dtype == tf.float32 for v in loaded.variables)
    # A control: training=True on the Keras model does use random ops, so the check can fail.
    graph = tf.function(lambda x: setup["stage1"](x, training=True)).get_concrete_function(
        tf.TensorSpec([2, 16, 16, 1], tf.float32)).graph
    traced = {op.type for op in graph.get_operations()}
    for f in graph.as_graph_def().library.function:
        traced |= {n.op for n in f.node_def}
    assert traced & RANDOM_OPS


def test_inference_model_drops_training_only_layers_and_shares_weights(setup):
    model = serving.inference_model(setup["stage1"])
    assert not any(serving.is_training_only(layer) for layer in model.layers)
    assert model.get_layer("logits") is setup["stage1"].get_layer("logits")
    x = np.random.default_rng(1).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(model(x).numpy(), setup["stage1"](x, training=False).numpy(), atol=1e-6)


def test_in_model_augmentation_is_cut_and_in_model_clahe_kept():
    """`augment.placement=model` layers are training-only; an always-on CLAHE layer is not."""
    from cxr_cascade.models.preprocessing import AdaptiveEqualization, RandomAffine

    inputs = keras.Input((16, 16, 1), name="image")
    h = AdaptiveEqualization(fraction=0.4, name="augment_clahe")(inputs)
    h = RandomAffine(30.0, name="augment_affine")(h)
    h = AdaptiveEqualization(name="always_clahe")(h)
    outputs = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(h))
    model = keras.Model(inputs, outputs)
    names = [layer.name for layer in serving.inference_model(model).layers]
    assert "augment_clahe" not in names and "augment_affine" not in names
    assert "always_clahe" in names  # negative control: real preprocessing stays
    x = np.random.default_rng(2).random((2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(
        serving.inference_model(model)(x).numpy(), model(x, training=False).numpy(), atol=1e-6
    )


# ---------------------------------------------------------------------------------------- atomicity
def test_existing_version_is_refused_then_replaced_with_force(setup, tmp_path):
    unet = Stage("unet", setup["unet"], (), PreprocessConfig(image_size=16), source="unet")
    first = export_models(tmp_path, lung_unet=unet)["lung_unet"]
    assert first.name == "1" and next_version(tmp_path, ["lung_unet", "cascade"]) == 2
    stamp = (first / "saved_model.pb").stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="--force"):
        export_models(tmp_path, lung_unet=unet, version=1)
    assert (first / "saved_model.pb").stat().st_mtime_ns == stamp
    export_models(tmp_path, lung_unet=unet, version=1, force=True)
    assert (first / "saved_model.pb").stat().st_mtime_ns != stamp
    assert existing_versions(tmp_path, "lung_unet") == [1]
    assert [p.name for p in (tmp_path / "lung_unet").iterdir()] == ["1"], "temporary folders left"


def test_bad_arguments_are_named(setup, tmp_path):
    s1 = Stage("stage1", setup["stage1"], STAGE1, PreprocessConfig(image_size=16))
    s2 = Stage("stage2", setup["stage2"], STAGE2, PreprocessConfig(image_size=24), segment=True)
    with pytest.raises(ValueError, match="Nothing to export"):
        export_models(tmp_path)
    with pytest.raises(ValueError, match="lung U-Net"):
        export_models(tmp_path, stage2=s2)
    with pytest.raises(ValueError, match="must be a stage2 run"):
        export_models(tmp_path, stage2=s1)
    with pytest.raises(ValueError, match="one class per output"):
        export_models(tmp_path, stage1=Stage("stage1", setup["stage1"], ("a", "b"),
                                                   PreprocessConfig(image_size=16)))
    with pytest.raises(ValueError, match="input size"):
        export_models(tmp_path, stage1=Stage("stage1", setup["stage1"], STAGE1,
                                                   PreprocessConfig(image_size=32)))
    assert not any(tmp_path.iterdir()), "a refused export wrote something"


# ---------------------------------------------------------------------------------------- real builder
def _check_real_builder(tmp_path, backbone, se_reduction):
    keras.utils.set_random_seed(0)
    model = build_classifier(backbone, 3, input_shape=(32, 32, 1), se_reduction=se_reduction,
                             moex=MoEx(prob=1.0, seed=0))
    assert any(isinstance(layer, MomentExchange) for layer in model.layers)
    stage = Stage("stage1", model, STAGE1, PreprocessConfig(image_size=32))
    path = export_models(tmp_path, stage1=stage)["stage1"]
    nodes, functions = _function_defs(path)
    ops = {n.op for n in nodes} | {n.op for f in functions for n in f.node_def}
    assert not ops & RANDOM_OPS
    moex_names = {layer.name for layer in model.layers if isinstance(layer, MomentExchange)}
    assert not [n.name for f in functions for n in f.node_def if moex_names & set(_scopes(n.name))]
    images = write_images(tmp_path / "images")[:3]
    loaded = tf.saved_model.load(str(path))
    out = loaded.signatures["serving_default"](image_bytes=file_bytes(images))
    expected = model(eval_tensors(images, 32), training=False).numpy()
    assert np.abs(out["probabilities"].numpy() - expected).max() <= 1e-5


def test_real_builder_vgg19_with_moex_exports_without_moex(tmp_path):
    _check_real_builder(tmp_path, "vgg19", None)


@pytest.mark.slow
def test_real_seme_resnet50_exports_without_moex(tmp_path):
    _check_real_builder(tmp_path, "resnet50", 16)


# ---------------------------------------------------------------------------------------- small parts
def test_models_config_text_round_trips():
    text = models_config.render_models_config(["cascade", "stage1"], base_path="/srv/models/")
    assert text.startswith("model_config_list {") and 'model_platform: "tensorflow"' in text
    assert models_config.parse_models_config(text) == {
        "cascade": "/srv/models/cascade", "stage1": "/srv/models/stage1"}
    with pytest.raises(ValueError, match="model_config_list"):
        models_config.parse_models_config("config {}")


@pytest.mark.parametrize("name, version, match", [
    ("../evil", 1, "`name`"), ("cascade", 0, "`version`"), ("cascade", True, "`version`"),
])
def test_publish_rejects_bad_name_and_version(tmp_path, name, version, match):
    from cxr_cascade.export.archive import publish_savedmodel

    with pytest.raises(ValueError, match=match):
        publish_savedmodel(tmp_path, name, version, {"serving_default": (None, [])})
    assert not any(tmp_path.iterdir())


def _constant_stage(values, size, name):
    """A classifier whose softmax is `values` for every image (planted stage outputs)."""
    inputs = keras.Input((size, size, 1), name="image")
    x = keras.layers.Conv2D(2, 3, padding="same", name="conv")(inputs)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(len(values), kernel_initializer="zeros", name="logits",
                           bias_initializer=keras.initializers.Constant(np.log(values)))(x)
    return keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(x), name=name)


def test_exported_pneumonia_rule_round_trip(tmp_path):
    """A film stage 1 calls bacterial and stage 2 calls COVID-19: only the pneumonia rule says
    covid19. The export carries the rule (info file and graph); predict --rule reads either way."""
    from cxr_cascade.predict import Predictor

    s1 = Stage("stage1", _constant_stage([0.2, 0.5, 0.3], 16, "c1"), STAGE1,
                     PreprocessConfig(image_size=16), source="s1")
    s2 = Stage("stage2", _constant_stage([0.7, 0.3], 16, "c2"), STAGE2,
                     PreprocessConfig(image_size=16), source="s2")
    models = tmp_path / "models"
    written = export_models(models, stage1=s1, stage2=s2, only=("cascade",), rule="pneumonia")
    info = json.loads((written["cascade"] / "assets.extra" / "cxr_cascade.json").read_text())
    assert info["decision_rule"] == "pneumonia"
    loaded = tf.saved_model.load(str(written["cascade"]))
    x = tf.zeros([3, 16, 16, 1])
    out = loaded.signatures["serving_images"](stage1_images=x, stage2_images=x)
    assert [n.decode() for n in out["class_name"].numpy()] == ["covid19"] * 3
    np.testing.assert_allclose(out["probabilities"].numpy()[0], [0.2, 0.15, 0.56, 0.09], atol=1e-5)
    image = write_images(tmp_path / "img")[0].read_bytes()
    own = Predictor(models).predict_bytes(image)
    gate = Predictor(models, rule="gate").predict_bytes(image)
    assert (own.class_name, gate.class_name) == ("covid19", "bacterial")
    # back to the gate: its scores are the products again
    assert gate.probabilities["covid19"] == pytest.approx(0.3 * 0.7, abs=1e-5)
    assert own.probabilities["covid19"] == pytest.approx(0.8 * 0.7, abs=1e-5)
