"""compare_torch cases for attention (issue 20): causal scaled-dot-product attention forward +
backward, and one training step of the char transformer ("baby GPT").

    python -m benchmarks.compare_torch -k attention gpt

attention_*: dlkit's fused kernels (kernels.cpu.attention: attention_forward, then
attention_backward from a given dout) against ``torch.nn.functional.scaled_dot_product_attention``
(is_causal=True) forward and ``backward(dout)``, on (batch, heads, T, head_dim) float32 q, k, v.

gpt_step: ``char_rnn.py --model transformer``'s model at nanoGPT's CPU settings (4 blocks, 4
heads, 128 wide, context 64, batch 12, alphabet 65): forward, cross-entropy over every
position, backward, global-norm clipping at 1, Adam; PyTorch runs the same model eagerly
(benchmarks/char_rnn_torch.py's ``torch_gpt``).
"""
import numpy as np

from .compare_torch import Case

V, CONTEXT, BATCH = 65, 64, 12
GPT = dict(model="transformer", seq_len=CONTEXT, n_embd=128, n_layer=4, n_head=4, dropout=0.0)


def _qkv(shape, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(4)]


def attention_dlkit(shape):
    def make():
        from kernels.cpu import attention as A
        q, k, v, dout = _qkv(shape)
        scale = 1.0 / np.sqrt(shape[3])

        def run():
            out, lse = A.attention_forward(q, k, v, True, scale, 0.0, np.uint64(0))
            A.attention_backward(q, k, v, out, lse, dout, True, scale, 0.0, np.uint64(0))
        return run
    return make


def attention_torch(shape):
    def make(setting):
        import torch
        q, k, v, dout = (torch.from_numpy(a) for a in _qkv(shape))
        leaves = [t.requires_grad_(True) for t in (q, k, v)]

        def run():
            for t in leaves:
                t.grad = None
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True) \
                .backward(dout)
        return run
    return make


def _windows():
    rng = np.random.default_rng(0)
    ids = rng.integers(0, V, (BATCH, CONTEXT + 1))
    return ids[:, :-1].copy(), ids[:, 1:].copy()


def gpt_dlkit():
    from dlkit import clip, nn, optim, random
    from dlkit.cli.char_rnn import build_model, sequence_loss
    model = build_model(V, GPT)
    _, params = model.init(random.key(0), (CONTEXT,))
    opt = optim.adam(1e-3, b2=0.99)
    box = [params, opt.init(params)]
    x, y = _windows()
    grad = nn.value_and_grad(model, sequence_loss)

    def run():
        params, state = box
        _, _, g = grad(params, x, y)
        box[:] = opt.step(clip.clip_by_global_norm(g, 1.0), state, params)
    return run


def gpt_torch(setting):
    import torch

    from .char_rnn_torch import torch_gpt
    torch.manual_seed(0)
    model = torch_gpt(V, CONTEXT, GPT["n_embd"], GPT["n_layer"], GPT["n_head"])
    opt = torch.optim.Adam(model.parameters(), 1e-3, betas=(0.9, 0.99))
    x, y = (torch.from_numpy(a) for a in _windows())
    loss_fn = torch.nn.CrossEntropyLoss()

    def run():
        opt.zero_grad()
        loss_fn(model(x).reshape(-1, V), y.reshape(-1)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return run


CASES = {
    "attention_12x4x64x32": Case("causal attention fwd+bwd, q,k,v[12,4,64,32]",
                                 attention_dlkit((12, 4, 64, 32)),
                                 attention_torch((12, 4, 64, 32)), repeat=50),
    "attention_8x8x512x64": Case("causal attention fwd+bwd, q,k,v[8,8,512,64]",
                                 attention_dlkit((8, 8, 512, 64)),
                                 attention_torch((8, 8, 512, 64)), repeat=5),
    "gpt_step": Case("char transformer training step (4 blocks, 128 wide, batch 12 x 64)",
                     gpt_dlkit, gpt_torch, repeat=20),
}
