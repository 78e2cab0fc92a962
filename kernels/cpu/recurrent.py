"""Recurrent layers over whole sequences: simple RNN, LSTM and GRU, forward and full BPTT.

Shapes (B batch, T time, I input features, H hidden units, G gates):

    x (B, T, I)            inputs, batch-major as in PyTorch's batch_first=True
    W (I, G*H)             input weights; one input GEMM covers a chunk of time steps
    U (H, G*H)             recurrent weights; one recurrent GEMM per step
    b (G*H,)               bias (PyTorch's b_ih + b_hh; the GRU keeps both, see below)
    h0 (B, H), c0 (B, H)   initial state; hT, cT (B, H) final state
    t0, t1 (B,) int64      step t of sequence n is *valid* iff t0[n] <= t < t1[n]:
                           post-padding is t0 = 0, t1 = length; pre-padding t0 = T - length,
                           t1 = T.  At invalid steps the state passes through unchanged, the
                           output is 0, and no gradient reaches the input or the weights.
    reverse (bool)         process t = T-1 .. 0 (the backward half of a Bidirectional layer);
                           outputs stay at their time positions.
    y (B, T, H)            output h_t at every step (0 at invalid steps)

Cells (PyTorch's formulations, so weights carry over element by element; PyTorch stores
weight_ih as (G*H, I) and weight_hh as (G*H, H): W = weight_ih.T, U = weight_hh.T):

    RNN  (G=1)  h = act(x W + h U + b),  act tanh (ACT_TANH) or relu (ACT_RELU)
    LSTM (G=4)  gate order i, f, g, o:  [a_i a_f a_g a_o] = x W + h U + b
                i = s(a_i), f = s(a_f), g = tanh(a_g), o = s(a_o)      (s: sigmoid)
                c' = f c + i g,  h' = o tanh(c')
    GRU  (G=3)  gate order r, z, n; b the input bias b_ih, bh (3H,) the recurrent bias b_hh:
                [a_r a_z a_n] = x W + b,   [u_r u_z u_n] = h U + bh
                r = s(a_r + u_r), z = s(a_z + u_z), n = tanh(a_n + r u_n)
                h' = (1 - z) n + z h

Work split: the batch is cut into a fixed number of row blocks (``_n_blocks``: 64 rows a
block, but two blocks from 32 rows on, at most 16; it depends on B only).  Batch rows are
independent in a recurrence, so each block runs its whole sequence inside one ``prange``
iteration with no synchronisation between steps, in time chunks of ``_chunk`` steps (about
_CHUNK_ROWS = 512 rows of batch x time, so a chunk's gate pre-activations and gradients stay
in cache between the GEMMs that write and read them; one pass over the whole sequence instead
ran the LSTM 7% slower at both benchmark shapes).  Per chunk one input GEMM (acts = xs W),
then per step one recurrent GEMM accumulating into that step's rows (acts_s += h_{s-1} U)
followed by the fused gate pass.  The backward runs the same blocks and chunks in reverse time
(per step: the gate-gradient pass, then dh += dA_s U^T); after each chunk the block adds the
chunk's weight and bias gradients to its partial with one GEMM over the chunk's rows
([x | 1 | h_prev]^T dA; the GRU two, its dA and dR differ) and forms the chunk's input
gradient with one more (dA W^T); the block partials are summed in a fixed order.  Chunks
depend on the shape only, so results are bit-identical across runs and
thread counts.  A batch of one block (B < 32) runs the serial build of the same source
(``parallel_above``): a parallel region with one iteration only costs.

BLAS: np.dot cannot accumulate into its output nor take strided rows, so besides np.dot the
kernels call the ?gemm of scipy's OpenBLAS (the one np.dot uses inside Numba, pinned to one
thread by dlkit) through ``_blas.gemm``, with beta = 1 to accumulate and strided row blocks.
The per-step products (h U, dA U^T) go through ``_blas.gemm_small``: each block cuts U (U^T
in the backward, so both are plain products) once into contiguous pieces of at most 1e6
multiply-adds, which OpenBLAS's AVX-512 builds multiply without packing (LSTM T=200: 20 ->
11 us a step; see ``_blas``; other builds get one piece, the whole U).

Cache layout (arrays the forward returns for the backward; never modified by the backward):
block k owning batch rows [b0, b1) (nb = b1 - b0) stores step-major rows, processing step
s (s-th step in processing order) of its row b0 + r at

    xs, acts:   row b0*T + s*nb + r             (B*T rows)
    hs, cs:     row b0*(T+1) + s*nb + r         (B*(T+1) rows; s = 0 is the initial state,
                                                 s + 1 the state after step s)

so each block's rows of one step are contiguous (what the per-step GEMM needs) and each
block's whole history is one contiguous matrix (what the weight-gradient GEMMs need).

Transcendentals: float32 uses vectorisable sigmoid/tanh (Cephes-style exp with a bit-cast
power of two; Cephes' tanhf polynomial near 0), within 2 ulp-ish of libm; LLVM turns the
gate loops into AVX code.  float64 (gradient checks) uses libm.

Denormals: every parallel iteration sets FTZ|DAZ in its thread's MXCSR on entry and restores
the caller's value on exit (``_fpenv``; x86, elsewhere a no-op).  Gradients that decay through hundreds of
steps (dc *= f) and tiny gate derivatives otherwise produce subnormal floats whose every
operation costs ~100 cycles (PyTorch's remedy is ``torch.set_flush_denormal(True)``).  The
caller's own floating-point state is untouched.
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

from ._blas import gemm, gemm_small, small_operand
from ._fpenv import ftz_enter as _ftz_enter
from ._fpenv import ftz_exit as _ftz_exit
from ._parallel import parallel_above

ACT_TANH, ACT_RELU = 0, 1

# Flat-array offsets are np.uint64 (a signed index makes Numba emit negative-index wraparound
# code that stops LLVM from vectorising); never mix them with signed ints in one expression.
_u = np.uint64
_u2, _u3 = _u(2), _u(3)

#: rows (batch rows x time steps) of a block's time chunk: its gate pre-activations stay in
#: cache from the input GEMM through the recurrence, its gradients through the weight GEMMs
_CHUNK_ROWS = 512

# ------------------------------------------------------------------ vectorisable float32 math
# error_model="numpy": float division without Python's zero check (which blocks vectorising);
# fastmath only with flags that keep NaN/Inf semantics (DESIGN.md).
_EM = {"error_model": "numpy", "fastmath": {"nsz", "arcp", "contract", "afn", "reassoc"}}


@intrinsic
def _f32_from_bits(typingctx, i):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


@njit(cache=True, **_EM)
def _exp32(x):
    """e^x for float32 x in [-87, 88] (callers clamp): Cephes expf, 2^n by bit-cast."""
    fx = np.floor(x * np.float32(1.44269504088896341) + np.float32(0.5))
    r = x - fx * np.float32(0.693359375) + fx * np.float32(2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    n = np.int32(fx)
    return p * _f32_from_bits(np.int32((n + np.int32(127)) << np.int32(23)))


@njit(cache=True, **_EM)
def _sigmoid32(x):
    z = min(max(x, np.float32(-80.0)), np.float32(80.0))
    return np.float32(1.0) / (np.float32(1.0) + _exp32(-z))


@njit(cache=True, **_EM)
def _tanh32(x):
    """Cephes tanhf: an odd polynomial below |x| = 0.625, 1 - 2 / (e^2|x| + 1) above."""
    a = abs(x)
    e = _exp32(min(a + a, np.float32(40.0)))
    big = np.float32(1.0) - np.float32(2.0) / (e + np.float32(1.0))
    z = x * x
    p = np.float32(-5.70498872745e-3)
    p = p * z + np.float32(2.06390887954e-2)
    p = p * z - np.float32(5.37397155531e-2)
    p = p * z + np.float32(1.33314422036e-1)
    p = p * z - np.float32(3.33332819422e-1)
    small = p * z * a + a
    t = small if a < np.float32(0.625) else big
    return t if x >= 0 else -t


def _sigmoid(x):  # pragma: no cover - replaced by the overload below inside njit code
    return 1 / (1 + np.exp(-x))


def _tanh(x):  # pragma: no cover
    return np.tanh(x)


@overload(_sigmoid, jit_options=_EM)
def _ov_sigmoid(x):
    if x == types.float32:
        return lambda x: _sigmoid32(x)
    return lambda x: 1 / (1 + np.exp(-x))


@overload(_tanh, jit_options=_EM)
def _ov_tanh(x):
    if x == types.float32:
        return lambda x: _tanh32(x)
    return lambda x: np.tanh(x)


@njit(cache=True)
def sigmoid(x):
    """The kernels' sigmoid over a 1-D array (for tests of the float32 approximation)."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = _sigmoid(x[i])
    return y


