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

Files: this module re-exports every name callers use.  Each cell's kernels and its per-row
gate passes live in a file of their own, recurrent_rnn.py, recurrent_lstm.py and
recurrent_gru.py (split by cell: the cells share no code with each other, only the step
machinery, and each file stays under ~500 lines; Numba's cache is per file, so an edit to
one cell recompiles only that cell's kernels).  The shared step machinery (float32
transcendentals, row blocks and time chunks, the per-chunk gradient GEMMs, per-row helpers)
is in _recurrent_common.py: after editing that file, clear the Numba caches (its docstring
gives the command).
"""
from ._recurrent_common import ACT_RELU, ACT_TANH, _chunk, _n_blocks, sigmoid, tanh
from .recurrent_gru import gru_backward, gru_forward
from .recurrent_lstm import lstm_backward, lstm_forward
from .recurrent_rnn import rnn_backward, rnn_forward

__all__ = ["ACT_TANH", "ACT_RELU", "rnn_forward", "rnn_backward", "lstm_forward",
           "lstm_backward", "gru_forward", "gru_backward", "sigmoid", "tanh", "_chunk",
           "_n_blocks"]
