"""2-D convolution (cross-correlation, as in PyTorch), forward and backward, NCHW.

Shapes and arguments shared by every function here:

    x  (N, C, H, W)                  input
    Wt (C_out, C_in/groups, KH, KW)  weights (``W`` in the signatures); C-contiguous
    b  (C_out,)                      bias
    y  (N, C_out, OH, OW)            output, y = act(conv(x, W) + b)
    sh, sw                           stride (>= 1)
    pt, pl                           zero padding on the top and on the left; the bottom and
                                     right padding are implied by OH and OW, so asymmetric
                                     padding ("same" with an even kernel) needs no extra argument
    dh, dw                           dilation (>= 1)
    groups                           channel groups: input channels g*C_in/groups ...
                                     (g+1)*C_in/groups - 1 feed output channels g*C_out/groups ...;
                                     groups = C_in = C_out is a depthwise convolution
    OH, OW                           output size; the host computes
                                     OH = (H + pt + pb - dh*(KH-1) - 1) // sh + 1
    act                              activation fused into the forward's epilogue and its
                                     derivative into the backward's prologue (ACT_* codes)

    y[n, co, oh, ow] = act(b[co] + sum_{ci, kh, kw} W[co, ci, kh, kw]
                           * x[n, g*Cg + ci, oh*sh - pt + kh*dh, ow*sw - pl + kw*dw])

with out-of-range input positions read as zero (g = co // (C_out/groups), Cg = C_in/groups).

Three algorithms, each a forward/backward pair; ``conv2d_forward`` / ``conv2d_backward`` pick
one per shape (``conv2d_algorithm``), and each can be called directly:

* ``direct`` (stride 1 only): loops over the taps on "wide" planes (conv_direct.py), each tap
  one long vectorised multiply-add (a 3x3 filter on one channel: all nine taps in one pass over
  three column-shifted copies of the input plane, writing the output plane and reading the
  gradient plane in place, and its nine weight-gradient sums in one pass).  Used when one group's
  receptive field is small (``C_in/groups * KH * KW <= DIRECT_MAX_K``, e.g. a first layer on one
  input channel or a depthwise convolution), where a GEMM would have a tiny inner
  dimension.  Forward and dx are parallel over (sample, channel) planes, dW and db over 16 sample
  chunks (each reads its samples' gradient planes once, in memory order; the chunks' partials
  are summed in chunk order).
* ``winograd`` (3x3, stride 1, dilation 1, one group): F(2x2, 3x3), 16 BLAS GEMMs per batch
  chunk on transformed tiles, 2.25x fewer multiplies than im2col; the backward transforms the
  gradient tiles once for both dW and dx, each the transpose of the forward (see
  conv_winograd.py).  Used for 3x3 stride-1 layers with at least 8 input and output channels.
* ``im2col`` (everything else: strides, dilation, groups, any kernel): per (sample, group),
  unfold the receptive fields into a column matrix (C_in/groups*KH*KW, OH*OW) and do one BLAS
  GEMM with the group's (C_out/groups, K) weights.  Forward is parallel over blocks of
  (sample, group) pairs, writing y[n] directly; the backward is parallel over a fixed number of
  batch chunks: each chunk does dW's GEMM over its samples at once (columns of several samples
  side by side) into its own partial, and dx = col2im(W^T dy) per sample into its own dx[n];
  the partials are summed in chunk order afterwards.

Every ``prange`` iteration writes memory no other iteration writes (its own planes, samples or
partials): the backward passes gather per output element or per owned sample, never scatter-add
across iterations.  Chunk counts depend on the problem size only, never on the thread count, so
results are bit-identical from run to run and across thread counts.

Files: this module is the plain-Python dispatcher and re-exports every name callers use.  Each
algorithm's kernels and their njit helpers live in a file of their own, conv_direct.py,
conv_im2col.py and conv_winograd.py (one file per algorithm and none over ~500 lines; Numba's
cache is per file, so an edit to one algorithm recompiles only its own kernels); what the
three share (activation codes and their fused forms, fastmath flags, the np.uint64 "Loop
style") is in _conv_common.py: after editing that file, clear the Numba caches (its docstring
gives the command).
"""
from ._conv_common import ACT_NONE, ACT_RELU, ACT_SIGMOID, ACT_TANH
from .conv_direct import conv2d_backward_direct, conv2d_forward_direct
from .conv_im2col import conv2d_backward_im2col, conv2d_forward_im2col
from .conv_winograd import conv2d_backward_winograd, conv2d_forward_winograd