@njit(cache=True)
def tanh(x):
    """The kernels' tanh over a 1-D array (for tests of the float32 approximation)."""
    y = np.empty_like(x)
    for i in range(x.shape[0]):
        y[i] = _tanh(x[i])
    return y


# ------------------------------------------------------------------ shared plumbing
@njit(cache=True)
def _n_blocks(B):
    """Batch row blocks: 64 rows a block, at least two blocks from 32 rows on, at most 16."""
    return max(1, min(16, max(min(2, B // 16), B // 64)))


@njit(cache=True)
def _bounds(k, B, nblk):
    return k * B // nblk, (k + 1) * B // nblk


@njit(cache=True)
def _time(s, T, reverse):
    return T - 1 - s if reverse else s


@njit(cache=True)
def _gather_steps(x, b0, b1, reverse, xs):
    """xs[b0*T + s*nb + r] = x[b0 + r, t(s)]: a block's inputs in processing order (flat
    offsets: a row view per row costs atomic reference counts)."""
    T, I, nb = x.shape[1], x.shape[2], b1 - b0
    xf, xsf = x.reshape(-1), xs.reshape(-1)
    n = _u(I)
    for s in range(T):
        t = _time(s, T, reverse)
        for r in range(nb):
            d, q = _u((b0 * T + s * nb + r) * I), _u(((b0 + r) * T + t) * I)
            for j in range(n):
                xsf[d + j] = xf[q + j]


@njit(cache=True)
def _scatter_steps(d, b0, b1, T, reverse, dx, q0, q1):
    """Inverse of _gather_steps for a block's steps q0 .. q1 - 1:
    dx[b0 + r, t(s)] = d[(s - q0)*nb + r] (d local to the block and the chunk)."""
    nb, I = b1 - b0, dx.shape[2]
    df, dxf = d.reshape(-1), dx.reshape(-1)
    n = _u(I)
    for s in range(q0, q1):
        t = _time(s, T, reverse)
        for r in range(nb):
            q, e = _u(((s - q0) * nb + r) * I), _u(((b0 + r) * T + t) * I)
            for j in range(n):
                dxf[e + j] = df[q + j]


@njit(cache=True)
def _chunk(nb, T):
    """Time steps a block processes at once (see the module docstring): _CHUNK_ROWS rows."""
    return max(1, min(T, _CHUNK_ROWS // nb))


@njit(cache=True, error_model="numpy")
def _sum_blocks(parts):
    """parts (nblk, R, C) -> (R, C), summed over blocks in order (small work: serial)."""
    out = parts[0].copy()
    for k in range(1, parts.shape[0]):
        p = parts[k]
        for i in range(out.shape[0]):
            o = out[i]
            q = p[i]
            for j in range(o.shape[0]):
                o[j] += q[j]
    return out


@njit(cache=True)
def _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dR, W, separate, px, ph, dxs, dx):
    """The weight, bias and input gradients of block [b0, b1) over its steps q0 .. q1 - 1, from
    the chunk's dA, dR (rows (s - q0)*nb + r), each weight gradient one GEMM over the chunk's
    rows.  Chunks run last first: the one ending at T writes px, ph, the others add to them.

    With Z = [xs | 1 | h_prev] (chunk rows, I + 1 + H) built here:
      separate=False (RNN, LSTM: dR is dA):  px (I + 1 + H, G) += Z^T dA = [dW; db; dU]
      separate=True (GRU):  px (I + 1, G) += [xs | 1]^T dA = [dW; db],
                            ph (1 + H, G) += [1 | h_prev]^T dR = [dbh; dU]
    and, unless dx has no rows, dx's rows of those steps = dA W^T (through dxs, scratch of the
    chunk's rows)."""
    nb, I, H = b1 - b0, xs.shape[1], hs.shape[1]
    n = (q1 - q0) * nb
    x0, h0 = b0 * T + q0 * nb, b0 * (T + 1) + q0 * nb
    beta = 0.0 if q1 == T else 1.0
    Z = np.empty((n, I + 1 + H), dtype=xs.dtype)
    Zf, xf, hf = Z.reshape(-1), xs[x0:x0 + n].reshape(-1), hs[h0:h0 + n].reshape(-1)
    one = xs.dtype.type(1)
    uI, uH = _u(I), _u(H)
    for i in range(n):
        z, q, e = _u(i * (I + 1 + H)), _u(i * I), _u(i * H)
        for j in range(uI):
            Zf[z + j] = xf[q + j]
        Zf[z + uI] = one
        for j in range(uH):
            Zf[z + uI + _u(1) + j] = hf[e + j]
    if separate:
        gemm(Z[:, :I + 1], dA[:n], px, True, False, 1.0, beta)
        gemm(Z[:, I:], dR[:n], ph, True, False, 1.0, beta)
    else:
        gemm(Z, dA[:n], px, True, False, 1.0, beta)
    if dx.shape[0] > 0:
        np.dot(dA[:n], W.T, dxs[:n])
        _scatter_steps(dxs, b0, b1, T, reverse, dx, q0, q1)


# ------------------------------------------------------------------ per-row gate passes
# Each helper works on one batch row, every loop a simple one over j that LLVM vectorises:
# the RNN and GRU on the row's 1-D views, the LSTM cell on flat arrays at np.uint64 offsets
# and inlined (a row view, or a call with array arguments, costs atomic reference-count
# updates: per row that was half the LSTM gate pass).  A loop stores to one array at one
# offset: two stores into one array at an unknown distance stop LLVM from vectorising (the
# i and g gradients in one loop ran 4x slower than in two).


@njit(cache=True, **_EM)
def _copy_row(src, dst):
    for j in range(dst.shape[0]):
        dst[j] = src[j]


@njit(cache=True, **_EM)
def _zero_row(dst):
    for j in range(dst.shape[0]):
        dst[j] = 0


@njit(cache=True, inline="always", **_EM)
def _grad_in(DH, dh, DY, dy, has_dy, g, zero):
    """g = dL/dh_t of one row: DH[dh:dh + H] (from later steps) + DY[dy:dy + H] (the output's
    gradient; ignored unless has_dy), on flat arrays at offsets, H = len(g).  With ``zero``
    DH's row is zeroed (the caller adds the step's recurrent GEMM into it)."""
    n = _u(g.shape[0])
    if has_dy:
        for j in range(n):
            g[j] = DH[dh + j] + DY[dy + j]
    else:
        for j in range(n):
            g[j] = DH[dh + j]
    if zero:
        for j in range(n):
            DH[dh + j] = 0


@njit(cache=True, **_EM)
def _rnn_row(z, b, act, hc, yr):
    """hc = yr = act(z + b), z = x W + h U of one row."""
    if act == ACT_RELU:
        for j in range(hc.shape[0]):
            v = z[j] + b[j]
            v = max(v, v * 0)
            hc[j] = v
            yr[j] = v
    else:
        for j in range(hc.shape[0]):
            v = _tanh(z[j] + b[j])
            hc[j] = v
            yr[j] = v


@njit(cache=True, **_EM)
def _rnn_row_back(g, hc, act, dz):
    """dz = g * act'(.) given the output hc."""
    if act == ACT_RELU:
        for j in range(dz.shape[0]):
            dz[j] = g[j] if hc[j] > 0 else g[j] * 0
    else:
        for j in range(dz.shape[0]):
            dz[j] = g[j] * (1 - hc[j] * hc[j])


@njit(cache=True, inline="always", **_EM)
def _lstm_cell(A, a, b, C, cp, cc, Hs, hc, Y, y, H):
    """One row at a valid step, on flat arrays at offsets: A[a:a + 4H] = x W + h U of the row
    -> i f g o in place; C[cc:] = c_t = f c_{t-1} + i g (c_{t-1} at C[cp:]);
    Hs[hc:] = Y[y:] = h_t = o tanh(c_t)."""
    n = _u(H)
    for j in range(n + n):                          # i, f
        A[a + j] = _sigmoid(A[a + j] + b[j])
    for j in range(n):                              # g
        A[a + _u2 * n + j] = _tanh(A[a + _u2 * n + j] + b[_u2 * n + j])
    for j in range(n):                              # o
        A[a + _u3 * n + j] = _sigmoid(A[a + _u3 * n + j] + b[_u3 * n + j])
    for j in range(n):
        C[cc + j] = A[a + n + j] * C[cp + j] + A[a + j] * A[a + _u2 * n + j]
    for j in range(n):
        v = A[a + _u3 * n + j] * _tanh(C[cc + j])
        Hs[hc + j] = v
        Y[y + j] = v


@njit(cache=True, inline="always", **_EM)
def _lstm_cell_back(g, A, a, C, cp, cc, DC, dc, D, d, H):
    """One row of the LSTM backward at a valid step, on flat arrays at offsets: g (H) =
    dL/dh_t, A[a:a + 4H] = i f g o, C[cp:], C[cc:] = c_{t-1}, c_t, DC[dc:] = dL/dc_t from later
    steps (updated in place to dL/dc_{t-1}), D[d:d + 4H] <- dL/d(pre-activations)."""
    n = _u(H)
    for j in range(n):                              # o, and dc += dL/dh_t o tanh'(c_t)
        tc = _tanh(C[cc + j])
        o = A[a + _u3 * n + j]
        DC[dc + j] = DC[dc + j] + g[j] * o * (1 - tc * tc)
        D[d + _u3 * n + j] = g[j] * tc * o * (1 - o)
    for j in range(n):                              # i
        i = A[a + j]
        D[d + j] = DC[dc + j] * A[a + _u2 * n + j] * i * (1 - i)
    for j in range(n):                              # g
        gg = A[a + _u2 * n + j]
        D[d + _u2 * n + j] = DC[dc + j] * A[a + j] * (1 - gg * gg)
    for j in range(n):                              # f, and dc *= f
        f = A[a + n + j]
        D[d + n + j] = DC[dc + j] * C[cp + j] * f * (1 - f)
        DC[dc + j] = DC[dc + j] * f


@njit(cache=True, **_EM)
def _gru_row(a, u, b, bh, hp, unr, hc, yr):
    """a: x W of one row (3H) -> r z n in place; unr = u_n + bh_n; hc = yr = new state."""
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    ur, uz, un_ = u[:H], u[H:2 * H], u[2 * H:]
    br, bz, bn = b[:H], b[H:2 * H], b[2 * H:]
    hr, hz, hn = bh[:H], bh[H:2 * H], bh[2 * H:]
    for j in range(H):
        ar[j] = _sigmoid(ar[j] + br[j] + ur[j] + hr[j])
    for j in range(H):
        az[j] = _sigmoid(az[j] + bz[j] + uz[j] + hz[j])
    for j in range(H):
        unr[j] = un_[j] + hn[j]
    for j in range(H):
        an[j] = _tanh(an[j] + bn[j] + ar[j] * unr[j])
    for j in range(H):
        n = an[j]
        v = n + az[j] * (hp[j] - n)
        hc[j] = v
        yr[j] = v


@njit(cache=True, **_EM)
def _gru_row_back(g, a, unr, hp, da, dr, direct):
    """One row of the GRU backward at a valid step.  g = dL/dh_t (H), a = r z n (3H),
    unr = h U + bh (n part), hp = h_{t-1}; -> da = dL/d(x W + b) (3H), dr = dL/d(h U + bh)
    (3H), direct = dL/dh_{t-1} through z h_{t-1}."""
    H = hp.shape[0]
    ar, az, an = a[:H], a[H:2 * H], a[2 * H:]
    dar, daz, dan = da[:H], da[H:2 * H], da[2 * H:]
    drr, drz, drn = dr[:H], dr[H:2 * H], dr[2 * H:]
    for j in range(H):
        z, n = az[j], an[j]
        dan[j] = g[j] * (1 - z) * (1 - n * n)
        direct[j] = g[j] * z
    for j in range(H):
        z = az[j]
        v = g[j] * (hp[j] - an[j]) * z * (1 - z)
        daz[j] = v
        drz[j] = v
    for j in range(H):
        r = ar[j]
        v = dan[j] * unr[j] * r * (1 - r)
        dar[j] = v
        drr[j] = v
        drn[j] = dan[j] * r


@njit(cache=True)
def _valid(t0, t1, n, t):
    return t0[n] <= t and t < t1[n]


# ------------------------------------------------------------------ simple RNN
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def rnn_forward(x, W, U, b, h0, t0, t1, reverse, act):
    """Simple RNN over a whole sequence.

    x (B, T, I), W (I, H), U (H, H), b (H,), h0 (B, H), t0/t1 (B,) int64, reverse, act
    -> y (B, T, H), hT (B, H), xs (B*T, I), hs (B*(T+1), H)   (xs, hs: the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        S = _chunk(nb, T)
        z = np.empty((nb * S, H), dtype=dt)                 # one chunk of steps
        hs[hb:hb + nb] = h0[b0:b1]
        for s in range(T):
            q = s % S
            if q == 0:                                              # input GEMM, S steps
                m = (min(T, s + S) - s) * nb
                np.dot(xs[xb + s * nb:xb + s * nb + m], W, z[:m])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, z[q * nb:(q + 1) * nb], 1.0)  # z_s += h U
            for r in range(nb):
                n = b0 + r
                if _valid(t0, t1, n, t):
                    _rnn_row(z[q * nb + r], b, act, hs[cur + r], y[n, t])
                else:
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, xs, hs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def rnn_backward(W, U, t0, t1, reverse, act, xs, hs, dy, dhT, need_dx):
    """Gradients of rnn_forward (full BPTT).

    W, U, t0, t1, reverse, act as given to the forward; xs, hs its cache;
    dy (B, T, H) = dL/dy, or an array of shape (B, 0, H) when only the final state is used;
    dhT (B, H) = dL/dhT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, H), dU (H, H), db (H,), dh0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    parts = np.empty((nblk, I + 1 + H, H), dtype=dt)        # [dW; db; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        hb = b0 * (T + 1)
        S = _chunk(nb, T)
        dZ = np.empty((nb * S, H), dtype=dt)                # one chunk of steps
        dxs = np.empty((nb * S if need_dx else 0, I), dtype=dt)
        dh = dhT[b0:b1].copy()
        g = np.empty(H, dtype=dt)
        dhf, dyf = dh.reshape(-1), dy.reshape(-1)
        for q1 in range(T, 0, -S):                          # chunks of steps, last first
            q0 = max(0, q1 - S)
            for s in range(q1 - 1, q0 - 1, -1):
                t = _time(s, T, reverse)
                cur = hb + (s + 1) * nb
                d = (s - q0) * nb
                for r in range(nb):
                    n = b0 + r
                    if _valid(t0, t1, n, t):
                        _grad_in(dhf, _u(r * H), dyf, _u((n * T + t) * H), has_dy, g, True)
                        _rnn_row_back(g, hs[cur + r], act, dZ[d + r])
                    else:
                        _zero_row(dZ[d + r])        # dh[r] passes through
                gemm_small(dZ[d:d + nb], Us, dh, 1.0)        # dh += dZ_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dZ, dZ, W, False, parts[k], parts[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        _ftz_exit(old)
    g = _sum_blocks(parts)
    return dx, g[:I].copy(), g[I + 1:].copy(), g[I].copy(), dh0


# ------------------------------------------------------------------ LSTM
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def lstm_forward(x, W, U, b, h0, c0, t0, t1, reverse):
    """LSTM over a whole sequence (gate order i, f, g, o).

    x (B, T, I), W (I, 4H), U (H, 4H), b (4H,), h0 (B, H), c0 (B, H), t0/t1 (B,) int64
    -> y (B, T, H), hT (B, H), cT (B, H),
       xs (B*T, I), acts (B*T, 4H) [i f g o after their nonlinearities; 0 at invalid steps],
       hs (B*(T+1), H), cs (B*(T+1), H)                       (the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    G = 4 * H
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    cT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    acts = np.empty((B * T, G), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    cs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        hs[hb:hb + nb] = h0[b0:b1]
        cs[hb:hb + nb] = c0[b0:b1]
        af, cf, hf, yf = acts.reshape(-1), cs.reshape(-1), hs.reshape(-1), y.reshape(-1)
        S = _chunk(nb, T)
        for s in range(T):
            if s % S == 0:                                          # input GEMM, S steps
                q = xb + s * nb
                e = xb + min(T, s + S) * nb
                np.dot(xs[q:e], W, acts[q:e])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, acts[xb + s * nb:xb + (s + 1) * nb], 1.0)
            for r in range(nb):                                     # ^ acts_s += h U
                n = b0 + r
                if _valid(t0, t1, n, t):
                    _lstm_cell(af, _u((xb + s * nb + r) * G), b, cf, _u((cur - nb + r) * H),
                               _u((cur + r) * H), hf, _u((cur + r) * H), yf, _u((n * T + t) * H), H)
                else:
                    _zero_row(acts[xb + s * nb + r])
                    _copy_row(cs[cur - nb + r], cs[cur + r])
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        cT[b0:b1] = cs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, cT, xs, acts, hs, cs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def lstm_backward(W, U, t0, t1, reverse, xs, acts, hs, cs, dy, dhT, dcT, need_dx):
    """Gradients of lstm_forward (full BPTT).

    W, U, t0, t1, reverse as given to the forward; xs, acts, hs, cs its cache;
    dy (B, T, H) = dL/dy, or shape (B, 0, H) when only the final state is used;
    dhT, dcT (B, H) = dL/dhT, dL/dcT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, 4H), dU (H, 4H), db (4H,),
       dh0 (B, H), dc0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    G = 4 * H
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    dc0 = np.empty((B, H), dtype=dt)
    parts = np.empty((nblk, I + 1 + H, G), dtype=dt)        # [dW; db; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        xb, hb = b0 * T, b0 * (T + 1)
        S = _chunk(nb, T)
        dA = np.empty((nb * S, G), dtype=dt)                # one chunk of steps
        dxs = np.empty((nb * S if need_dx else 0, I), dtype=dt)
        dh = dhT[b0:b1].copy()
        dc = dcT[b0:b1].copy()
        g = np.empty(H, dtype=dt)
        af, cf, dcf, dAf = acts.reshape(-1), cs.reshape(-1), dc.reshape(-1), dA.reshape(-1)
        dhf, dyf = dh.reshape(-1), dy.reshape(-1)
        for q1 in range(T, 0, -S):                          # chunks of steps, last first
            q0 = max(0, q1 - S)
            for s in range(q1 - 1, q0 - 1, -1):
                t = _time(s, T, reverse)
                cur = hb + (s + 1) * nb
                d = (s - q0) * nb
                for r in range(nb):
                    n = b0 + r
                    if _valid(t0, t1, n, t):
                        _grad_in(dhf, _u(r * H), dyf, _u((n * T + t) * H), has_dy, g, True)
                        _lstm_cell_back(g, af, _u((xb + s * nb + r) * G), cf,
                                        _u((cur - nb + r) * H), _u((cur + r) * H), dcf, _u(r * H),
                                        dAf, _u((d + r) * G), H)
                    else:
                        _zero_row(dA[d + r])        # dh[r], dc[r] pass through
                gemm_small(dA[d:d + nb], Us, dh, 1.0)        # dh += dA_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dA, W, False, parts[k], parts[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        dc0[b0:b1] = dc
        _ftz_exit(old)
    g = _sum_blocks(parts)
    return dx, g[:I].copy(), g[I + 1:].copy(), g[I].copy(), dh0, dc0


# ------------------------------------------------------------------ GRU
@parallel_above(2, size=lambda x, *_: _n_blocks(x.shape[0]))
def gru_forward(x, W, U, b, bh, h0, t0, t1, reverse):
    """GRU over a whole sequence (PyTorch's formulation, gate order r, z, n).

    x (B, T, I), W (I, 3H), U (H, 3H), b (3H,) input bias, bh (3H,) recurrent bias,
    h0 (B, H), t0/t1 (B,) int64
    -> y (B, T, H), hT (B, H),
       xs (B*T, I), acts (B*T, 3H) [r z n; 0 at invalid steps], un (B*T, H) [h U + bh, n part],
       hs (B*(T+1), H)                                        (the cache)
    """
    B, T, I = x.shape
    H = U.shape[0]
    G = 3 * H
    dt = x.dtype
    y = np.empty((B, T, H), dtype=dt)
    hT = np.empty((B, H), dtype=dt)
    xs = np.empty((B * T, I), dtype=dt)
    acts = np.empty((B * T, G), dtype=dt)
    un = np.empty((B * T, H), dtype=dt)
    hs = np.empty((B * (T + 1), H), dtype=dt)
    nblk = _n_blocks(B)
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U, nb)                   # U cut for the per-step h U
        xb, hb = b0 * T, b0 * (T + 1)
        _gather_steps(x, b0, b1, reverse, xs)
        tmp = np.empty((nb, G), dtype=dt)
        hs[hb:hb + nb] = h0[b0:b1]
        S = _chunk(nb, T)
        for s in range(T):
            if s % S == 0:                                          # input GEMM, S steps
                q = xb + s * nb
                e = xb + min(T, s + S) * nb
                np.dot(xs[q:e], W, acts[q:e])
            t = _time(s, T, reverse)
            cur = hb + (s + 1) * nb
            gemm_small(hs[cur - nb:cur], Us, tmp, 0.0)            # recurrent GEMM
            for r in range(nb):
                n = b0 + r
                row = xb + s * nb + r
                if _valid(t0, t1, n, t):
                    _gru_row(acts[row], tmp[r], b, bh, hs[cur - nb + r], un[row], hs[cur + r],
                             y[n, t])
                else:
                    _zero_row(acts[row])
                    _zero_row(un[row])
                    _copy_row(hs[cur - nb + r], hs[cur + r])
                    _zero_row(y[n, t])
        hT[b0:b1] = hs[hb + T * nb:hb + (T + 1) * nb]
        _ftz_exit(old)
    return y, hT, xs, acts, un, hs


@parallel_above(2, size=lambda W, U, t0, *_: _n_blocks(t0.shape[0]))
def gru_backward(W, U, t0, t1, reverse, xs, acts, un, hs, dy, dhT, need_dx):
    """Gradients of gru_forward (full BPTT).

    W, U, t0, t1, reverse as given to the forward; xs, acts, un, hs its cache;
    dy (B, T, H) = dL/dy, or shape (B, 0, H); dhT (B, H) = dL/dhT.
    -> dx (B, T, I) ((0, T, I) unless need_dx), dW (I, 3H), dU (H, 3H), db (3H,), dbh (3H,),
       dh0 (B, H)
    """
    B, H = dhT.shape
    T = xs.shape[0] // B
    I = W.shape[0]
    G = 3 * H
    dt = xs.dtype
    has_dy = dy.shape[1] > 0
    nblk = _n_blocks(B)
    dx = np.empty((B if need_dx else 0, T, I), dtype=dt)
    dh0 = np.empty((B, H), dtype=dt)
    px = np.empty((nblk, I + 1, G), dtype=dt)               # [dW; db] of each block
    ph = np.empty((nblk, 1 + H, G), dtype=dt)               # [dbh; dU] of each block
    for k in prange(nblk):
        old = _ftz_enter()
        b0, b1 = _bounds(k, B, nblk)
        nb = b1 - b0
        Us = small_operand(U.T, nb)                 # U^T cut for the per-step dA U^T
        xb, hb = b0 * T, b0 * (T + 1)
        S = _chunk(nb, T)
        dA = np.empty((nb * S, G), dtype=dt)     # dL/d(x W + b)   [r z n], one chunk of steps
        dR = np.empty((nb * S, G), dtype=dt)     # dL/d(h U + bh)  [r z n]
        dxs = np.empty((nb * S if need_dx else 0, I), dtype=dt)
        dh = dhT[b0:b1].copy()
        g = np.empty(H, dtype=dt)
        dhf, dyf = dh.reshape(-1), dy.reshape(-1)
        for q1 in range(T, 0, -S):                          # chunks of steps, last first
            q0 = max(0, q1 - S)
            for s in range(q1 - 1, q0 - 1, -1):
                t = _time(s, T, reverse)
                cur = hb + (s + 1) * nb
                d = (s - q0) * nb
                for r in range(nb):
                    n = b0 + r
                    row = xb + s * nb + r
                    if _valid(t0, t1, n, t):
                        _grad_in(dhf, _u(r * H), dyf, _u((n * T + t) * H), has_dy, g, False)
                        _gru_row_back(g, acts[row], un[row], hs[cur - nb + r], dA[d + r],
                                      dR[d + r], dh[r])     # dh[r] <- the z h_{t-1} path
                    else:
                        _zero_row(dA[d + r])
                        _zero_row(dR[d + r])
                gemm_small(dR[d:d + nb], Us, dh, 1.0)        # dh += dR_s U^T
            _chunk_grads(xs, hs, b0, b1, q0, q1, T, reverse, dA, dR, W, True, px[k], ph[k],
                         dxs, dx)
        dh0[b0:b1] = dh
        _ftz_exit(old)
    gx, gh = _sum_blocks(px), _sum_blocks(ph)
    return dx, gx[:I].copy(), gh[1:].copy(), gx[I].copy(), gh[0].copy(), dh0

