"""ModelNet40 few-shot protocol: N-way K-shot folds (deterministic per seed) and their summary.

A fold draws `n_way` classes, then per class `k_shot` training (support) objects from the
train split and `n_query` (20 in the peers' protocol) test (query) objects from the test
split; labels are remapped to 0..n_way-1 in the order of the drawn classes. The usual
settings are 5/10-way x 10/20-shot, 10 folds each, reported as mean +- std of the folds'
accuracies.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FEWSHOT_SETTINGS = ((5, 10), (5, 20), (10, 10), (10, 20))  # (n_way, k_shot)


@dataclass(frozen=True)
class FewShotFold:
    """One fold: original class ids, support (train) and query (test) indices."""

    n_way: int
    k_shot: int
    fold: int
    seed: int
    classes: tuple[int, ...]  # original labels; new label = position here
    support: tuple[int, ...]  # indices into the train split, class by class
    query: tuple[int, ...]  # indices into the test split, class by class

    def remap(self, label: int) -> int:
        """New label (0..n_way-1) of an original class id."""
        return self.classes.index(int(label))


def sample_fewshot_fold(train_labels: Sequence[int], test_labels: Sequence[int], n_way: int,
                        k_shot: int, fold: int, seed: int = 0,
                        n_query: int = 20) -> FewShotFold:
    """The fold `fold` of the (n_way, k_shot) setting: depends only on the labels, the
    setting, `fold` and `seed`."""
    train, test = np.asarray(train_labels, np.int64), np.asarray(test_labels, np.int64)
    eligible = [c for c in np.unique(train)
                if (train == c).sum() >= k_shot and (test == c).sum() >= n_query]
    if len(eligible) < n_way:
        raise ValueError(f'{n_way}-way {k_shot}-shot with {n_query} queries needs {n_way} '
                         f'classes with enough objects; only {len(eligible)} have them')
    rng = np.random.default_rng([seed, n_way, k_shot, n_query, fold])
    classes = [int(c) for c in rng.choice(eligible, n_way, replace=False)]
    support, query = [], []
    for c in classes:
        support += sorted(rng.choice(np.nonzero(train == c)[0], k_shot, replace=False).tolist())
        query += sorted(rng.choice(np.nonzero(test == c)[0], n_query, replace=False).tolist())
    return FewShotFold(n_way, k_shot, fold, seed, tuple(classes), tuple(support), tuple(query))


def fewshot_folds(train_labels: Sequence[int], test_labels: Sequence[int], n_way: int,
                  k_shot: int, num_folds: int = 10, seed: int = 0,
                  n_query: int = 20) -> list[FewShotFold]:
    """Folds 0..num_folds-1 of one setting."""
    return [sample_fewshot_fold(train_labels, test_labels, n_way, k_shot, f, seed, n_query)
            for f in range(num_folds)]


def summarize_folds(accuracies: Sequence[float]) -> dict[str, float]:
    """mean and std (population, ddof=0) of per-fold accuracies, and the fold count."""
    acc = np.asarray(accuracies, np.float64)
    if acc.size == 0:
        raise ValueError('no fold accuracies to summarise')
    return dict(mean=float(acc.mean()), std=float(acc.std()), num_folds=int(acc.size))
