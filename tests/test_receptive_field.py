"""Receptive field: the paper's recurrence (section 3.1.1) against hand computations."""

from __future__ import annotations

import math

import keras
import pytest

from cxr_cascade.models import build_classifier, receptive_field, receptive_field_recurrence


def test_recurrence_matches_hand_computation():
    # conv3/1, conv3/1, pool2/2, conv3/1 (hand): 1 -> 3 -> 5 -> 6 -> 6 + 2 * 2 = 10.
    assert receptive_field_recurrence([3, 3, 2, 3], [1, 1, 2, 1]) == [3, 5, 6, 10]
    # conv7/2, pool3/2, conv3/1 (a ResNet-like stem): 7 -> 7 + 2*2 = 11 -> 11 + 2*4 = 19.
    assert receptive_field_recurrence([7, 3, 3], [2, 2, 1]) == [7, 11, 19]


def test_recurrence_bad_arguments():
    with pytest.raises(ValueError, match="same length"):
        receptive_field_recurrence([3], [1, 1])
    with pytest.raises(ValueError, match="Received: kernel=0"):
        receptive_field_recurrence([0], [1])


def _small_net():
    inputs = keras.Input((32, 32, 1))
    a = keras.layers.Conv2D(2, 3, padding="same", name="c1")(inputs)
    a = keras.layers.Conv2D(2, 3, padding="same", name="c2")(a)
    a = keras.layers.MaxPooling2D(2, name="p1")(a)
    main = keras.layers.Conv2D(2, 3, padding="same", name="c3")(a)
    # A wider dilated branch: 6 + (5 - 1) * 2 = 14 > 10, so the Add takes 14.
    side = keras.layers.Conv2D(2, 3, dilation_rate=2, padding="same", name="dil")(a)
    x = keras.layers.Add(name="add")([main, side])
    x = keras.layers.Identity(name="cam_features")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(2, name="logits")(x))


def test_graph_walk_matches_hand_computation():
    model = _small_net()
    assert receptive_field(model, "c3").size == (10, 10)
    assert receptive_field(model, "c3").jump == (2, 2)
    assert receptive_field(model, "dil").size == (14, 14)
    assert receptive_field(model, "cam_features").size == (14, 14)
    assert receptive_field(model, "avg_pool").is_global
    assert receptive_field(model, None).is_global


def test_resnet50_matches_published_value_and_se_does_not_change_it():
    # 483 px is the published theoretical receptive field of ResNet-50 (Araujo et al., Distill 2019).
    plain = build_classifier("resnet50", 2, input_shape=(64, 64, 1))
    assert receptive_field(plain).size == (483, 483)
    assert receptive_field(plain, "pool1_pool").size == (11, 11)
    se = build_classifier("resnet50", 2, input_shape=(64, 64, 1), se_reduction=16)
    assert receptive_field(se).size == (483, 483)


def test_unknown_layer_rejected():
    with pytest.raises(ValueError, match="Received: layer_name='nope'"):
        receptive_field(_small_net(), "nope")


def test_global_is_infinite():
    assert math.isinf(receptive_field(_small_net(), "logits").size[0])
