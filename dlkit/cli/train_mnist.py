"""Train a model from dlkit.zoo on MNIST, Fashion-MNIST or Kuzushiji-MNIST.

    dlkit-train-mnist --dataset fashion-mnist --model mlp --epochs 10
    python scripts/train_mnist.py --dataset fashion-mnist ...     # the same, from a checkout

Prints the run's expected duration after its first steps (when over 30 s), per-epoch train
loss/accuracy, validation loss/accuracy and seconds, then the test accuracy and a per-class
precision/recall/F1 table.  Writes into --out: run.json (the run's settings), checkpoints/,
history.csv (one row per epoch, written as the run goes), history.json, learning_curve.png and
confusion_matrix.png; with --tensorboard also tensorboard/.  A folder holds one run: a fresh
run refuses a folder holding another (use --resume DIR to continue it with its
own settings, --overwrite to replace it, or another --out).  Data is looked for in
--data-dir, $DLKIT_DATA, ~/.cache/dlkit and /usr/share/datasets, then downloaded.

--augment (cnn, cnn-deep, resnet) trains on randomly cropped (2 pixels of background
padding: a black pixel's prepared value) and flipped batches (``dlkit.data.crop_and_flip``);
validation and test images are left as they are.

Data-parallel: ``mpiexec -n 2 python scripts/train_mnist.py ...`` trains with the same global
--batch-size split across the ranks (dlkit.distributed); rank 0 prints and writes the run.
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
    from dlkit.zoo import DEFAULT_BATCH, DEFAULT_LR, MODELS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=runs.HelpFormatter)
    runs.setting(p, SETTINGS, "--dataset", "mnist", choices=["mnist", "fashion-mnist", "kmnist"])
    runs.setting(p, SETTINGS, "--model", "mlp", choices=sorted(MODELS))
    runs.setting(p, SETTINGS, "--epochs", 10, type=runs.positive_int)
    runs.setting(p, SETTINGS, "--batch-size", None, type=runs.positive_int,
                 default_text="per model: " + ", ".join(f"{m} {DEFAULT_BATCH[m]}"
                                                        for m in sorted(DEFAULT_BATCH)))
    runs.setting(p, SETTINGS, "--lr", None, type=runs.positive_float,
                 help="initial learning rate",
                 default_text="per model: " + ", ".join(
                     f"{m} {DEFAULT_LR[m]:.0e}".replace("e-0", "e-") for m in sorted(DEFAULT_LR)))
    runs.setting(p, SETTINGS, "--schedule", "cosine", choices=["cosine", "constant"],
                 help="learning-rate schedule over the whole run: cosine decays it to 0, "
                      "constant keeps it")
    runs.setting(p, SETTINGS, "--optimizer", "adam", choices=["adam", "adamw", "sgd", "rmsprop"])
    runs.setting(p, SETTINGS, "--seed", 0, type=int)
    runs.setting(p, SETTINGS, "--val-fraction", 0.1, type=runs.fraction,
                 help="share of the training set held out for validation (0: none, train on all)")
    runs.setting(p, SETTINGS, "--train-subset", None, type=runs.positive_int, metavar="N",
                 default_text="all",
                 help="train on the first N training images only (quick experiments)")
    runs.setting(p, SETTINGS, "--augment", False, action="store_true",
                 help="augment each training batch: random crop with 2 pixels of background "
                      "padding and a random horizontal flip (image models cnn, cnn-deep, "
                      "resnet)")
    runs.output_flags(p, data="<dataset>/", default_out="runs/<dataset>-<model>")
    p.add_argument("--checkpoint-every", type=runs.positive_int, default=None, metavar="STEPS",
                   help="also checkpoint every STEPS steps (default: only at epoch ends)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNGs")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where to train: cuda keeps params, optimizer state and each batch on "
                        "the GPU (numba-cuda; NUMBA_ENABLE_CUDASIM=1 runs the simulator)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np

    import dlkit
    from dlkit import data, distributed, logs, metrics, optim, random, runs, train, tree
    from dlkit.zoo import DEFAULT_BATCH, DEFAULT_LR, MODELS

    try:
        out = runs.resolve(args, "train_mnist.py", SETTINGS,
                           default_out=lambda a: f"runs/{a.dataset}-{a.model}")
        if args.augment and args.model not in ("cnn", "cnn-deep", "resnet"):
            sys.exit(f"error: --augment needs an image model whose input is (N, 1, 28, 28): cnn, "
                     f"cnn-deep or resnet, not {args.model}")
        (xtr, ytr), (xte, yte) = data.load_mnist(args.dataset, data_dir=args.data_dir,
                                                 progress=not args.quiet)
    except (runs.RunFolderError, data.DataNotFoundError, ValueError) as e:
        sys.exit(runs.error_message(e))
    if args.tensorboard and not logs.tensorboard_available():
        sys.exit(f"error: {logs.TENSORBOARD_HINT} (or drop --tensorboard)")
    if args.train_subset:
        xtr, ytr = xtr[:args.train_subset], ytr[:args.train_subset]
    key = random.key(args.seed)
    val = None                  # --val-fraction 0: train on every training image, no validation
    if args.val_fraction > 0:
        (xtr, ytr), val = data.train_val_split(xtr, ytr, args.val_fraction,
                                               random.fold_in(key, 0))
    model, prepare, in_shape = MODELS[args.model](args.dataset)
    _, params, *rest = model.init(random.fold_in(key, 1), in_shape)
    state = rest[0] if rest else None           # BatchNorm's running statistics (resnet)
    if args.device == "cuda":
        from dlkit import device
        try:
            device.cuda()
        except RuntimeError as e:
            sys.exit(f"error: {e}")
        params = device.to_device(params)
        state = None if state is None else device.to_device(state)
    if args.lr is None:
        args.lr = DEFAULT_LR[args.model]
    if args.batch_size is None:
        args.batch_size = DEFAULT_BATCH[args.model]
    lr = args.lr
    runs.begin(out, args, "train_mnist.py", SETTINGS)
    total_steps = args.epochs * data.n_batches(len(xtr), args.batch_size)
    opt = optim.get(args.optimizer, optim.cosine(lr, total_steps) if args.schedule == "cosine"
                    else lr)
    print(f"dlkit {dlkit.__version__}: {args.model} on {args.dataset} "
          f"({len(xtr)} train / {len(val[0]) if val else 0} val / {len(xte)} test), "
          f"{tree.size(params):,} params, {args.optimizer} lr={lr} ({args.schedule}), "
          f"batch {args.batch_size}, seed {args.seed}, {args.device}"
          + (", augment: crop 2 + flip" if args.augment else ""))
    augment = None                  # padding the background: what a black pixel prepares to
    if args.augment:
        black = float(prepare(np.zeros((1, 28, 28), np.uint8)).flat[0])
        augment = data.crop_and_flip(2, fill=black)
    t0 = time.perf_counter()
    result = train.fit(model, params, opt, (xtr, ytr), key=random.fold_in(key, 2),
                       epochs=args.epochs, batch_size=args.batch_size, prepare=prepare,
                       val=val, checkpoint_dir=out / "checkpoints",
                       checkpoint_every=args.checkpoint_every, resume=args.resume is not None,
                       progress=not args.quiet, csv_log=out / "history.csv",
                       tensorboard_dir=out / "tensorboard" if args.tensorboard else None,
                       augment=augment, state=state)
    seconds = time.perf_counter() - t0
    if not distributed.is_main():          # under MPI, rank 0 evaluates and writes
        return None
    test_loss, test_acc, pred = train.evaluate(model, result.params, xte, yte, prepare=prepare,
                                               state=result.state)
    names = data.CLASS_NAMES[args.dataset]
    print(f"\ntest accuracy {test_acc:.4f} (loss {test_loss:.4f}) after "
          f"{runs.plural(len(result.history['epoch']), 'epoch')}, {seconds:.1f} s of training\n")
    print(metrics.classification_report(yte, pred, names))
    out.mkdir(parents=True, exist_ok=True)
    host_params = result.params
    if args.device == "cuda":
        from dlkit import device
        host_params = device.to_host(result.params)
    summary = dict(vars(args), test_accuracy=test_acc, test_loss=test_loss,
                   train_seconds=seconds, history=result.history,
                   params_sha256=tree.digest(host_params))
    tmp = out / "history.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "history.json")
    if not args.no_plots:
        from dlkit import plot
        plot.learning_curves(result.history, out / "learning_curve.png",
                             title=f"{args.model} on {args.dataset}")
        plot.confusion_matrix(metrics.confusion_matrix(yte, pred, len(names)), names,
                              out / "confusion_matrix.png")
    print(f"\nwrote {out}/: checkpoints/, history.json, history.csv"
          + (", tensorboard/" if args.tensorboard else "")
          + ("" if args.no_plots else ", learning_curve.png, confusion_matrix.png"))
    return test_acc


def cli():
    """The console command: run main() on sys.argv (under mpiexec: rank 0 prints, an error
    ends the job)."""
    from dlkit.distributed import run
    run(main)


if __name__ == "__main__":
    cli()
