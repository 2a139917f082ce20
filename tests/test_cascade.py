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


# ------------------------------------------------------------------------ the pneumonia rule
def _pneumonia_reference(p1, p2, r, normal=0, negative=1):
    """Independent reference, a loop over films: stage 2 sees every film stage 1 calls a
    pneumonia; its non-negative call wins, its negative keeps stage 1's call."""
    decisions, scores = [], []
    c2 = len(p2[0])
    for a, b in zip(p1, p2):
        k1, k2 = int(np.argmax(a)), int(np.argmax(b))
        stage1_out = k1 if k1 < r else k1 - 1 + c2  # stage 1's call in the cascade's order
        if k1 == normal:
            decisions.append(stage1_out)
        elif k1 == r or k2 != negative:
            decisions.append(r + k2)
        else:
            decisions.append(stage1_out)
        row = []
        for k in range(len(a)):
            if k == r:
                row += [a[r] * b[j] if j == negative else (1 - a[normal]) * b[j] for j in range(c2)]
            else:
                row.append(a[k] if k == normal else a[k] * b[negative])
        scores.append(row)
    return np.array(decisions), np.array(scores)


def test_pneumonia_rule_planted_films():
    names = cascade.cascade_class_names()
    p1 = np.array([
        [0.20, 0.50, 0.30],  # bacterial call, stage 2 says COVID-19: the gate can never reach it
        [0.20, 0.50, 0.30],  # bacterial call, stage 2 says negative: stays bacterial
        [0.60, 0.10, 0.30],  # normal call: stage 2 is never asked
        [0.10, 0.20, 0.70],  # viral call, stage 2 says negative: viral, as the gate
        [0.10, 0.20, 0.70],  # viral call, stage 2 says COVID-19: covid19, as the gate
    ])
    p2 = np.array([[0.7, 0.3], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8], [0.8, 0.2]])
    pneumonia = [names[k] for k in cascade.cascade_decision(p1, p2, 2, "pneumonia")]
    gate = [names[k] for k in cascade.cascade_decision(p1, p2, 2, "gate")]
    assert pneumonia == ["covid19", "bacterial", "normal", "viral", "covid19"]
    assert gate == ["bacterial", "bacterial", "normal", "viral", "covid19"]
    scores = cascade.combine_probabilities(p1, p2, 2, "pneumonia")
    np.testing.assert_allclose(scores[0], [0.20, 0.50 * 0.3, 0.80 * 0.7, 0.30 * 0.3])
    np.testing.assert_allclose(scores.sum(1), 1.0)
    layer = cascade.CascadeDecision(2, "pneumonia")
    got = keras.ops.convert_to_numpy(layer([p1.astype("float32"), p2.astype("float32")]))
    assert [names[k] for k in got] == pneumonia


@pytest.mark.parametrize("refined_index,normal_index", [(2, 0), (1, 0), (0, 2), (2, 1)])
def test_pneumonia_rule_on_random_vectors_matches_numpy_reference(refined_index, normal_index):
    p1, p2 = _probs(3000, 3, 11), _probs(3000, 2, 12)
    route = dict(rule="pneumonia", normal_index=normal_index, negative_index=1)
    decision = cascade.cascade_decision(p1, p2, refined_index, **route)
    scores = cascade.combine_probabilities(p1, p2, refined_index, **route)
    ref_decision, ref_scores = _pneumonia_reference(p1, p2, refined_index, normal_index, 1)
    np.testing.assert_array_equal(decision, ref_decision)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-12)
    np.testing.assert_allclose(scores.sum(1), 1.0)
    gate = cascade.cascade_decision(p1, p2, refined_index, "gate")
    assert 0.05 < np.mean(decision != gate) < 0.5  # the rules differ, on the other pneumonia calls
    x = [p1.astype("float32"), p2.astype("float32")]
    got = keras.ops.convert_to_numpy(cascade.CascadeDecision(refined_index, **route)(x))
    np.testing.assert_array_equal(got, decision)
    got = keras.ops.convert_to_numpy(cascade.CascadeCombine(refined_index, **route)(x))
    np.testing.assert_allclose(got, scores, atol=1e-6)


def test_three_rules_agree_where_they_must():
    """Gate and pneumonia agree on every film stage 1 calls normal or viral (negative control)."""
    p1, p2 = _probs(2000, 3, 21), _probs(2000, 2, 22)
    k1 = p1.argmax(1)
    gate = cascade.cascade_decision(p1, p2, 2, "gate")
    pneumonia = cascade.cascade_decision(p1, p2, 2, "pneumonia")
    np.testing.assert_array_equal(gate[k1 != 1], pneumonia[k1 != 1])
    bacterial_covid = (k1 == 1) & (p2.argmax(1) == 0)
    assert bacterial_covid.any()
    assert (pneumonia[bacterial_covid] == 2).all() and (gate[bacterial_covid] == 1).all()
    np.testing.assert_allclose(cascade.combine_probabilities(p1, p2, 2, "soft"),
                               cascade.combine_probabilities(p1, p2, 2, "gate"))


