"""Train an LSTM sentiment classifier on the IMDb movie reviews; predict sentences.

    dlkit-train-imdb                                              # 3 epochs, then test metrics
    python scripts/train_imdb.py                                  # the same, from a checkout
    python scripts/train_imdb.py "A wonderful film." "Dull and far too long."
    python scripts/train_imdb.py --predict-only --out runs/imdb "Not bad at all."

The model is the Keras IMDb LSTM example's: Embedding 10,000 x 128, SpatialDropout1D 0.4,
LSTM 100, Dense 1 with a sigmoid, binary cross-entropy, Adam.  Reviews are tokenized
(lowercase, <br /> removed), the 10,000 most frequent training words kept (id 1 = unknown), and
the last 200 tokens of each review kept, padded at the front.  The LSTM receives each review's
real length, so padding neither changes its state nor gets gradient: the last state is the
one after the review's last word.  Gradients are clipped to global norm --clip.

Prints per-epoch loss/accuracy and seconds, then test accuracy, precision, recall and F1
(positive = 1), then the predicted sentiment of any sentences given on the command line.
Writes into --out: run.json (the run's settings), checkpoints/, vocab.json, history.csv (one
row per epoch, written as the run goes), history.json, and with --tensorboard tensorboard/.
A folder holds one run: a fresh run refuses a folder holding another (--resume DIR continues it
with its own settings, a larger --epochs extends it; --overwrite replaces it).
Data: aclImdb/ or aclImdb_v1.tar.gz in --data-dir, $DLKIT_DATA, ~/.cache/dlkit,
/usr/share/datasets, else downloaded from Stanford.
Data-parallel under ``mpiexec -n N`` (dlkit.distributed): the same global --batch-size split
across the ranks; rank 0 prints and writes the run.
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
    p.add_argument("sentences", nargs="*", help="sentences whose sentiment to predict")
    runs.setting(p, SETTINGS, "--epochs", 3, type=runs.positive_int,
                 help="passes over the training reviews; every run prints its expected "
                      "duration after its first steps; with --resume, a larger number extends "
                      "the run")
    runs.setting(p, SETTINGS, "--batch-size", 64, type=runs.positive_int)
    runs.setting(p, SETTINGS, "--lr", 1e-3, type=runs.positive_float,
                 help="Adam learning rate (constant)")
    runs.setting(p, SETTINGS, "--clip", 1.0, type=runs.nonnegative_float,
                 help="clip gradients to this global norm (0: no clipping)")
    runs.setting(p, SETTINGS, "--vocab-size", 10000, type=runs.positive_int,
                 help="most frequent training words kept")
    runs.setting(p, SETTINGS, "--maxlen", 200, type=runs.positive_int,
                 help="keep the last MAXLEN tokens")
    runs.setting(p, SETTINGS, "--embed-dim", 128, type=runs.positive_int)
    runs.setting(p, SETTINGS, "--units", 100, type=runs.positive_int, help="LSTM units")
    runs.setting(p, SETTINGS, "--dropout", 0.4, type=runs.fraction, help="SpatialDropout1D rate")
    runs.setting(p, SETTINGS, "--no-lengths", False, action="store_true",
                 help="run the LSTM over the padding too (as a plain Keras/PyTorch model)")
    runs.setting(p, SETTINGS, "--val-fraction", 0.0, type=runs.fraction,
                 help="share of the training reviews held out for validation (0: none)")
    runs.setting(p, SETTINGS, "--seed", 0, type=int)
    runs.setting(p, SETTINGS, "--train-subset", None, type=runs.positive_int, metavar="N",
                 default_text="all 25,000", help="train on N reviews only (quick experiments)")
    runs.output_flags(p, data="aclImdb/ or aclImdb_v1.tar.gz", default_out="runs/imdb")
    p.add_argument("--checkpoint-every", type=runs.positive_int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps (default: only at epoch ends)")
    p.add_argument("--test-subset", type=runs.positive_int, default=None, metavar="N",
                   help="evaluate on N test reviews only (default: all 25,000)")
    p.add_argument("--predict-only", action="store_true",
                   help="load the trained model from --out/--resume (with its settings) and "
                        "only predict")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to train: cuda keeps params, optimizer state and each batch on "
                        "the GPU (numba-cuda; NUMBA_ENABLE_CUDASIM=1 runs the simulator)")
    return p.parse_args(argv)


def build_model(args):
    from dlkit import layers as L
    from dlkit import nn
    return nn.serial(("embed", L.Embedding(args.vocab_size, args.embed_dim)),
                     ("drop", L.SpatialDropout1D(args.dropout)),
                     ("lstm", L.LSTM(args.units)),
                     ("out", L.Dense(1)))


def make_prepare(use_lengths):
    """Padded int ids (N, maxlen), padding (id 0) in front -> the model's input."""
    import numpy as np

    from dlkit import layers as L

    def prepare(xb):
        if not use_lengths:
            return xb
        lengths = np.maximum((xb != 0).sum(axis=1), 1)     # an empty review keeps one step
        return L.Padded(xb, lengths, "pre")
    return prepare


