"""build_classifier: faithful to keras.applications, explicit names, heads, options, errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

from cxr_cascade.models import MoEx, MoExClassifier, build_classifier

KERAS_APPS = {
    "resnet50": (keras.applications.ResNet50, {}),
    "densenet169": (keras.applications.DenseNet169, {}),
    "vgg19": (keras.applications.VGG19, {"head": "flatten"}),
}
# keras.applications' own head (replaced by logits -> probabilities) and its auto-named layers.
KERAS_HEAD_NAMES = {"predictions", "avg_pool"}
PARAMS_224 = {"resnet50": 25_636_712, "densenet169": 14_307_880, "vgg19": 143_667_240}


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower().replace("2_d", "2d")


def _auto_named(layer) -> bool:
    if layer.name == "flatten":  # keras.applications.VGG19 names its Flatten "flatten" explicitly
        return False
    return re.fullmatch(rf"{_snake(type(layer).__name__)}(_\d+)?", layer.name) is not None


@pytest.fixture(scope="module", params=sorted(KERAS_APPS))
def pair(request):
    """(ours, keras.applications) at 224x224x3 with 1000 classes."""
    factory, kwargs = KERAS_APPS[request.param]
    ours = build_classifier(request.param, 1000, input_shape=(224, 224, 3), **kwargs)
    theirs = factory(weights=None, input_shape=(224, 224, 3))
    return request.param, ours, theirs


def test_param_count_equals_keras_applications(pair):
    backbone, ours, theirs = pair
    assert ours.count_params() == theirs.count_params() == PARAMS_224[backbone]


def test_layer_names_and_weight_shapes_match_keras_applications(pair):
    _, ours, theirs = pair
    ours_by_name = {layer.name: layer for layer in ours.layers}
    shared = 0
    for layer in theirs.layers:
        if layer.name in KERAS_HEAD_NAMES or isinstance(layer, keras.layers.InputLayer) or _auto_named(layer):
            continue
        assert layer.name in ours_by_name, f"missing keras.applications layer {layer.name}"
        ours_shapes = [tuple(w.shape) for w in ours_by_name[layer.name].weights]
        assert ours_shapes == [tuple(w.shape) for w in layer.weights], layer.name
        shared += 1
    assert shared > 20


def test_every_layer_named_explicitly_and_he_uniform(pair):
    _, ours, _ = pair
    for layer in ours.layers:
        assert not _auto_named(layer), f"auto-generated name {layer.name}"
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
            assert isinstance(layer.kernel_initializer, keras.initializers.HeUniform), layer.name


def test_head_ends_in_cam_features_logits_probabilities(pair):
    _, ours, _ = pair
    logits, probabilities = ours.get_layer("logits"), ours.get_layer("probabilities")
    assert isinstance(ours.get_layer("cam_features"), keras.layers.Identity)
    assert len(ours.get_layer("cam_features").output.shape) == 4
    assert logits.get_config()["activation"] == "linear"
    assert probabilities.get_config()["activation"] == "softmax"
    assert ours.layers[-1] is probabilities and ours.layers[-2] is logits


def test_se_resnet50_param_count_and_placement():
    model = build_classifier("resnet50", 1000, input_shape=(224, 224, 3), se_reduction=16)
    assert model.count_params() == 28_167_704
    excite = model.get_layer("conv4_block3_se_excite")
    assert excite.input[0] is model.get_layer("conv4_block3_3_bn").output
    add_inputs = model.get_layer("conv4_block3_add").input
    assert add_inputs[1] is excite.output
    assert model.get_layer("conv4_block3_se_reduce").units == 1024 // 16


def _feeds(model, producer: str, consumer: str) -> bool:
    inputs = model.get_layer(consumer).input
    inputs = inputs if isinstance(inputs, list) else [inputs]
    return any(t is model.get_layer(producer).output for t in inputs)


@pytest.mark.parametrize(
    "placement, probe, consumer",
    [
        pytest.param("dense_block", "conv3_se_excite", "pool3_bn"),
        pytest.param("conv_block", "conv3_block2_se_excite", "conv3_block2_concat", marks=pytest.mark.slow),
    ],
)
def test_se_densenet169_placements(placement, probe, consumer):
    model = build_classifier("densenet169", 2, input_shape=(32, 32, 1), se_reduction=16, se_placement=placement)
    assert _feeds(model, probe, consumer)
    # Dense-block SE: r = 16 on the block output (conv3: 128 + 12 * 32 = 512 channels).
    if placement == "dense_block":
        assert model.get_layer("conv3_se_reduce").units == 512 // 16
        assert _feeds(model, "conv5_se_excite", "bn")


@pytest.mark.parametrize("backbone", ["vgg19", "resnet50", "densenet169"])
def test_forward_tiny_any_channels(backbone):
    model = build_classifier(backbone, 3, input_shape=(32, 40, 2))
    probs = keras.ops.convert_to_numpy(model(np.random.default_rng(0).random((2, 32, 40, 2), dtype="float32")))
    assert probs.shape == (2, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_gap_head_accepts_unknown_spatial_size():
    model = build_classifier("resnet50", 2, input_shape=(None, None, 1))
    for size in (32, 48):
        assert tuple(model(np.zeros((1, size, size, 1), "float32")).shape) == (1, 2)


def test_vgg_flatten_head_names_and_custom_fc_units():
    model = build_classifier("vgg19", 2, input_shape=(32, 32, 1), head="flatten", fc_units=(8,))
    assert model.name == "vgg19_flatten"
    assert model.get_layer("fc1").units == 8 and "fc2" not in [layer.name for layer in model.layers]
    assert model.get_layer("flatten").output.shape[-1] == 512




@pytest.mark.parametrize(
    "kwargs",
    [
        {"backbone": "resnet50", "se_reduction": 4, "moex": MoEx(seed=1)},
        pytest.param({"backbone": "densenet169", "se_reduction": 16, "moex": MoEx(seed=2)}, marks=pytest.mark.slow),
        {"backbone": "vgg19", "head": "flatten", "fc_units": (4,)},
    ],
)
def test_save_load_round_trip(tmp_path, kwargs):
    model = build_classifier(num_classes=3, input_shape=(32, 32, 1), **kwargs)
    x = np.random.default_rng(1).random((2, 32, 32, 1), dtype="float32")
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)), keras.ops.convert_to_numpy(model(x)))
    if "moex" in kwargs:
        assert isinstance(loaded, MoExClassifier)
        assert loaded.get_layer("moex").get_config() == model.get_layer("moex").get_config()


def test_mixed_precision_keeps_float32_outputs():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = build_classifier("resnet50", 2, input_shape=(32, 32, 1), se_reduction=16, moex=MoEx())
        assert model.name == "seme_resnet50"
        out = model(np.zeros((2, 32, 32, 1), "float32"), training=True)
        assert keras.backend.standardize_dtype(out.dtype) == "float32"
        assert model.get_layer("cam_features").compute_dtype == "bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"backbone": "foo"}, "Received: backbone='foo'"),
        ({"input_shape": (16, 16, 1)}, "Received: input_shape=(16, 16, 1)"),
        ({"input_shape": (64, 64)}, "Received: input_shape=(64, 64)"),
        ({"input_shape": (64, 64, 0)}, "Received: input_shape=(64, 64, 0)"),
        ({"se_reduction": 0}, "Received: se_reduction=0"),
        ({"backbone": "vgg19", "se_reduction": 16}, "Received: se_reduction=16"),
        ({"se_reduction": 16, "se_placement": "conv_block"}, "Received: se_placement='conv_block'"),
        ({"head": "max"}, "Received: head='max'"),
        ({"num_classes": 0}, "Received: num_classes=0"),
        ({"moex": MoEx(position="conv9")}, "Received: position='conv9'"),
        ({"moex": 0.5}, "Received: moex=0.5"),
        ({"head": "flatten", "input_shape": (None, None, 1)}, "Received: input_shape=(None, None, 1)"),
    ],
)
def test_bad_arguments_raise_value_error_naming_them(kwargs, fragment):
    args = {"backbone": "resnet50", "num_classes": 2, "input_shape": (64, 64, 1)}
    args.update(kwargs)
    with pytest.raises(ValueError) as info:
        build_classifier(**args)
    assert fragment in str(info.value)


def test_moex_prob_outside_unit_interval():
    with pytest.raises(ValueError, match=r"Received: prob=1.5"):
        MoEx(prob=1.5)


def test_model_code_uses_keras_only():
    """No TensorFlow or keras.src import anywhere in cxr_cascade/models (static check)."""
    import ast
    from pathlib import Path

    import cxr_cascade.models as models

    for path in Path(models.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                assert not module.startswith(("tensorflow", "keras.src", "tf_keras")), f"{path.name}: {module}"


def test_builds_under_jax_backend_without_tensorflow():
    pytest.importorskip("jax")
    code = (
        "import sys; import cxr_cascade.models as m; assert 'tensorflow' not in sys.modules, 'tf imported';"
        "x = m.build_classifier('resnet50', 2, input_shape=(32, 32, 1), se_reduction=16, moex=m.MoEx());"
        "import numpy as np; print(tuple(x(np.zeros((2, 32, 32, 1), 'float32'), training=True).shape))"
    )
    env = dict(os.environ, KERAS_BACKEND="jax")
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "(2, 2)" in result.stdout