def test_route_indices_from_class_names():
    assert cascade.route_indices(rule="pneumonia") == {"refined_index": 2, "normal_index": 0, "negative_index": 1}
    assert cascade.route_indices(["viral", "bacterial", "normal"], ["viral", "covid19"], rule="pneumonia") == {
        "refined_index": 0, "normal_index": 2, "negative_index": 0}
    assert cascade.route_indices(["a", "b"], ["x", "y"], "a", "gate")["refined_index"] == 0
    with pytest.raises(ValueError, match="normal"):
        cascade.route_indices(["a", "viral"], ["covid19", "viral"], rule="pneumonia")
    with pytest.raises(ValueError, match="stage-2 class 'viral'"):
        cascade.route_indices(stage2_classes=["covid19", "other"], rule="pneumonia")


def test_unknown_rule_names_and_bad_route_indices():
    p1, p2 = np.ones((1, 3)) / 3, np.ones((1, 2)) / 2
    for call in (lambda: cascade.cascade_decision(p1, p2, 2, "Pneumonia"),
                 lambda: cascade.combine_probabilities(p1, p2, 2, "pneumonias"),
                 lambda: cascade.CascadeDecision(2, "any"),
                 lambda: cascade.CascadeCombine(2, "hard"),
                 lambda: cascade.route_indices(rule="")):
        with pytest.raises(ValueError, match=r"`rule` must be one of \['gate', 'soft', 'pneumonia'\]\. Received: rule="):
            call()
    with pytest.raises(ValueError, match="normal_index"):  # normal cannot be the refined class
        cascade.cascade_decision(p1, p2, 2, "pneumonia", normal_index=2)
    with pytest.raises(ValueError, match="negative_index"):
        cascade.combine_probabilities(p1, p2, 2, "pneumonia", negative_index=2)
    with pytest.raises(ValueError, match="negative_index"):
        cascade.CascadeDecision(2, "pneumonia", negative_index=5)([p1.astype("float32"), p2.astype("float32")])
    with pytest.raises(ValueError, match="normal_index"):
        cascade.CascadeCombine(2, "pneumonia", normal_index=-1)
    # the indices are only read by the pneumonia rule: the gate ignores an unusable one
    cascade.cascade_decision(p1, p2, 2, "gate", normal_index=2)


def test_pneumonia_layers_serialise_and_cascade_model_round_trip(tmp_path):
    for cls in (cascade.CascadeDecision, cascade.CascadeCombine):
        layer = cls(0, "pneumonia", normal_index=2, negative_index=0, name="x")
        clone = cls.from_config(layer.get_config())
        assert (clone.refined_index, clone.rule, clone.normal_index, clone.negative_index) == (0, "pneumonia", 2, 0)
    s1, s2 = _stage(16, 3, 0), _stage(16, 2, 1)
    model = cascade.build_cascade_model(s1, s2, rule="pneumonia")
    images = np.random.default_rng(1).random((5, 16, 16, 1)).astype("float32")
    out = model.predict(images, verbose=0)
    p1, p2 = out["stage1_probabilities"], out["stage2_probabilities"]
    np.testing.assert_array_equal(out["class_index"], cascade.cascade_decision(p1, p2, 2, "pneumonia"))
    np.testing.assert_allclose(out["probabilities"], cascade.combine_probabilities(p1, p2, 2, "pneumonia"), atol=1e-6)
    model.save(tmp_path / "c.keras")
    reloaded = keras.saving.load_model(tmp_path / "c.keras")
    assert reloaded.get_layer("class_index").rule == "pneumonia"
    np.testing.assert_array_equal(reloaded.predict(images, verbose=0)["class_index"], out["class_index"])


def test_cli_rule_choices_come_from_the_one_registry(capsys):
    from cxr_cascade.cli import main
    from cxr_cascade.registry import CASCADE_RULES

    assert CASCADE_RULES == cascade.RULES == ("gate", "soft", "pneumonia")
    for command in (["evaluate", "run"], ["predict", "x.png"], ["export", "run", "--out", "models"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*command, "--rule", "pneumonias"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "invalid choice: 'pneumonias'" in err and "'pneumonia'" in err
