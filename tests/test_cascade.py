"""The cascade combiner: arithmetic, serialisation, end-to-end model and label mapping."""

from __future__ import annotations

import numpy as np
import pytest

import keras

from cxr_cascade.evaluation import cascade
from cxr_cascade.evaluation.metrics import classification_metrics


def _probs(n, c, seed):
    x = np.random.default_rng(seed).normal(size=(n, c))
    return np.exp(x) / np.exp(x).sum(1, keepdims=True)


def test_class_names():
    assert cascade.cascade_class_names() == ["normal", "bacterial", "covid19", "viral"]
    assert cascade.cascade_class_names(["a", "b"], ["x", "y", "z"], "a") == ["x", "y", "z", "b"]
    with pytest.raises(ValueError, match="refined_class"):
        cascade.cascade_class_names(refined_class="covid19")
    with pytest.raises(ValueError, match="differ"):
        cascade.cascade_class_names(["normal", "viral"], ["normal", "x"])


def test_combine_is_the_papers_arithmetic():
    p1, p2 = _probs(7, 3, 0), _probs(7, 2, 1)
    out = cascade.combine_probabilities(p1, p2, refined_index=2)
    np.testing.assert_allclose(out[:, 0], p1[:, 0])  # normal
    np.testing.assert_allclose(out[:, 1], p1[:, 1])  # bacterial
    np.testing.assert_allclose(out[:, 2], p1[:, 2] * p2[:, 0])  # covid19
    np.testing.assert_allclose(out[:, 3], p1[:, 2] * p2[:, 1])  # other viral
    np.testing.assert_allclose(out.sum(1), 1.0)
    layer_out = cascade.CascadeCombine(2)([p1.astype("float32"), p2.astype("float32")])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer_out), out, rtol=1e-6)
    mid = cascade.combine_probabilities(p1, p2, refined_index=0)
    np.testing.assert_allclose(mid[:, 2:], p1[:, 1:])


def test_layer_config_and_bad_arguments():
    layer = cascade.CascadeCombine(refined_index=1, name="c")
    clone = cascade.CascadeCombine.from_config(layer.get_config())
    assert clone.refined_index == 1 and clone.name == "c"
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="refined_index"):
            cascade.CascadeCombine(bad)
    with pytest.raises(ValueError, match="refined_index"):
        cascade.CascadeCombine(3)([np.ones((2, 3), "float32"), np.ones((2, 2), "float32")])
    with pytest.raises(ValueError, match="refined_index"):
        cascade.combine_probabilities(np.ones((2, 3)), np.ones((2, 2)), 5)


