"""Optimizer kernels against plain-NumPy float64 references of the PyTorch update rules."""
import platform

import numpy as np
import pytest

from dlkit import optim
from kernels.cpu import optim as K


def _params(rng, dtype=np.float64):
    return {"a": {"W": rng.standard_normal((13, 7)).astype(dtype),
                  "b": rng.standard_normal(7).astype(dtype)}}


def _grads_seq(rng, params, n, dtype=np.float64):
    return [{"a": {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params["a"].items()}}
            for _ in range(n)]


def ref_run(name, params, grads_seq, lr, **hp):
    p = {k: v.astype(np.float64).copy() for k, v in params["a"].items()}
    s1 = {k: np.zeros_like(v) for k, v in p.items()}
    s2 = {k: np.zeros_like(v) for k, v in p.items()}
    for t, grads in enumerate(grads_seq, 1):
        for k in p:
            g = grads["a"][k] + hp.get("l2", 0) * p[k] + hp.get("l1", 0) * np.sign(p[k])
            if name == "sgd":
                mu = hp.get("momentum", 0)
                s1[k] = mu * s1[k] + g
                p[k] -= lr * (g + mu * s1[k] if hp.get("nesterov") else s1[k])
            elif name in ("adam", "adamw"):
                b1, b2, eps = 0.9, 0.999, 1e-8
                p[k] -= lr * hp.get("weight_decay", 0) * p[k]
                s1[k] = b1 * s1[k] + (1 - b1) * g
                s2[k] = b2 * s2[k] + (1 - b2) * g * g
                p[k] -= lr * (s1[k] / (1 - b1 ** t)) / (np.sqrt(s2[k] / (1 - b2 ** t)) + eps)
            elif name == "rmsprop":
                rho, eps, mu = 0.99, 1e-8, hp.get("momentum", 0)
                s1[k] = rho * s1[k] + (1 - rho) * g * g
                s2[k] = mu * s2[k] + g / (np.sqrt(s1[k]) + eps)
                p[k] -= lr * s2[k]
    return p


CASES = [("sgd", {}), ("sgd", {"momentum": 0.9}), ("sgd", {"momentum": 0.9, "nesterov": True}),
         ("sgd", {"momentum": 0.5, "l2": 1e-2, "l1": 1e-3}), ("adam", {}),
         ("adam", {"l2": 1e-2}), ("adam", {"l1": 1e-3}), ("adam", {"l2": 1e-2, "l1": 1e-3}),
         ("adamw", {"weight_decay": 0.1}), ("adam", {"weight_decay": 0.1, "l1": 1e-3}),
         ("rmsprop", {}),
         ("rmsprop", {"momentum": 0.9, "l1": 1e-3})]


@pytest.mark.parametrize("name,hp", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_matches_reference(name, hp, dtype, rng):
    params = _params(rng, dtype)
    seq = _grads_seq(rng, params, 5, dtype)
    opt = optim.get(name, 0.01, **hp)
    state = opt.init(params)
    p = params
    for g in seq:
        u, state = opt.update(g, state, p)
        p = optim.apply_updates(p, u)
    want = ref_run(name, params, seq, 0.01, **hp)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    for k in want:
        assert p["a"][k].dtype == dtype
        np.testing.assert_allclose(p["a"][k], want[k], rtol=tol, atol=tol)
    assert int(state["step"]) == 5


@pytest.mark.parametrize("name,hp", CASES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("n", [7, 70_000])              # serial and parallel builds
def test_step_equals_update_then_apply_bit_for_bit(name, hp, dtype, n, rng):
    params = {"w": rng.standard_normal(n).astype(dtype), "b": rng.standard_normal(3).astype(dtype)}
    opt = optim.get(name, 0.01, **hp)
    s1 = s2 = opt.init(params)
    p1 = p2 = params
    for _ in range(3):
        g = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        u, s1 = opt.update(g, s1, p1)
        p1 = optim.apply_updates(p1, u)
        p2, s2 = opt.step(g, s2, p2)
    for k in params:
        assert p1[k].dtype == p2[k].dtype == dtype and p1[k].tobytes() == p2[k].tobytes()
    from dlkit import tree
    assert tree.equal(s1, s2)


def test_update_is_pure(rng):
    params = _params(rng, np.float32)
    g = _grads_seq(rng, params, 1, np.float32)[0]
    opt = optim.adam(1e-2)
    state = opt.init(params)
    before = [a.copy() for a in (params["a"]["W"], state["m"]["a"]["W"])]
    opt.update(g, state, params)
    opt.step(g, state, params)
    assert np.array_equal(before[0], params["a"]["W"])
    assert np.array_equal(before[1], state["m"]["a"]["W"])
    assert int(state["step"]) == 0


def test_schedules():
    assert optim.constant(0.1)(1000) == 0.1
    s = optim.step_decay(1.0, 10, 0.5)
    assert (s(0), s(9), s(10), s(25)) == (1.0, 1.0, 0.5, 0.25)
    c = optim.cosine(1.0, 100, final_lr=0.1, warmup_steps=10)
    assert c(0) == pytest.approx(0.1) and c(9) == pytest.approx(1.0)
    assert c(10) == pytest.approx(1.0) and c(100) == pytest.approx(0.1)
    assert c(55) == pytest.approx(0.55)


def test_schedule_drives_the_update(rng):
    params = _params(rng)
    g = _grads_seq(rng, params, 1)[0]
    opt = optim.sgd(optim.step_decay(1.0, 1, 0.5))
    state = opt.init(params)
    u0, state = opt.update(g, state, params)
    u1, state = opt.update(g, state, params)
    np.testing.assert_allclose(u1["a"]["W"], 0.5 * u0["a"]["W"])


@pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                    reason="FTZ/DAZ are set through x86's MXCSR")
@pytest.mark.parametrize("n", [5, 70_000])               # serial and parallel builds
def test_subnormal_moments_flushed_inside_kernels_only(n):
    """Adam's m decays 0.9x a step where the gradient is 0; once subnormal it is flushed to 0
    inside the kernel (no slow subnormal arithmetic), while the caller's MXCSR is untouched."""
    tiny = np.float32(1e-39)                              # subnormal in float32
    z = np.zeros(n, np.float32)
    m = np.full(n, tiny, np.float32)
    u, m2, v2 = K.adam_update(z, z, m, z, 1e-3, 0.9, 0.999, 1e-8, 5, 0.0, 0.0, 0.0)
    assert not m2.any() and not u.any()
    assert (np.array([tiny]) * np.float32(0.9))[0] > 0    # subnormals still exist out here
