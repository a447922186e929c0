"""The Bradley-Terry utility model behind APOHF: gradients, fitting, and the confidence bonus."""

from __future__ import annotations

import random

import numpy as np
import pytest

from promptopt.search.utility import (
    EMBEDDING_DIM,
    Comparison,
    UtilityModel,
    UtilitySettings,
    fit_dimension,
    hashed_embedding,
)


def random_features(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def test_gradients_match_finite_differences() -> None:
    model = UtilityModel(random_features(5, 6, 0), UtilitySettings(hidden=(4, 3)), seed=1)
    grads = model.gradients()
    flat = model._flat(model.params)
    assert grads.shape == (5, model.n_params) == (5, flat.size)
    eps = 1e-6
    for j in range(0, flat.size, 7):
        bumped = flat.copy()
        bumped[j] += eps
        model.params = model._unflat(bumped)
        up = model.utilities()
        bumped[j] -= 2 * eps
        model.params = model._unflat(bumped)
        down = model.utilities()
        model.params = model._unflat(flat)
        assert np.allclose((up - down) / (2 * eps), grads[:, j], atol=1e-5)


def simulated(utility: np.ndarray, n: int, seed: int) -> list[Comparison]:
    """Preferences drawn from a Bradley-Terry model with the given true utilities."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i, j = rng.sample(range(len(utility)), 2)
        p = 1 / (1 + np.exp(-(utility[i] - utility[j])))
        out.append(Comparison(i, j, 1.0 if rng.random() < p else 0.0))
    return out


@pytest.mark.parametrize("hidden", [(32, 32), ()])
def test_fit_recovers_a_known_utility_order(hidden: tuple[int, ...]) -> None:
    features = random_features(8, 16, 2)
    truth = features @ np.random.default_rng(3).normal(size=16) * 3.0
    settings = UtilitySettings(hidden=hidden, learning_rate=1e-2, steps=400)
    model = UtilityModel(features, settings, seed=0)
    comparisons = simulated(truth, 300, seed=4)
    model.fit(comparisons)
    learned = model.utilities()
    # Rank correlation between the learned and the true utilities (Spearman, by hand).
    rank_true = np.argsort(np.argsort(truth))
    rank_learned = np.argsort(np.argsort(learned))
    rho = np.corrcoef(rank_true, rank_learned)[0, 1]
    assert rho > 0.85
    assert int(np.argmax(learned)) == int(np.argmax(truth))
    assert model.loss(comparisons) < UtilityModel(features, settings, seed=0).loss(comparisons)


def test_refits_start_afresh_and_are_reproducible() -> None:
    features = random_features(6, 8, 5)
    comparisons = [Comparison(0, 1, 1.0), Comparison(2, 3, 0.0), Comparison(0, 3, 0.5)]
    a = UtilityModel(features, UtilitySettings(steps=50), seed=9)
    b = UtilityModel(features, UtilitySettings(steps=50), seed=9)
    a.fit(comparisons)
    b.fit(comparisons)
    assert np.array_equal(a.utilities(), b.utilities())
    # A refit on no comparisons is a fresh (second) initialisation, not the trained network.
    trained = a.utilities()
    a.fit([])
    assert not np.allclose(a.utilities(), trained)


def test_the_bonus_shrinks_where_a_candidate_was_compared_often() -> None:
    features = random_features(6, 8, 6)
    model = UtilityModel(features, UtilitySettings(hidden=(16, 16)), seed=0)
    anchor = 0
    before = model.bonuses([], anchor)
    often = [Comparison(anchor, 3, 1.0)] * 20
    after = model.bonuses(often, anchor)
    assert after[3] < before[3] / 2
    # An arm never compared keeps most of its bonus; the anchor's own bonus is 0.
    assert after[5] > after[3]
    assert after[anchor] == 0.0


def test_a_pair_is_the_best_arm_and_the_most_optimistic_other_one() -> None:
    features = random_features(5, 8, 7)
    model = UtilityModel(features, UtilitySettings(), seed=0)
    first, second = model.choose_pair([])
    util = model.utilities()
    assert first == int(np.argmax(util)) and second != first
    bonus = model.bonuses([], first)
    others = [i for i in range(5) if i != first]
    assert second == max(others, key=lambda i: util[i] + bonus[i])
    assert model.choose_pair([], allowed=[1, 4])[0] in (1, 4)
    with pytest.raises(ValueError, match="two arms"):
        model.choose_pair([], allowed=[2])


def test_hashed_embedding_is_deterministic_normalised_and_similarity_aware() -> None:
    a = hashed_embedding("Classify the question by the type of its answer.")
    b = hashed_embedding("Classify each question by the type of its answer.")
    c = hashed_embedding("Translate the sentence into French, politely.")
    assert np.array_equal(a, hashed_embedding("Classify the question by the type of its answer."))
    assert np.isclose(np.linalg.norm(a), 1.0)
    assert a @ b > 0.7 > a @ c
    assert not hashed_embedding("").any()


def test_the_training_gradient_is_the_sum_of_per_arm_gradients() -> None:
    model = UtilityModel(random_features(4, 5, 8), UtilitySettings(hidden=(3, 2)), seed=2)
    weight = np.array([0.5, -1.0, 0.0, 2.0])
    _, inputs, pre = model._forward(model.features)
    assert np.allclose(model._backward(weight, inputs, pre), weight @ model.gradients())


@pytest.mark.parametrize("size", [2, 256, 1536])
def test_model_embeddings_fit_one_dimension_normalised(size: int) -> None:
    rng = np.random.default_rng(size)
    vectors = rng.normal(size=(5, size)) * 7.0
    fitted = fit_dimension(vectors.tolist())
    assert fitted.shape == (5, EMBEDDING_DIM)
    assert np.allclose(np.linalg.norm(fitted, axis=1), 1.0)
    # The same model's vectors always land in the same place.
    assert np.array_equal(fitted, fit_dimension(vectors.tolist()))
    if size > EMBEDDING_DIM:
        # The projection keeps which prompts are alike (Johnson-Lindenstrauss).
        before = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        near = before[0] * 0.9 + before[1] * 0.1
        pair = fit_dimension([before[0].tolist(), near.tolist(), before[2].tolist()])
        assert pair[0] @ pair[1] > pair[0] @ pair[2]


@pytest.mark.parametrize("vectors", [[], [[]], [[1.0, 2.0], [1.0]], [[float("nan"), 1.0]]], ids=str)
def test_unusable_embeddings_are_refused(vectors: list[list[float]]) -> None:
    with pytest.raises(ValueError):
        fit_dimension(vectors)