def encode(texts, vocab, maxlen):
    from dlkit import data
    return data.pad_sequences([vocab.encode(data.tokenize(t)) for t in texts], maxlen)[0]


def predict(model, params, prepare, x, batch_size=500):
    import numpy as np

    from dlkit import device
    out = []
    for i in range(0, len(x), batch_size):
        logits, _ = model.forward(params, prepare(x[i:i + batch_size]), train=False)
        out.append(device.to_host(logits).reshape(-1))     # device params: ids go up
    z = np.concatenate(out).astype(np.float64)
    return 1 / (1 + np.exp(-z))


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    import dlkit
    from dlkit import (checkpoint, clip, data, distributed, logs, losses, metrics, optim, random,
                       runs, train, tree)

    if args.device == "cuda":
        from dlkit import device
        try:
            device.cuda()
        except RuntimeError as e:
            sys.exit(f"error: {e}")
    if args.predict_only:             # the settings of the trained run, nothing written
        args.resume, args.out = args.resume or args.out or "runs/imdb", None
    try:
        out = runs.resolve(args, "train_imdb.py", SETTINGS, default_out="runs/imdb",
                           changeable=("epochs",))
    except runs.RunFolderError as e:
        sys.exit(f"error: {e}")
    key = random.key(args.seed)
    model = build_model(args)
    prepare = make_prepare(not args.no_lengths)
    _, params = model.init(random.fold_in(key, 1), (args.maxlen,))

    if args.predict_only:
        c = checkpoint.restore(out / "checkpoints", like=params)
        if c is None or not (out / "vocab.json").is_file():
            sys.exit(f"error: no trained model in {out} (need checkpoints/ and vocab.json)")
        vocab = data.Vocabulary.load(out / "vocab.json")
        print(f"loaded {c.path} (step {c.step})")
        report(model, c.params, prepare, vocab, args)
        return None

    try:
        (tr_text, ytr), (te_text, yte) = data.load_imdb(args.data_dir, progress=not args.quiet)
    except (data.DataNotFoundError, ValueError) as e:
        sys.exit(runs.error_message(e))
    if args.tensorboard and not logs.tensorboard_available():
        sys.exit(f"error: {logs.TENSORBOARD_HINT} (or drop --tensorboard)")
    t0 = time.perf_counter()
    runs.begin(out, args, "train_imdb.py", SETTINGS)
    vocab_path = out / "vocab.json"
    if args.resume and vocab_path.is_file():
        vocab = data.Vocabulary.load(vocab_path)
    else:
        vocab = data.Vocabulary.build((data.tokenize(t) for t in tr_text), args.vocab_size)
        if distributed.is_main():
            vocab.save(vocab_path)
    xtr, xte = encode(tr_text, vocab, args.maxlen), encode(te_text, vocab, args.maxlen)
    if args.train_subset:
        sub = random.generator(random.fold_in(key, 3)).permutation(len(xtr))[:args.train_subset]
        xtr, ytr = xtr[np.sort(sub)], ytr[np.sort(sub)]
    if args.test_subset:
        sub = np.sort(random.generator(random.fold_in(key, 4)).permutation(len(xte))
                      [:args.test_subset])
        xte, yte = xte[sub], yte[sub]
    val = None
    if args.val_fraction > 0:
        (xtr, ytr), val = data.train_val_split(xtr, ytr, args.val_fraction,
                                               random.fold_in(key, 0))
    print(f"dlkit {dlkit.__version__}: IMDb LSTM, {len(xtr)} train / {len(xte)} test reviews, "
          f"vocabulary {len(vocab)}, last {args.maxlen} tokens "
          f"({'with' if not args.no_lengths else 'without'} lengths), {tree.size(params):,} "
          f"params, adam lr={args.lr}, clip {args.clip or 'none'}, batch {args.batch_size}, "
          f"seed {args.seed}, {args.device} (data prepared in {time.perf_counter() - t0:.1f} s)")

    if args.device == "cuda":
        params = device.to_device(params)
    bce = losses.sigmoid_binary_cross_entropy
    opt = optim.adam(args.lr)
    t0 = time.perf_counter()
    result = train.fit(model, params, opt, (xtr, ytr), key=random.fold_in(key, 2),
                       epochs=args.epochs, batch_size=args.batch_size, loss_fn=bce,
                       prepare=prepare, val=val,
                       grad_transform=clip.by_global_norm(args.clip) if args.clip else None,
                       checkpoint_dir=out / "checkpoints",
                       checkpoint_every=args.checkpoint_every, resume=args.resume is not None,
                       progress=not args.quiet, csv_log=out / "history.csv",
                       tensorboard_dir=out / "tensorboard" if args.tensorboard else None)
    seconds = time.perf_counter() - t0
    if not distributed.is_main():          # under MPI, rank 0 evaluates and writes
        return None
    p = predict(model, result.params, prepare, xte)
    pred = (p > 0.5).astype(np.int64)
    r = metrics.precision_recall_f1(yte, pred, 2)
    acc = metrics.accuracy(yte, pred)
    test_loss = float(np.mean(-(yte * np.log(np.maximum(p, 1e-12))
                                + (1 - yte) * np.log(np.maximum(1 - p, 1e-12)))))
    print(f"\ntest accuracy {acc:.4f}  precision {r['precision'][1]:.4f}  "
          f"recall {r['recall'][1]:.4f}  F1 {r['f1'][1]:.4f}  (loss {test_loss:.4f}, "
          f"{len(yte)} reviews; positive = 1) after "
          f"{runs.plural(len(result.history['epoch']), 'epoch')}, {seconds:.1f} s "
          f"of training ({', '.join(f'{s:.1f}' for s in result.history['seconds'])} s per "
          "epoch)")
    summary = dict(vars(args), test_accuracy=acc, precision=r["precision"][1],
                   recall=r["recall"][1], f1=r["f1"][1], test_loss=test_loss,
                   train_seconds=seconds, history=result.history)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1, default=float))
    os.replace(tmp, out / "history.json")
    report(model, result.params, prepare, vocab, args)
    print(f"\nwrote {out}/: checkpoints/, vocab.json, history.json, history.csv"
          + (", tensorboard/" if args.tensorboard else ""))
    return acc


def report(model, params, prepare, vocab, args):
    if not args.sentences:
        return
    probs = predict(model, params, prepare, encode(args.sentences, vocab, args.maxlen))
    print("\nsentiment predictions:")
    for s, p in zip(args.sentences, probs):
        label = "positive" if p > 0.5 else "negative"
        print(f"  {label:8s} (p(positive) = {p:.3f})  {s}")


def cli():
    """The console command: run main() on sys.argv (under mpiexec: rank 0 prints, an error
    ends the job)."""
    from dlkit.distributed import run
    run(main)


if __name__ == "__main__":
    cli()
