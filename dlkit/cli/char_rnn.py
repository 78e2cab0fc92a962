"""Character-level language model (LSTM or transformer): train on any text file, sample.

    dlkit-char-rnn train                                      # Tiny Shakespeare, 2000 steps
    python scripts/char_rnn.py train                          # the same, from a checkout
    python scripts/char_rnn.py train --model transformer      # nanoGPT's "baby GPT" on a CPU
    python scripts/char_rnn.py train --text my_book.txt --steps 5000 --out runs/book
    python scripts/char_rnn.py train --resume runs/char_rnn   # continue an interrupted run
    python scripts/char_rnn.py sample --out runs/char_rnn --temperature 0.8 --seed-text "ROMEO:"

--model lstm: Embedding (alphabet x --embed), --layers LSTMs of --units (return_sequences), a
TimeDistributed Dense over the alphabet.  --model transformer (a GPT): token embedding and
learned positions (--n-embd), --n-layer pre-norm TransformerBlocks of --n-head causal heads
(dropout --dropout), a final LayerNorm and a Dense over the alphabet; its defaults are the
configuration nanoGPT's README trains on a CPU (context 64, batch 12, 4 layers, 4 heads, 128
wide, Adam lr 1e-3 with 100 warm-up steps and cosine decay to 1e-4, beta2 0.99, clip 1).
Both: softmax cross-entropy on the next character at every step (nats per character).
Training batches are --batch-size windows of --seq-len characters at random offsets in the
first 90% of the text (drawn from the seed, so a run is reproducible
and resumable step for step); the last 10% is the validation text, evaluated every
--eval-every steps as the mean loss over all its non-overlapping windows.  Adam, gradients
clipped to global norm --clip.  After its first steps a run prints how long it will take (the
default 2000 steps: 8 to 12 minutes on 2 cores, 0.24 s a step plus validation).

Writes into --out: run.json (the run's settings: --resume restores them, a larger --steps
extends the run; a fresh run refuses a folder holding another unless --overwrite), config.json
(alphabet and sizes), checkpoints/ (every --checkpoint-every steps and at the end; params, Adam
state, history), history.csv (a row every --eval-every steps, written as the run goes),
history.json; with --tensorboard also tensorboard/ (loss, learning rate and seconds a step,
validation loss).  Sampling feeds the seed text through the network, then draws one character
at a time from softmax(logits / temperature), carrying the LSTM state from step to step (the
transformer reads the last --seq-len characters again at every step).
Training is data-parallel under ``mpiexec -n N`` (dlkit.distributed): each rank takes its share
of the --batch-size windows of a step, the gradients are averaged in one fused allreduce, and
rank 0 prints and writes the run.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path


SETTINGS = {}          # the run settings: restored from the run by --resume (dlkit.runs)


def parse_args(argv=None):
    from dlkit import runs
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=runs.HelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train (or resume) a model",
                       description="Train (or resume) a character-level LSTM language model.",
                       formatter_class=runs.HelpFormatter)

    def setting(flag, default, **kw):
        runs.setting(t, SETTINGS, flag, default, **kw)
    setting("--text", "tinyshakespeare",
            help="a text file, or the name of a known corpus (tinyshakespeare)")
    setting("--model", "lstm", choices=list(MODEL_DEFAULTS), help="the network")
    setting("--steps", 2000, type=runs.positive_int,
            help="training steps; the default run takes 8-12 min on 2 cores, and every "
                 "run prints its estimate after its first steps; with --resume, a larger "
                 "number extends the run")
    setting("--batch-size", None, type=runs.positive_int, help="windows a step",
            default_text=_per_model("batch_size"))
    setting("--seq-len", None, type=runs.positive_int,
            help="characters a window (the transformer's context)",
            default_text=_per_model("seq_len"))
    setting("--embed", 64, type=runs.positive_int, help="embedding size")
    setting("--embed-init", "normal", choices=["normal", "uniform"],
            help="embedding init: N(0, 1) as PyTorch, or Keras' U(-0.05, 0.05)")
    setting("--units", 256, type=runs.positive_int, help="LSTM units a layer")
    setting("--layers", 1, type=runs.positive_int, help="stacked LSTM layers")
    setting("--n-embd", 128, type=runs.positive_int, help="transformer width")
    setting("--n-layer", 4, type=runs.positive_int, help="transformer blocks")
    setting("--n-head", 4, type=runs.positive_int,
            help="attention heads a block (--n-embd a multiple of it)")
    setting("--dropout", 0.0, type=runs.fraction,
            help="transformer dropout (attention weights, residual branches, embeddings)")
    setting("--lr", None, type=runs.positive_float, default_text=_per_model("lr"),
            help="Adam learning rate: constant for the LSTM; for the transformer the peak of "
                 "--warmup steps of linear warm-up then cosine decay to lr/10 at --steps")
    setting("--warmup", 100, type=runs.nonnegative_int,
            help="transformer learning-rate warm-up steps")
    setting("--clip", None, type=runs.nonnegative_float, default_text=_per_model("clip"),
            help="global-norm clipping (0: none)")
    setting("--val-fraction", 0.1, type=runs.fraction,
            help="share of the text, at its end, held out for validation")
    setting("--seed", 0, type=int)
    t.add_argument("--eval-every", type=runs.positive_int, default=250, metavar="STEPS",
                   help="evaluate on the validation text and print every STEPS steps")
    t.add_argument("--checkpoint-every", type=runs.positive_int, default=250, metavar="STEPS",
                   help="checkpoint every STEPS steps (and at the end)")
    t.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to train: cuda keeps params, optimizer state and each batch on "
                        "the GPU (numba-cuda; NUMBA_ENABLE_CUDASIM=1 runs the simulator); "
                        "sampling runs on the CPU")
    runs.output_flags(t, data="tinyshakespeare/", default_out="runs/char_rnn")
    t.add_argument("--sample-length", type=runs.nonnegative_int, default=300,
                   help="characters to sample at the end (0: none)")
    s = sub.add_parser("sample", help="sample text from a trained model",
                       description="Sample text from the newest checkpoint of a training run.",
                       formatter_class=runs.HelpFormatter)
    s.add_argument("--out", default="runs/char_rnn", help="the training run's folder")
    s.add_argument("--length", type=runs.nonnegative_int, default=500,
                   help="characters to generate after the seed text")
    s.add_argument("--temperature", type=runs.positive_float, default=0.8,
                   help="softmax temperature: lower is more conservative")
    s.add_argument("--seed-text", default="\n",
                   help="text fed to the model first (default: a newline)")
    s.add_argument("--seed", type=int, default=0, help="random seed of the sampling")
    return p.parse_args(argv)


MODEL_DEFAULTS = {"lstm": dict(seq_len=100, batch_size=64, lr=2e-3, clip=5.0),
                  "transformer": dict(seq_len=64, batch_size=12, lr=1e-3, clip=1.0)}


def _per_model(name):
    return "per model: " + ", ".join(f"{m} {d[name]}" for m, d in MODEL_DEFAULTS.items())


def build_model(vocab, cfg):
    from dlkit import init
    from dlkit import layers as L
    from dlkit import nn
    if cfg.get("model", "lstm") == "transformer":
        C, n, drop = cfg["n_embd"], cfg["n_layer"], cfg["dropout"]
        layers = [("embed", L.Embedding(vocab, C, E_init=init.normal(0.02))),
                  ("pos", L.PositionEmbedding(cfg["seq_len"]))]
        if drop:
            layers.append(("drop", L.Dropout(drop)))
        layers += [(f"block{i + 1}", L.TransformerBlock(C, cfg["n_head"], dropout=drop,
                                                         n_blocks=n)) for i in range(n)]
        layers += [("ln_f", L.LayerNorm()),
                   ("out", L.TimeDistributed(L.Dense(vocab, W_init=init.normal(0.02))))]
        return nn.serial(*layers)
    layers = [("embed", L.Embedding(vocab, cfg["embed"], E_init=cfg.get("embed_init", "normal")))]
    for i in range(cfg["layers"]):
        layers.append((f"lstm{i + 1}", L.LSTM(cfg["units"], return_sequences=True)))
    layers.append(("out", L.TimeDistributed(L.Dense(vocab))))
    return nn.serial(*layers)


def sequence_loss(out, y):
    """Mean next-character cross-entropy over every step: out (B, T, V), y (B, T)."""
    from dlkit import losses
    loss, d = losses.softmax_cross_entropy(out.reshape(-1, out.shape[2]), y.reshape(-1))
    return loss, d.reshape(out.shape)


def evaluate(model, params, ids, seq_len, batch_size=256):
    """Mean loss (nats per character) over all non-overlapping windows of ``ids``."""
    from dlkit import data
    x, y = data.sequential_windows(ids, seq_len)
    total = 0.0
    for i in range(0, len(x), batch_size):
        out, _ = model.forward(params, x[i:i + batch_size], train=False)
        total += sequence_loss(out, y[i:i + batch_size])[0] * len(out)
    return total / len(x)


def train(args):
    import numpy as np

    import dlkit
    from dlkit import (checkpoint, clip, data, device, distributed, logs, nn, optim, random, runs,
                       tree)

    try:
        out = runs.resolve(args, "char_rnn.py", SETTINGS, default_out="runs/char_rnn",
                           changeable=("steps",))
        for name, value in MODEL_DEFAULTS[args.model].items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.model == "transformer" and args.n_embd % args.n_head:
            raise ValueError(f"--n-embd {args.n_embd} must be a multiple of --n-head "
                             f"{args.n_head}")
        corpus = data.load_char_corpus(args.text, args.val_fraction, data_dir=args.data_dir)
        if min(len(corpus.train), len(corpus.val)) < args.seq_len + 1:
            raise ValueError(
                f"--seq-len {args.seq_len} needs at least {args.seq_len + 1} characters in the "
                f"training text and in the validation text (its last --val-fraction "
                f"{args.val_fraction}); {corpus.source} gives {len(corpus.train)} and "
                f"{len(corpus.val)}: use a smaller --seq-len, another --val-fraction or a "
                "longer text")
        if args.tensorboard and not logs.tensorboard_available():
            raise ValueError(logs.TENSORBOARD_HINT + " (or drop --tensorboard)")
    except (runs.RunFolderError, data.DataNotFoundError, ValueError) as e:
        sys.exit(runs.error_message(e))
    cfg = dict(text=corpus.source, chars=corpus.chars, model=args.model, seq_len=args.seq_len,
               batch_size=args.batch_size, lr=args.lr, clip=args.clip, seed=args.seed,
               val_fraction=args.val_fraction)
    if args.model == "transformer":
        cfg.update(n_embd=args.n_embd, n_layer=args.n_layer, n_head=args.n_head,
                   dropout=args.dropout, warmup=args.warmup)
    else:
        cfg.update(embed=args.embed, embed_init=args.embed_init, units=args.units,
                   layers=args.layers)
    if args.resume and (out / "config.json").is_file():
        saved = json.loads((out / "config.json").read_text())
        saved.setdefault("model", "lstm")           # runs from before --model
        diff = {k: (saved.get(k), v) for k, v in cfg.items() if k != "text" and saved.get(k) != v}
        if diff:
            sys.exit(f"error: {out} was trained with other settings (saved, now): {diff}")
    runs.begin(out, args, "char_rnn.py", SETTINGS)
    if distributed.is_main():
        tmp = out / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=1))
        os.replace(tmp, out / "config.json")

    V = len(corpus)
    key = random.key(args.seed)
    model = build_model(V, cfg)
    _, params = model.init(random.fold_in(key, 0), (args.seq_len,))
    if args.model == "transformer":     # nanoGPT's: warm-up, cosine decay to lr / 10
        schedule = optim.cosine(args.lr, args.steps, args.lr / 10, args.warmup)
        opt = optim.adam(schedule, b2=0.99)
    else:
        schedule = optim.constant(args.lr)
        opt = optim.adam(args.lr)
    state = opt.init(params)
    step, history = 0, {"step": [], "train_loss": [], "val_loss": [], "seconds": []}
    if args.resume:
        c = distributed.from_main(checkpoint.restore, out / "checkpoints", like=params)
        if c is not None:
            params, state, step, history = c.params, c.opt_state, c.step, c.meta["history"]
            print(f"resumed from {c.path} (step {step})")
    world = distributed.setup()
    if world.size > 1:
        if args.device == "cuda":
            sys.exit("error: data-parallel training over MPI runs on the host; drop --device "
                     "cuda or mpiexec")
        distributed.check_batch("char_rnn.py", args.batch_size)
        distributed.check_same("char_rnn.py", train_chars=len(corpus.train), step=step,
                               params=distributed.signature(params))
        params, state = distributed.broadcast(params), distributed.broadcast(state)
    if args.device == "cuda":
        try:
            device.cuda()
        except RuntimeError as e:
            sys.exit(f"error: {e}")
        params, state = device.to_device((params, state))
    net = (f"{args.n_layer} x transformer block ({args.n_embd} wide, {args.n_head} heads, "
           f"dropout {args.dropout})" if args.model == "transformer" else
           f"embed {args.embed}, {args.layers} x LSTM {args.units}")
    lr_text = (f"lr={args.lr} ({args.warmup} warm-up, cosine to {args.lr / 10:g})"
               if args.model == "transformer" else f"lr={args.lr}")
    print(f"dlkit {dlkit.__version__}: char {args.model} on {corpus.source} "
          f"({len(corpus.train):,} train / {len(corpus.val):,} val characters, alphabet {V}), "
          f"{net}, {tree.size(params):,} params, batch {args.batch_size} x {args.seq_len}, adam "
          f"{lr_text}, clip {args.clip or 'none'}, {args.device}")

    grad_fn = nn.value_and_grad(model, sequence_loss)
    data_key = random.fold_in(key, 1)
    drop_key = random.fold_in(key, 2)       # the transformer's dropout masks, one key a step

    def save():
        if world.rank:
            return
        checkpoint.save(out / "checkpoints", step, device.to_host(params),
                        device.to_host(state), meta=dict(history=history, config=cfg))

    csv = board = None
    if world.rank == 0:
        rows = [{k: v[i] for k, v in history.items()} for i in range(len(history["step"]))]
        csv = logs.CSVLog(out / "history.csv", list(history), rows)
        if args.tensorboard:
            board = logs.TensorBoardLog(out / "tensorboard", purge_step=step or None)
    eta = logs.Estimate(args.steps - step, print, what=f"{args.steps - step} steps",
                        extra=f", plus validation every {args.eval_every} steps")
    running, n_run, t0 = 0.0, 0, time.perf_counter()
    while step < args.steps:
        t_step = time.perf_counter()
        x, y = data.random_windows(corpus.train, args.batch_size, args.seq_len,
                                   random.fold_in(data_key, step))
        if world.size > 1:              # this rank's windows; the mean over all of them
            mine = distributed.shard(np.arange(args.batch_size))
            loss, _, grads = grad_fn(params, x[mine], y[mine],        # masks of its own
                                     key=random.fold_in(random.fold_in(drop_key, step),
                                                        world.rank))
            grads, (loss,) = distributed.allreduce(grads, len(mine) / args.batch_size,
                                                   extra=[loss * len(mine) / args.batch_size])
        else:
            if args.device == "cuda":
                x, y = device.to_device((x, y))
            loss, _, grads = grad_fn(params, x, y, key=random.fold_in(drop_key, step))
        if not np.isfinite(loss):
            sys.exit(f"error: non-finite loss at step {step}; params not updated")
        if args.clip:
            grads = clip.clip_by_global_norm(grads, args.clip)
        updates, state = opt.update(grads, state, params)
        params = optim.apply_updates(params, updates)
        if board is not None:
            board.scalars(step + 1, **{"step/loss": loss, "step/lr": schedule(step),
                                       "step/seconds": time.perf_counter() - t_step})
        eta.step()
        step += 1
        running, n_run = running + loss, n_run + 1
        if step % args.eval_every == 0 or step == args.steps:
            val = evaluate(model, params, corpus.val, args.seq_len)
            secs = time.perf_counter() - t0
            history["step"].append(step)
            history["train_loss"].append(running / n_run)
            history["val_loss"].append(val)
            history["seconds"].append(secs)
            print(f"step {step:6d}: train loss {running / n_run:.4f}  val loss {val:.4f} "
                  f"nats/char  ({secs:.1f} s)", flush=True)
            if csv is not None:
                csv.write({k: v[-1] for k, v in history.items()})
            if board is not None:
                board.scalars(step, **{"eval/train_loss": running / n_run, "eval/val_loss": val})
                board.flush()
            running, n_run, t0 = 0.0, 0, time.perf_counter()
        if step % args.checkpoint_every == 0 or step == args.steps:
            save()
    if world.rank:                      # under MPI, rank 0 writes and samples
        return history
    for w in (csv, board):
        if w is not None:
            w.close()
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(dict(cfg, history=history), indent=1))
    os.replace(tmp, out / "history.json")
    print(f"\nwrote {out}/: config.json, checkpoints/, history.json, history.csv"
          + (", tensorboard/" if args.tensorboard else ""))
    if args.sample_length:
        print(f"\nsample (temperature 0.8):\n{sample(out, args.sample_length, 0.8, chr(10))}")
    return history


def sample(out, length, temperature, seed_text, seed=0):
    """Text from the newest checkpoint in ``out``: seed_text followed by ``length`` characters."""
    import numpy as np

    from dlkit import checkpoint, data, random
    from dlkit import layers as L

    out = Path(out)
    if not (out / "config.json").is_file():
        raise FileNotFoundError(f"{out}/config.json not found: is {out} a char_rnn.py run?")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    cfg = json.loads((out / "config.json").read_text())
    corpus = data.CharCorpus(cfg["chars"], 0.0, chars=cfg["chars"])
    V = len(cfg["chars"])
    _, like = build_model(V, cfg).init(random.key(0), (cfg["seq_len"],))
    c = checkpoint.restore(out / "checkpoints", like=like)
    if c is None:
        raise FileNotFoundError(f"no checkpoint in {out}/checkpoints")
    p = c.params
    rng = random.generator(random.key(seed))
    seed_text = seed_text or "\n"
    if cfg.get("model", "lstm") == "transformer":
        model, context = build_model(V, cfg), list(corpus.encode(seed_text))

        def step(i=None):
            if i is not None:
                context.append(i)
            window = np.array([context[-cfg["seq_len"]:]], np.int64)
            return model.forward(p, window)[0][0, -1].astype(np.float64)
        return seed_text + _draw(step, step(), length, temperature, rng, cfg["chars"])
    emb = L.Embedding(V, cfg["embed"])
    lstms = [L.LSTM(cfg["units"], return_sequences=True, return_state=True)
             for _ in range(cfg["layers"])]
    dense = L.Dense(V)
    states = [None] * cfg["layers"]

    def step(ids):
        h, _ = emb.forward(p["embed"], ids)
        for i, lstm in enumerate(lstms):
            inp = h if states[i] is None else (h, states[i])
            (h, states[i]), _ = lstm.forward(p[f"lstm{i + 1}"], inp)
        logits, _ = dense.forward(p["out"], np.ascontiguousarray(h[:, -1]))
        return logits[0].astype(np.float64)

    logits = step(corpus.encode(seed_text)[None, :])
    return seed_text + _draw(lambda i: step(np.array([[i]], np.int64)), logits, length,
                             temperature, rng, cfg["chars"])


def _draw(step, logits, length, temperature, rng, chars):
    """``length`` characters drawn one by one from softmax(logits / temperature), where
    ``step(i)`` feeds character i to the model and returns the next logits."""
    import numpy as np
    out = []
    for _ in range(length):
        z = logits / temperature
        prob = np.exp(z - z.max())
        prob /= prob.sum()
        i = int(rng.choice(len(chars), p=prob))
        out.append(chars[i])
        logits = step(i)
    return "".join(out)


def main(argv=None):
    args = parse_args(argv)
    if args.command == "train":
        return train(args)
    try:
        text = sample(args.out, args.length, args.temperature, args.seed_text, args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    print(text)
    return text


def cli():
    """The console command: run main() on sys.argv (under mpiexec: rank 0 prints, an error
    ends the job)."""
    from dlkit.distributed import run
    run(main)


if __name__ == "__main__":
    cli()