def _stage(size, classes, seed):
    keras.utils.set_random_seed(seed)
    inp = keras.Input((size, size, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inp)
    x = keras.layers.Activation("linear", name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, keras.layers.Softmax(name="probabilities")(x), name=f"stage{classes}")


def test_cascade_model_end_to_end_save_and_reload(tmp_path):
    s1, s2 = _stage(16, 3, 0), _stage(12, 2, 1)
    model = cascade.build_cascade_model(s1, s2)
    images = np.random.default_rng(0).random((6, 16, 16, 1)).astype("float32")
    out = model.predict(images, verbose=0)
    p1 = s1.predict(images, verbose=0)
    p2 = s2.predict(keras.ops.convert_to_numpy(keras.layers.Resizing(12, 12)(images)), verbose=0)
    np.testing.assert_allclose(out["probabilities"], cascade.combine_probabilities(p1, p2), atol=1e-6)
    np.testing.assert_array_equal(out["class_index"], cascade.cascade_decision(p1, p2))
    assert out["probabilities"].shape == (6, 4)
    path = tmp_path / "cascade.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(images, verbose=0)["probabilities"], out["probabilities"], atol=1e-6)
    assert isinstance(reloaded.get_layer("probabilities"), cascade.CascadeCombine)


def test_label_mapping_and_stage_subsets():
    names = cascade.cascade_class_names()
    y = cascade.cascade_labels(["normal", "covid19", "viral", "bacterial", "covid19"], names)
    np.testing.assert_array_equal(y, [0, 2, 3, 1, 2])
    np.testing.assert_array_equal(cascade.stage1_labels(y, names), [0, 2, 2, 1, 2])
    rows, y2 = cascade.stage2_subset(y, names)
    np.testing.assert_array_equal(rows, [1, 2, 4])
    np.testing.assert_array_equal(y2, [0, 1, 0])
    with pytest.raises(ValueError, match="fungal"):
        cascade.cascade_labels(["fungal"], names)


def test_perfect_stages_give_perfect_cascade():
    names = cascade.cascade_class_names()
    y = np.array([0, 1, 2, 3, 2, 0])
    p1 = np.eye(3)[cascade.stage1_labels(y, names)]
    p2 = np.eye(2)[np.where(y == 2, 0, 1)]  # stage 2 runs on every image
    m = classification_metrics(y, cascade.combine_probabilities(p1, p2), names)
    assert m["accuracy"] == 1.0 and m["macro_auc"] == 1.0


# ------------------------------------------------------------------------ the decision rule
def _gate_reference(p1, p2, r):
    """Independent reference: the paper's hard gate written as a loop over films."""
    out = []
    for a, b in zip(p1, p2):
        k = int(np.argmax(a))
        out.append(k if k < r else r + int(np.argmax(b)) if k == r else k - 1 + len(b))
    return np.array(out)


def test_issue_example_soft_says_normal_gate_says_covid19():
    p1, p2 = np.array([[0.35, 0.25, 0.40]]), np.array([[0.55, 0.45]])
    names = cascade.cascade_class_names()
    np.testing.assert_allclose(cascade.combine_probabilities(p1, p2), [[0.35, 0.25, 0.22, 0.18]])
    assert names[cascade.cascade_decision(p1, p2, 2, "soft")[0]] == "normal"
    assert names[cascade.cascade_decision(p1, p2)[0]] == "covid19"  # the gate is the default
    layer = cascade.CascadeDecision(2)
    assert int(keras.ops.convert_to_numpy(layer([p1.astype("float32"), p2.astype("float32")]))[0]) == 2


@pytest.mark.parametrize("refined_index", [0, 1, 2])
def test_gate_and_soft_on_random_vectors_match_numpy_reference(refined_index):
    p1, p2 = _probs(4000, 3, 7), _probs(4000, 2, 8)
    gate = cascade.cascade_decision(p1, p2, refined_index, "gate")
    soft = cascade.cascade_decision(p1, p2, refined_index, "soft")
    np.testing.assert_array_equal(gate, _gate_reference(p1, p2, refined_index))
    np.testing.assert_array_equal(soft, cascade.combine_probabilities(p1, p2, refined_index).argmax(1))
    assert 0.01 < np.mean(gate != soft) < 0.3  # the rules do disagree, on a minority of films
    for rule, expected in (("gate", gate), ("soft", soft)):
        layer = cascade.CascadeDecision(refined_index, rule)
        got = keras.ops.convert_to_numpy(layer([p1.astype("float32"), p2.astype("float32")]))
        np.testing.assert_array_equal(got, expected)


def test_decision_bad_rule_and_serialisation():
    with pytest.raises(ValueError, match="rule"):
        cascade.cascade_decision(np.ones((1, 3)) / 3, np.ones((1, 2)) / 2, 2, "products")
    with pytest.raises(ValueError, match="rule"):
        cascade.CascadeDecision(2, "hard")
    clone = cascade.CascadeDecision.from_config(cascade.CascadeDecision(1, "soft", name="d").get_config())
    assert (clone.refined_index, clone.rule, clone.name) == (1, "soft", "d")


def test_gate_metrics_use_decisions_while_auc_uses_products():
    names = cascade.cascade_class_names()
    p1, p2 = _probs(300, 3, 3), _probs(300, 2, 4)
    y = np.random.default_rng(5).integers(0, 4, 300)
    products = cascade.combine_probabilities(p1, p2)
    gate = cascade.cascade_decision(p1, p2)
    m_gate = classification_metrics(y, products, names, gate)
    m_soft = classification_metrics(y, products, names)
    assert m_gate["accuracy"] == pytest.approx(np.mean(gate == y))
    assert m_soft["accuracy"] == pytest.approx(np.mean(products.argmax(1) == y))
    assert m_gate["macro_auc"] == m_soft["macro_auc"]
