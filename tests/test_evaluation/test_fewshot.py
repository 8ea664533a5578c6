"""ModelNet40 few-shot folds: the protocol's counts, determinism per seed, the summary."""
from __future__ import annotations

import numpy as np
import pytest

from concept_distill.evaluation.fewshot import (
    FEWSHOT_SETTINGS,
    fewshot_folds,
    sample_fewshot_fold,
    summarize_folds,
)

# A ModelNet40-sized label set: 40 classes, 30-60 train and 20-40 test objects each.
_RNG = np.random.default_rng(7)
TRAIN = np.repeat(np.arange(40), _RNG.integers(30, 60, 40))
TEST = np.repeat(np.arange(40), _RNG.integers(20, 40, 40))


@pytest.mark.parametrize('n_way,k_shot', FEWSHOT_SETTINGS)
def test_fold_counts_and_labels(n_way, k_shot):
    folds = fewshot_folds(TRAIN, TEST, n_way, k_shot, num_folds=10, seed=0)
    assert len(folds) == 10
    for f in folds:
        assert len(set(f.classes)) == n_way
        assert len(f.support) == n_way * k_shot and len(f.query) == n_way * 20
        assert sorted(TRAIN[list(f.support)].tolist()) == sorted(list(f.classes) * k_shot)
        assert sorted(TEST[list(f.query)].tolist()) == sorted(list(f.classes) * 20)
        assert len(set(f.support)) == len(f.support)  # no object twice
        assert [f.remap(c) for c in f.classes] == list(range(n_way))
    assert len({f.classes for f in folds}) == 10  # folds differ


def test_deterministic_per_seed():
    a = sample_fewshot_fold(TRAIN, TEST, 5, 10, fold=3, seed=1)
    b = sample_fewshot_fold(TRAIN, TEST, 5, 10, fold=3, seed=1)
    c = sample_fewshot_fold(TRAIN, TEST, 5, 10, fold=3, seed=2)
    assert a == b and a != c
    # A fold does not depend on how many folds are drawn.
    assert fewshot_folds(TRAIN, TEST, 5, 10, num_folds=4)[3] == \
        sample_fewshot_fold(TRAIN, TEST, 5, 10, fold=3, seed=0)


def test_not_enough_objects_is_an_error():
    with pytest.raises(ValueError, match='10-way 20-shot with 20 queries needs 10 classes'):
        sample_fewshot_fold(np.repeat(np.arange(12), 15), np.repeat(np.arange(12), 25), 10, 20, 0)


def test_summary_mean_and_std_by_hand():
    out = summarize_folds([0.9, 0.8, 1.0, 0.7])
    assert out['mean'] == pytest.approx(0.85)
    assert out['std'] == pytest.approx(np.sqrt(((0.05 ** 2) * 2 + 0.15 ** 2 * 2) / 4))
    assert out['num_folds'] == 4
