import numpy as np
import pytest
from baselines._data import pairs

from mlrdist import MaskedRidge
from mlrdist.select import grid_search, group_kfold


def test_folds_are_subject_disjoint_and_cover():
    groups = [f"s{i // 2}" for i in range(20)]
    splits = group_kfold(groups, 4, seed=3)
    seen = []
    for train, test in splits:
        assert not {groups[i] for i in train} & {groups[i] for i in test}
        seen.extend(test)
    assert sorted(seen) == list(range(20))


def test_bad_folds():
    with pytest.raises(ValueError, match="folds"):
        group_kfold(["a", "b"], 3)


def test_select_prefers_fitting_receptive_field():
    X, Y = pairs(n=80)
    best, scores = grid_search(
        MaskedRidge(scaling="none"), {"receptive_field": [1, 3], "alpha": [1e-3]}, X, Y, list(range(80)), 4
    )
    assert best == {"receptive_field": 3, "alpha": 1e-3}  # Y uses the left neighbour
    assert len(scores) == 2 and all(np.isfinite(s["mse"]) for s in scores)
