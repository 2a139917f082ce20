"""Moment exchange, MoEx (Li, Wu, Lim, Belongie, Weinberger, CVPR 2021, arXiv 2002.11102).

Follows the authors' ImageNet code (github.com/Boyiliee/MoEx, ``moex.py`` with PONO):

* moments are PONO's: mean and standard deviation over the channel axis at each spatial
  position, computed in float32; ``epsilon`` is added to the variance; the variance is the
  unbiased one (divisor ``C - 1``), which is what ``torch.Tensor.var`` computes there;
* features of sample ``a`` take the moments of partner ``b = perm[a]``, ``perm`` a uniformly
  random permutation of the batch: ``out = (x - mu_a) / sigma_a * sigma_b + mu_b``;
* one Bernoulli(``prob``) draw per batch decides whether the exchange happens;
* the loss becomes ``lam * CE(out, y_a) + (1 - lam) * CE(out, y_b)``.

Defaults ``prob=1.0, lam=0.9, epsilon=1e-5`` are the official ImageNet ResNet-50 / DenseNet
setting (ImageNet/README.md and run_moex_resnet.sh of that repository); Lv et al. 2020 do not
state theirs. MoEx is a training-time augmentation only: with ``training`` false (inference,
``evaluate``, Grad-CAM, export) the layer is the identity.

Keras 3 design: ``MomentExchange`` draws the permutation from its own ``SeedGenerator`` and
records it, and whether it fired, as non-trainable state; ``MoExClassifier`` (a functional
``keras.Model`` subclass, still one flat graph) reads that permutation in ``compute_loss`` to
mix the labels. Everything is ``keras.ops``/``keras.random``, so it runs on
the TensorFlow and JAX backends, and both classes survive ``.keras`` save/load.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import keras
from keras import ops



def _check_unit_interval(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"`{name}` must be a number in [0, 1]. Received: {name}={value!r}")
    return float(value)


def _check_epsilon(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not float(value) > 0.0:
        raise ValueError(f"`epsilon` must be a number > 0. Received: epsilon={value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class MoEx:
    """MoEx settings for ``build_classifier(..., moex=MoEx(...))``.

    Attributes:
        prob: probability that a training batch is exchanged (official ImageNet: 1.0).
        lam: weight of the sample's own label ``y_a`` in the loss (official ImageNet: 0.9).
        epsilon: added to the PONO variance (official: 1e-5).
        position: name of the layer (of the plain network) after which MoEx is inserted;
            ``None`` = after the stem (``pool1_pool`` ResNet50, ``pool1`` DenseNet169,
            ``block1_pool`` VGG19), as in the official code's ``moex_layer='stem'``/``'pool0'``
            and Lv et al. 2020 ("after the first convolution layer").
        seed: seed of the layer's SeedGenerator (``None``: random).
    """

    prob: float = 1.0
    lam: float = 0.9
    epsilon: float = 1e-5
    position: Optional[str] = None
    seed: Optional[int] = None

    def __post_init__(self):
        _check_unit_interval("prob", self.prob)
        _check_unit_interval("lam", self.lam)
        _check_epsilon(self.epsilon)
        if self.position is not None and not isinstance(self.position, str):
            raise ValueError(f"`position` must be a layer name or None. Received: position={self.position!r}")
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={self.seed!r}")


def pono_moments(x, epsilon: float = 1e-5):
    """PONO moments of a channels-last feature map.

    Args:
        x: ``(batch, height, width, channels)``, any float dtype; channels >= 2.
        epsilon: added to the variance.

    Returns:
        ``(mean, std)``, float32, each ``(batch, height, width, 1)``.
    """
    x = ops.cast(x, "float32")
    channels = ops.shape(x)[-1]
    mean = ops.mean(x, axis=-1, keepdims=True)
    # Unbiased variance, as torch.var in the reference implementation.
    var = ops.sum(ops.square(x - mean), axis=-1, keepdims=True) / ops.cast(channels - 1, "float32")
    return mean, ops.sqrt(var + epsilon)


def moment_exchange(x, partner, epsilon: float = 1e-5):
    """Give each sample the PONO moments of its partner.

    Args:
        x: ``(batch, height, width, channels)`` feature map.
        partner: int ``(batch,)``; sample ``a`` receives the moments of ``partner[a]``.
        epsilon: added to the variance.

    Returns:
        Same shape and dtype as ``x``. Samples with ``partner[a] == a`` are returned unchanged,
        bit for bit (so ``partner = arange(batch)`` and a batch of one are exact identities).
    """
    mean, std = pono_moments(x, epsilon)
    scale = ops.take(std, partner, axis=0) / std
    shift = ops.take(mean, partner, axis=0) - mean * scale
    out = ops.cast(ops.cast(x, "float32") * scale + shift, x.dtype)
    # A sample paired with itself keeps its features bit for bit (GPU division and FMA
    # contraction need not give s / s == 1 exactly).
    own = ops.equal(ops.cast(partner, "int32"), ops.arange(ops.shape(x)[0], dtype="int32"))
    own = ops.reshape(own, (-1, 1, 1, 1))
    return ops.where(own, x, out)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class MomentExchange(keras.layers.Layer):
    """MoEx layer: exchanges PONO moments across the batch during training only.

    Input and output: ``(batch, height, width, channels)``, channels >= 2 (PONO needs a spread).

    State (non-trainable, saved with the model): ``partner``, int32 ``(max_batch_size,)``, whose
    first ``batch`` entries are the permutation of the last training call, and ``applied``,
    1.0 when that call exchanged moments. A model's loss reads them through ``partner_indices``
    and ``applied``. Storing the permutation itself (rather than a seed to replay) keeps the
    loss correct whatever the execution mode: TensorFlow's stateless RNG may give another
    stream under XLA than eagerly.

    Args:
        prob: probability of exchanging a training batch.
        lam: loss weight of the sample's own label (read by ``MoExClassifier``).
        epsilon: added to the PONO variance.
        seed: seed of the layer's random stream.
        max_batch_size: largest training batch the layer can record a permutation for.
    """

    def __init__(
        self,
        prob: float = 1.0,
        lam: float = 0.9,
        epsilon: float = 1e-5,
        seed: Optional[int] = None,
        max_batch_size: int = 4096,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.prob = _check_unit_interval("prob", prob)
        self.lam = _check_unit_interval("lam", lam)
        self.epsilon = _check_epsilon(epsilon)
        if isinstance(max_batch_size, bool) or not isinstance(max_batch_size, int) or max_batch_size < 1:
            raise ValueError(f"`max_batch_size` must be an integer >= 1. Received: max_batch_size={max_batch_size!r}")
        self.max_batch_size = max_batch_size
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed, name="moex_seed_generator")

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is not None and channels < 2:
            raise ValueError(
                "MoEx's PONO moments need at least 2 channels at the exchange position. "
                f"Received: input_shape={tuple(input_shape)!r}"
            )
        self.partner = self.add_weight(
            shape=(self.max_batch_size,), dtype="int32", initializer="zeros", trainable=False, name="partner"
        )
        self.applied = self.add_weight(shape=(), dtype="float32", initializer="zeros", trainable=False, name="applied")

    def call(self, inputs, training=None):
        if not training or self.prob == 0.0:
            return inputs
        batch = inputs.shape[0]
        if batch is not None and batch > self.max_batch_size:
            raise ValueError(
                f"MoEx records at most max_batch_size={self.max_batch_size} partners; raise it for larger "
                f"batches. Received: batch size {batch}"
            )
        batch = ops.shape(inputs)[0]
        fire = keras.random.uniform((), seed=self.seed_generator) < self.prob
        partner = keras.random.shuffle(ops.arange(batch, dtype="int32"), seed=self.seed_generator)
        self.partner.assign(ops.pad(partner, [[0, self.max_batch_size - batch]]))
        self.applied.assign(ops.cast(fire, "float32"))
        return ops.where(fire, moment_exchange(inputs, partner, self.epsilon), inputs)

    def partner_indices(self, batch_size):
        """The permutation drawn by the last training call.

        Args:
            batch_size: the batch size of that call.

        Returns:
            int32 ``(batch_size,)``; sample ``a`` took the moments of sample ``partner[a]``.
        """
        return ops.slice(self.partner.value, [0], [batch_size])

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "prob": self.prob,
                "lam": self.lam,
                "epsilon": self.epsilon,
                "seed": self.seed,
                "max_batch_size": self.max_batch_size,
            }
        )
        return config


def moex_mixed_loss(loss_a, loss_b, lam, applied):
    """``lam * loss_a + (1 - lam) * loss_b`` when MoEx fired (``applied`` = 1), else ``loss_a``."""
    mixed = lam * loss_a + (1.0 - lam) * loss_b
    return ops.where(ops.cast(applied, "float32") > 0.5, mixed, loss_a)


@keras.saving.register_keras_serializable(package="cxr_cascade")
class MoExClassifier(keras.Model):
    """Functional classifier whose training loss mixes the labels of MoEx partners.

    Built exactly like ``keras.Model(inputs, outputs)`` (one flat graph containing a
    ``MomentExchange`` layer); only ``compute_loss`` differs. With ``training`` true and the
    exchange applied, the compiled loss is evaluated against ``y`` and against ``y[perm]`` and
    mixed with ``lam``. Sample weights (e.g. from ``class_weight``) are permuted for the second
    term, so the partner's label keeps its class weight. Regularisation losses enter once
    (they appear in both terms with weights summing to 1). Evaluation is the plain loss.
    """

    def moex_layer(self) -> Optional[MomentExchange]:
        for layer in self.layers:
            if isinstance(layer, MomentExchange):
                return layer
        return None

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss_a = super().compute_loss(x, y, y_pred, sample_weight, training=training)
        layer = self.moex_layer()
        if not training or layer is None or loss_a is None or y is None or layer.prob == 0.0:
            return loss_a
        partner = layer.partner_indices(ops.shape(keras.tree.flatten(y_pred)[0])[0])
        take = lambda t: ops.take(t, partner, axis=0)  # noqa: E731
        y_b = keras.tree.map_structure(take, y)
        sw_b = None if sample_weight is None else keras.tree.map_structure(take, sample_weight)
        loss_b = super().compute_loss(x, y_b, y_pred, sw_b, training=training)
        return moex_mixed_loss(loss_a, loss_b, layer.lam, layer.applied.value)