__all__ = ["ACT_NONE", "ACT_RELU", "ACT_SIGMOID", "ACT_TANH", "ALGO_DIRECT", "ALGO_IM2COL",
           "ALGO_WINOGRAD", "ALGORITHMS", "DIRECT_MAX_K", "conv2d_algorithm", "conv2d_forward",
           "conv2d_backward", "conv2d_forward_direct", "conv2d_backward_direct",
           "conv2d_forward_im2col", "conv2d_backward_im2col", "conv2d_forward_winograd",
           "conv2d_backward_winograd"]

ALGO_DIRECT, ALGO_IM2COL, ALGO_WINOGRAD = 0, 1, 2
ALGORITHMS = {"direct": ALGO_DIRECT, "im2col": ALGO_IM2COL, "winograd": ALGO_WINOGRAD}

#: receptive-field size (C_in/groups * KH * KW) up to which the direct algorithm is used
DIRECT_MAX_K = 32


def conv2d_algorithm(C, KH, KW, sh, sw, groups, dh=1, dw=1, Cout=None):
    """The algorithm the dispatchers use for this shape:

    * ALGO_DIRECT for stride 1 when one group's receptive field C/groups*KH*KW is at most
      DIRECT_MAX_K (one input channel, depthwise);
    * ALGO_WINOGRAD for 3x3, stride 1, dilation 1, one group, at least 8 input and output
      channels (below that the GEMMs are too thin to pay for the transforms);
    * ALGO_IM2COL otherwise.
    """
    if sh == 1 and sw == 1 and (C // groups) * KH * KW <= DIRECT_MAX_K:
        return ALGO_DIRECT
    if (KH == KW == 3 and sh == sw == 1 and dh == dw == 1 and groups == 1 and C >= 8
            and (Cout is None or Cout >= 8)):
        return ALGO_WINOGRAD
    return ALGO_IM2COL


_FORWARD = {ALGO_DIRECT: conv2d_forward_direct, ALGO_IM2COL: conv2d_forward_im2col,
            ALGO_WINOGRAD: conv2d_forward_winograd}
_BACKWARD = {ALGO_DIRECT: conv2d_backward_direct, ALGO_IM2COL: conv2d_backward_im2col,
             ALGO_WINOGRAD: conv2d_backward_winograd}


def conv2d_forward(x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act, algo=-1):
    """y = act(conv(x, W) + b), (N, C_out, OH, OW), with the algorithm ``algo`` (an ALGO_*
    code; -1 picks one with ``conv2d_algorithm``).  Arguments: module docstring."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups, dh, dw,
                                W.shape[0])
    return _FORWARD[algo](x, W, b, sh, sw, pt, pl, dh, dw, groups, OH, OW, act)


def conv2d_backward(x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx, algo=-1):
    """Gradients of conv2d_forward: (dx (N, C, H, W) or (0, C, H, W) without ``need_dx``,
    dW (C_out, C_in/groups, KH, KW), db (C_out,)).  y: the forward output; dy = dL/dy."""
    if algo < 0:
        algo = conv2d_algorithm(x.shape[1], W.shape[2], W.shape[3], sh, sw, groups, dh, dw,
                                W.shape[0])
    return _BACKWARD[algo](x, W, y, dy, sh, sw, pt, pl, dh, dw, groups, act, need_dx)
