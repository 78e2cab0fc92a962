#!/usr/bin/env python
"""PyTorch reference for scripts/char_rnn.py: the same model size and settings, the same
training windows (drawn with dlkit's keys from the same seed), the same validation windows and
loss, so the validation curves can be compared step for step.

    python scripts/char_rnn.py train --out runs/char_rnn                 # dlkit
    python benchmarks/char_rnn_torch.py --out runs/char_rnn_torch --compare runs/char_rnn

--model lstm: nn.Embedding(alphabet, embed), nn.LSTM(embed, units, layers, batch_first=True),
nn.Linear(units, alphabet) on every step; PyTorch keeps its own default initialisation (dlkit
uses Keras').  --model transformer: dlkit's GPT written in PyTorch eagerly, layer for layer
(token and learned position embeddings; pre-norm blocks of LayerNorm, fused qkv Linear,
F.scaled_dot_product_attention(is_causal=True), output Linear, LayerNorm, Linear 4C, GELU,
Linear C; final LayerNorm, Linear head; biases; GPT-2's N(0, 0.02^2) init with the output
projections at 0.02 / sqrt(2 layers)), Adam(beta2 0.99) with linear warm-up and cosine decay
to lr/10, nanoGPT's "baby GPT" settings by default.  Both: cross-entropy (mean over
characters); clip_grad_norm_.  The question asked is whether the two reach the same validation
loss after the same steps, and in how long.
--compare DIR prints both curves and the differences (dlkit minus PyTorch, nats/char).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def torch_gpt(V, seq_len, n_embd, n_layer, n_head):
    """dlkit's char transformer (char_rnn.py --model transformer) as a PyTorch nn.Module."""
    import math

    import torch
    F = torch.nn.functional

    class Block(torch.nn.Module):
        def __init__(self, C):
            super().__init__()
            self.ln1, self.ln2 = torch.nn.LayerNorm(C), torch.nn.LayerNorm(C)
            self.qkv, self.proj = torch.nn.Linear(C, 3 * C), torch.nn.Linear(C, C)
            self.fc, self.out = torch.nn.Linear(C, 4 * C), torch.nn.Linear(4 * C, C)

        def forward(self, x):
            B, T, C = x.shape
            H = n_head
            q, k, v = (t.view(B, T, H, C // H).transpose(1, 2)
                       for t in self.qkv(self.ln1(x)).split(C, dim=2))
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(o.transpose(1, 2).reshape(B, T, C))
            return x + self.out(F.gelu(self.fc(self.ln2(x))))

    class GPT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            C = n_embd
            self.emb = torch.nn.Embedding(V, C)
            self.pos = torch.nn.Parameter(torch.zeros(seq_len, C))
            self.blocks = torch.nn.Sequential(*[Block(C) for _ in range(n_layer)])
            self.ln_f, self.head = torch.nn.LayerNorm(C), torch.nn.Linear(C, V)
            for name, w in self.named_parameters():
                if name.endswith("bias"):
                    torch.nn.init.zeros_(w)
                elif w.dim() == 2 or name == "pos":
                    scaled = name.endswith(("proj.weight", "out.weight"))
                    torch.nn.init.normal_(w, 0.0, 0.02 / math.sqrt(2 * n_layer)
                                          if scaled else 0.02)

        def forward(self, x):
            h = self.emb(x) + self.pos[:x.shape[1]]
            return self.head(self.ln_f(self.blocks(h)))

    return GPT()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default="tinyshakespeare")
    p.add_argument("--model", default="lstm", choices=["lstm", "transformer"])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=None, help="lstm 64, transformer 12")
    p.add_argument("--seq-len", type=int, default=None, help="lstm 100, transformer 64")
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--lr", type=float, default=None, help="lstm 2e-3, transformer 1e-3")
    p.add_argument("--clip", type=float, default=None, help="lstm 5, transformer 1")
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/char_rnn_torch")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="a scripts/char_rnn.py run folder to compare with")
    args = p.parse_args(argv)
    defaults = {"lstm": (64, 100, 2e-3, 5.0), "transformer": (12, 64, 1e-3, 1.0)}[args.model]
    for name, value in zip(("batch_size", "seq_len", "lr", "clip"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, value)

    import math

    import torch

    sys.path.insert(0, str(ROOT))
    from dlkit import data, random

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(args.seed)
    corpus = data.load_char_corpus(args.text, args.val_fraction)
    V = len(corpus)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = torch.nn.Embedding(V, args.embed)
            self.lstm = torch.nn.LSTM(args.embed, args.units, args.layers, batch_first=True)
            self.out = torch.nn.Linear(args.units, V)

        def forward(self, x):
            return self.out(self.lstm(self.emb(x))[0])

    if args.model == "transformer":
        model = torch_gpt(V, args.seq_len, args.n_embd, args.n_layer, args.n_head)
        opt = torch.optim.Adam(model.parameters(), args.lr, betas=(0.9, 0.99))

        def factor(step):       # dlkit's optim.cosine(lr, steps, lr / 10, warmup) over lr
            if step < args.warmup:
                return (step + 1) / args.warmup
            t = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
            return 0.1 + 0.45 * (1 + math.cos(math.pi * t))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    else:
        model = Net()
        opt = torch.optim.Adam(model.parameters(), args.lr)
        sched = None
    loss_fn = torch.nn.CrossEntropyLoss()
    xv, yv = (torch.from_numpy(a) for a in data.sequential_windows(corpus.val, args.seq_len))

    def evaluate():
        total = 0.0
        with torch.no_grad():
            for i in range(0, len(xv), 256):
                out = model(xv[i:i + 256])
                total += loss_fn(out.reshape(-1, V), yv[i:i + 256].reshape(-1)).item() * len(out)
        return total / len(xv)

    data_key = random.fold_in(random.key(args.seed), 1)      # the same windows as char_rnn.py
    history = {"step": [], "train_loss": [], "val_loss": [], "seconds": []}
    running, n_run, t0 = 0.0, 0, time.perf_counter()
    net = (f"{args.n_layer} x transformer block ({args.n_embd} wide, {args.n_head} heads)"
           if args.model == "transformer" else f"embed {args.embed}, {args.layers} x LSTM "
           f"{args.units}")
    print(f"torch {torch.__version__}: char {args.model}, alphabet {V}, {net}, "
          f"{sum(w.numel() for w in model.parameters()):,} params, batch {args.batch_size} x "
          f"{args.seq_len}, adam lr={args.lr}, clip {args.clip}, {args.threads} threads, "
          "flush-denormal")
    for step in range(1, args.steps + 1):
        x, y = (torch.from_numpy(a) for a in data.random_windows(
            corpus.train, args.batch_size, args.seq_len, random.fold_in(data_key, step - 1)))
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        if sched is not None:
            sched.step()
        running, n_run = running + loss.item(), n_run + 1
        if step % args.eval_every == 0 or step == args.steps:
            val, secs = evaluate(), time.perf_counter() - t0
            for k, v in zip(history, (step, running / n_run, val, secs)):
                history[k].append(v)
            print(f"step {step:6d}: train loss {running / n_run:.4f}  val loss {val:.4f} "
                  f"nats/char  ({secs:.1f} s)", flush=True)
            running, n_run, t0 = 0.0, 0, time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(dict(vars(args), history=history), indent=1))
    os.replace(tmp, out / "history.json")

    if args.compare:
        theirs = json.loads((Path(args.compare) / "history.json").read_text())["history"]
        ours = dict(zip(theirs["step"], theirs["val_loss"]))
        print(f"\n{'step':>6s} {'dlkit':>8s} {'torch':>8s} {'diff':>7s}   (val loss, nats/char)")
        for s, v in zip(history["step"], history["val_loss"]):
            if s in ours:
                print(f"{s:6d} {ours[s]:8.4f} {v:8.4f} {ours[s] - v:+7.4f}")
        print(f"dlkit {sum(theirs['seconds']):.1f} s, torch {sum(history['seconds']):.1f} s of "
              "training and evaluation")
    return history


if __name__ == "__main__":
    main()
