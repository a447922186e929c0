"""A learned utility over candidate prompts from pairwise preferences (APOHF, Lin et al., 2024).

A small MLP maps a prompt's embedding to a utility; it is trained on every comparison so far
with the Bradley-Terry loss (a logistic loss on the difference of the two utilities), from a
fresh initialisation each time it is refitted. Pairs are chosen as in the paper's neural dueling
bandit: the first arm has the highest predicted utility, the second maximises the utility plus
a confidence bonus built from the network's parameter gradients, so a prompt whose gradient
points where comparisons have been few gets explored.

With no hidden layers the same model is a linear dueling bandit (the utility is a weighted sum
of the embedding), one of the paper's baselines. Everything is plain numpy, seeded.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

EMBEDDING_DIM = 256
"""Dimensions of the built-in text embedding."""
_WORD = re.compile(r"\w+", re.UNICODE)


def hashed_embedding(text: str, dim: int = EMBEDDING_DIM) -> Array:
    """A deterministic embedding that needs no model: word unigrams and bigrams and character
    trigrams hashed into `dim` signed buckets, L2-normalised.

    It is the fallback when no embedding model is available (`fit_dimension` shapes a model's
    vectors instead): prompts that share words and phrasing land close together, which is what
    the utility model needs to generalise from compared prompts to similar ones. It knows
    nothing of meaning (synonyms are far apart).
    """
    vec = np.zeros(dim)
    words = [w.lower() for w in _WORD.findall(text)]
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    flat = " ".join(words)
    grams += [f"#{flat[i : i + 3]}" for i in range(max(0, len(flat) - 2))]
    for gram in grams:
        digest = hashlib.blake2b(gram.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        sign = 1.0 if digest[4] & 1 else -1.0
        vec[bucket] += sign
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def fit_dimension(vectors: Sequence[Sequence[float]], dim: int = EMBEDDING_DIM) -> Array:
    """Model embeddings as rows of `dim` columns, L2-normalised, whatever size the model gives.

    Longer vectors are projected with a fixed Gaussian matrix seeded by their size (a
    Johnson-Lindenstrauss projection keeps the distances between prompts, which truncation
    keeps only for models trained for it); shorter ones are padded with zeros. The same
    model always lands in the same space, so the utility model's input size never changes.

    Raises:
        ValueError: the vectors are empty, of different sizes, or not finite.
    """
    rows = np.asarray(vectors, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise ValueError("embeddings must be one non-empty vector per text, all of one size")
    if not np.all(np.isfinite(rows)):
        raise ValueError("embeddings hold a value that is not a finite number")
    size = rows.shape[1]
    if size > dim:
        projection = np.random.default_rng([size, dim]).normal(size=(size, dim))
        rows = rows @ projection / math.sqrt(dim)
    elif size < dim:
        rows = np.pad(rows, ((0, 0), (0, dim - size)))
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    fitted: Array = np.divide(rows, norms, out=np.zeros_like(rows), where=norms > 0)
    return fitted


@dataclass(frozen=True)
class Comparison:
    """One answered pair: arms by index, and the first arm's share of the win (1, 0, 0.5)."""

    first: int
    second: int
    first_wins: float


@dataclass(frozen=True)
class UtilitySettings:
    """The utility model's shape and training; the defaults are the paper's."""

    hidden: tuple[int, ...] = (32, 32)
    """Hidden layer widths; () makes the linear dueling bandit."""
    learning_rate: float = 1e-3
    steps: int = 300
    """Full-batch Adam steps per refit."""
    regularization: float = 0.1
    """lambda: the confidence matrix's prior and the weight decay's numerator (over n + 50)."""
    exploration: float = 1.0
    """nu: the weight of the confidence bonus."""


