#!/usr/bin/env python
"""PyTorch reference for scripts/char_rnn.py: the same model size and settings, the same
training windows (drawn with dlkit's keys from the same seed), the same validation windows and
loss, so the validation curves can be compared step for step.

    python scripts/char_rnn.py train --out runs/char_rnn                 # dlkit
    python benchmarks/char_rnn_torch.py --out runs/char_rnn_torch --compare runs/char_rnn

Model: nn.Embedding(alphabet, embed), nn.LSTM(embed, units, layers, batch_first=True),
nn.Linear(units, alphabet) on every step; cross-entropy (mean over characters); Adam;
clip_grad_norm_.  PyTorch keeps its own default initialisation (dlkit uses Keras'); the
question asked is whether the two reach the same validation loss after the same steps.
--compare DIR prints both curves and the differences (dlkit minus PyTorch, nats/char).
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--text", default="tinyshakespeare")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seq-len", type=int, default=100)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--units", type=int, default=256)
    p.add_argument("--layers", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--clip", type=float, default=5.0)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", default="runs/char_rnn_torch")
    p.add_argument("--compare", default=None, metavar="DIR",
                   help="a scripts/char_rnn.py run folder to compare with")
    args = p.parse_args(argv)

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

    model = Net()
    opt = torch.optim.Adam(model.parameters(), args.lr)
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
    print(f"torch {torch.__version__}: char LSTM, alphabet {V}, embed {args.embed}, "
          f"{args.layers} x LSTM {args.units}, batch {args.batch_size} x {args.seq_len}, "
          f"adam lr={args.lr}, clip {args.clip}, {args.threads} threads, flush-denormal")
    for step in range(1, args.steps + 1):
        x, y = (torch.from_numpy(a) for a in data.random_windows(
            corpus.train, args.batch_size, args.seq_len, random.fold_in(data_key, step - 1)))
        opt.zero_grad()
        loss = loss_fn(model(x).reshape(-1, V), y.reshape(-1))
        loss.backward()
        if args.clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
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
