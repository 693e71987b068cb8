import numpy as np
import pytest
from datasets import ClassLabel, Dataset, Features, Value

from gendd_hf.data import long_tailed_class_counts, make_long_tailed


def labeled(counts):
    labels = [c for c, n in enumerate(counts) for _ in range(n)]
    features = Features({"idx": Value("int64"), "label": ClassLabel(num_classes=len(counts))})
    return Dataset.from_dict({"idx": list(range(len(labels))), "label": labels}, features=features)


def test_long_tailed_class_counts_hand_computed():
    # 100 * 10^(-c/9): 100, 77.4, 59.9, 46.4, 35.9, 27.8, 21.5, 16.7, 12.9, 10
    assert long_tailed_class_counts(100, 10, 10) == [100, 77, 59, 46, 35, 27, 21, 16, 12, 10]
    # Fashion-MNIST at ratio 100: the exact product 6000 / 100 must not floor to 59.
    counts = long_tailed_class_counts(6000, 10, 100)
    assert counts[0] == 6000 and counts[-1] == 60
    assert long_tailed_class_counts(5, 3, 1) == [5, 5, 5]
    with pytest.raises(ValueError, match="at least 2 classes"):
        long_tailed_class_counts(5, 1, 10)


def test_make_long_tailed_counts_order_and_seed():
    ds = labeled([8, 8, 8])
    # n_c = 8 * 4^(-c/2): 8, 4, 2
    lt = make_long_tailed(ds, imbalance_ratio=4, seed=0)
    assert np.bincount(lt["label"][:]).tolist() == [8, 4, 2]
    ids = lt["idx"][:]
    assert ids == sorted(ids) and ids[:8] == list(range(8))
    assert make_long_tailed(ds, imbalance_ratio=4, seed=0)["idx"][:] == ids
    assert make_long_tailed(ds, imbalance_ratio=4, seed=1)["idx"][:] != ids
    # n_max is the smallest class, so every quota can be met: 5 * 5^(-c/2) -> 5, 2, 1.
    assert np.bincount(make_long_tailed(labeled([9, 6, 5]), imbalance_ratio=5)["label"][:]).tolist() == [5, 2, 1]
    # An explicit head size: 4 * 4^(-c/2) -> 4, 2, 1.
    assert np.bincount(make_long_tailed(ds, imbalance_ratio=4, n_max=4)["label"][:]).tolist() == [4, 2, 1]


def test_make_long_tailed_errors():
    ds = labeled([4, 4])
    with pytest.raises(ValueError, match="imbalance_ratio must be >= 1"):
        make_long_tailed(ds, imbalance_ratio=0.5)
    with pytest.raises(ValueError, match=r"'target' is not a column.*\['idx', 'label'\]"):
        make_long_tailed(ds, label_column="target")
    with pytest.raises(ValueError, match=r"classes \[1\] have no examples"):
        make_long_tailed(labeled([4, 0, 4]))
    with pytest.raises(ValueError, match=r"n_max=5 must lie in \[1, 4\]"):
        make_long_tailed(ds, n_max=5)