class UtilityModel:
    """The Bradley-Terry utility network over a fixed pool of embedded arms."""

    def __init__(self, features: Array, settings: UtilitySettings, seed: int) -> None:
        """A model for arms whose embeddings are the rows of `features`."""
        if features.ndim != 2 or features.shape[0] == 0:
            raise ValueError("features must be a non-empty 2-D array, one row per arm")
        self.features = np.asarray(features, dtype=np.float64)
        self.settings = settings
        self.seed = seed
        self.refits = 0
        sizes = (self.features.shape[1], *settings.hidden, 1)
        self._shapes = [(o, i) for i, o in itertools.pairwise(sizes)]
        self.params = self._init()

    # --- parameters -----------------------------------------------------------------------

    def _init(self) -> list[tuple[Array, Array]]:
        # Seeded by the refit number, so the same comparisons give the same model every run.
        rng = np.random.default_rng([self.seed, self.refits])
        layers = []
        for out, inp in self._shapes:
            weight = rng.normal(0.0, math.sqrt(2.0 / inp), size=(out, inp))
            layers.append((weight, np.zeros(out)))
        return layers

    def _flat(self, layers: Sequence[tuple[Array, Array]]) -> Array:
        return np.concatenate([np.concatenate([w.ravel(), b]) for w, b in layers])

    def _unflat(self, flat: Array) -> list[tuple[Array, Array]]:
        layers, at = [], 0
        for out, inp in self._shapes:
            w = flat[at : at + out * inp].reshape(out, inp)
            at += out * inp
            b = flat[at : at + out]
            at += out
            layers.append((w, b))
        return layers

    @property
    def n_params(self) -> int:
        """How many parameters the network has."""
        return sum(out * inp + out for out, inp in self._shapes)

    # --- forward and gradients ------------------------------------------------------------

    def _forward(self, x: Array) -> tuple[Array, list[Array], list[Array]]:
        """Utilities of the rows of `x`, with each layer's inputs and pre-activations."""
        inputs, pre = [], []
        h = x
        for k, (w, b) in enumerate(self.params):
            inputs.append(h)
            z = h @ w.T + b
            pre.append(z)
            h = np.maximum(z, 0.0) if k < len(self.params) - 1 else z
        return h[:, 0], inputs, pre

    def _backward(self, weight: Array, inputs: Sequence[Array], pre: Sequence[Array]) -> Array:
        """The gradient of sum_x weight[x] * f(x) with respect to the flat parameters."""
        delta = weight[:, None]
        blocks: list[Array] = []
        for k in range(len(self.params) - 1, -1, -1):
            w, _ = self.params[k]
            blocks.insert(0, np.concatenate([(delta.T @ inputs[k]).ravel(), delta.sum(axis=0)]))
            if k > 0:
                delta = (delta @ w) * (pre[k - 1] > 0)
        return np.concatenate(blocks)

    def utilities(self) -> Array:
        """The predicted utility of every arm."""
        return self._forward(self.features)[0]

    def gradients(self) -> Array:
        """Per-arm gradients of the utility with respect to every parameter (arms x params)."""
        _, inputs, pre = self._forward(self.features)
        n = self.features.shape[0]
        blocks: list[Array] = []
        delta = np.ones((n, 1))  # d utility / d output
        for k in range(len(self.params) - 1, -1, -1):
            w, _ = self.params[k]
            grad_w = delta[:, :, None] * inputs[k][:, None, :]  # n x out x in
            blocks.insert(0, np.concatenate([grad_w.reshape(n, -1), delta], axis=1))
            if k > 0:
                delta = (delta @ w) * (pre[k - 1] > 0)
        return np.concatenate(blocks, axis=1)

    # --- fitting --------------------------------------------------------------------------

    def fit(self, comparisons: Sequence[Comparison]) -> None:
        """Refit from scratch on all comparisons so far (Bradley-Terry loss, Adam, weight decay
        lambda / (n + 50))."""
        self.refits += 1
        self.params = self._init()
        if not comparisons:
            return
        s = self.settings
        first = np.array([c.first for c in comparisons])
        second = np.array([c.second for c in comparisons])
        target = np.array([c.first_wins for c in comparisons])
        decay = s.regularization / (len(comparisons) + 50)
        theta = self._flat(self.params)
        m = np.zeros_like(theta)
        v = np.zeros_like(theta)
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        n_arms = self.features.shape[0]
        for t in range(1, s.steps + 1):
            util, inputs, pre = self._forward(self.features)
            p = 1.0 / (1.0 + np.exp(-(util[first] - util[second])))
            # The mean logistic loss on f(first) - f(second), as a weight per arm on its
            # utility, then one backward pass (not a Jacobian per arm: refits are frequent).
            weight = np.zeros(n_arms)
            np.add.at(weight, first, (p - target) / len(comparisons))
            np.add.at(weight, second, -(p - target) / len(comparisons))
            g = self._backward(weight, inputs, pre) + 2.0 * decay * theta
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            m_hat = m / (1 - beta1**t)
            v_hat = v / (1 - beta2**t)
            theta = theta - s.learning_rate * m_hat / (np.sqrt(v_hat) + eps)
            self.params = self._unflat(theta)

    def loss(self, comparisons: Sequence[Comparison]) -> float:
        """The mean Bradley-Terry loss of the current parameters on `comparisons`."""
        util = self.utilities()
        total = 0.0
        for c in comparisons:
            p = 1.0 / (1.0 + math.exp(-(util[c.first] - util[c.second])))
            p = min(max(p, 1e-12), 1 - 1e-12)
            total -= c.first_wins * math.log(p) + (1 - c.first_wins) * math.log(1 - p)
        return total / max(1, len(comparisons))

    # --- pair choice ----------------------------------------------------------------------

    def bonuses(self, comparisons: Sequence[Comparison], anchor: int) -> Array:
        """Each arm's confidence bonus against `anchor`: sqrt(nu * sum_j (g_x - g_a)_j^2 / U_jj),
        with U = lambdaI + sum over compared pairs of (g_1 - g_2)^2, kept diagonal."""
        grads = self.gradients()
        u = np.full(grads.shape[1], self.settings.regularization)
        for c in comparisons:
            u += (grads[c.first] - grads[c.second]) ** 2
        diff = grads - grads[anchor]
        bonus: Array = np.sqrt(self.settings.exploration * (diff * diff / u).sum(axis=1))
        return bonus

    def choose_pair(
        self, comparisons: Sequence[Comparison], allowed: Sequence[int] | None = None
    ) -> tuple[int, int]:
        """The next pair: the arm of highest utility, and the other arm of highest utility plus
        bonus. Ties go to the lower index. Needs two arms."""
        arms = list(range(self.features.shape[0])) if allowed is None else list(allowed)
        if len(arms) < 2:
            raise ValueError("a pair needs two arms")
        util = self.utilities()
        first = min(arms, key=lambda i: (-util[i], i))
        bonus = self.bonuses(comparisons, first)
        second = min((i for i in arms if i != first), key=lambda i: (-(util[i] + bonus[i]), i))
        return first, second

    def best(self, among: Sequence[int]) -> int:
        """The arm of highest predicted utility among `among` (the compared arms)."""
        util = self.utilities()
        return min(among, key=lambda i: (-util[i], i))
