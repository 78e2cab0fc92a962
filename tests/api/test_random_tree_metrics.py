import numpy as np
import pytest

from dlkit import metrics, random, tree


def test_keys_are_deterministic_and_distinct():
    k = random.key(42)
    assert k == random.key(42) and k != random.key(43)
    a, b = random.split(k)
    assert len({k, a, b, random.fold_in(k, 0), random.fold_in(k, 1)}) == 5
    assert random.fold_in(k, 7) == random.fold_in(k, 7)
    x1 = random.generator(a).random(5)
    assert np.array_equal(x1, random.generator(a).random(5))
    with pytest.raises(TypeError, match="expected a key"):
        random.generator((1, 2, 3))
    with pytest.raises(ValueError, match="non-negative"):
        random.key(-1)


def test_tree_helpers():
    t = {"b": {"W": np.ones((2, 3)), "b": np.zeros(3)}, "a": {"x": np.arange(4.0)}}
    flat = tree.flatten(t)
    assert list(flat) == ["a/x", "b/W", "b/b"]
    assert tree.equal(tree.unflatten(flat), t)
    assert tree.size(t) == 13
    doubled = tree.map(lambda a: 2 * a, t)
    assert doubled["b"]["W"][0, 0] == 2
    c = tree.copy(t)
    c["a"]["x"][0] = 99
    assert t["a"]["x"][0] == 0 and not tree.equal(c, t)
    assert tree.digest(t) == tree.digest(tree.copy(t)) != tree.digest(c)


def test_metrics_against_hand_computed():
    yt = np.array([0, 0, 1, 1, 2, 2, 2])
    yp = np.array([0, 1, 1, 1, 2, 0, 1])
    assert metrics.accuracy(yt, yp) == pytest.approx(4 / 7)
    cm = metrics.confusion_matrix(yt, yp, 3)
    assert cm.tolist() == [[1, 1, 0], [0, 2, 0], [1, 1, 1]]
    r = metrics.precision_recall_f1(yt, yp, 3)
    np.testing.assert_allclose(r["precision"], [1 / 2, 2 / 4, 1 / 1])
    np.testing.assert_allclose(r["recall"], [1 / 2, 2 / 2, 1 / 3])
    np.testing.assert_allclose(r["f1"], [0.5, 2 / 3, 0.5])
    assert r["macro_f1"] == pytest.approx((0.5 + 2 / 3 + 0.5) / 3)
    rep = metrics.classification_report(yt, yp, ["a", "b", "c"])
    assert "macro avg" in rep and "0.5714" in rep
    with pytest.raises(ValueError, match="outside"):
        metrics.confusion_matrix(yt, yp + 1, 3)
