"""dlkit.plot: Figures built with matplotlib's object-oriented API, so the backend is left as it
was found (checked in a fresh process, where an old-style ``matplotlib.use("Agg")`` would show);
every function returns its Figure and saves it only when given a path; epoch ticks are whole
numbers; the image grid has no blank band between its title and its tiles."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the plot extra: pip install -e '.[plot]'")
from matplotlib.figure import Figure  # noqa: E402

from dlkit import plot  # noqa: E402

HISTORY1 = {"epoch": [1], "loss": [0.5], "accuracy": [0.8], "val_loss": [0.45],
            "val_accuracy": [0.82], "lr": [1e-3], "seconds": [3.0]}


def test_plots_leave_the_backend_and_pyplot_alone(tmp_path):
    code = f"""
import json, sys, numpy as np, matplotlib
from dlkit import plot
figs = [plot.learning_curves({HISTORY1!r}, {str(tmp_path / "lc.png")!r}),
        plot.confusion_matrix(np.eye(3, dtype=int) * 5, ["a", "b", "c"]),
        plot.image_grid(np.random.default_rng(0).random((7, 5, 5)))]
print(json.dumps([matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules,
                  [type(f).__name__ for f in figs]]))
"""
    env = dict(os.environ, MPLBACKEND="svg")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    backend, pyplot_loaded, kinds = json.loads(r.stdout.strip().splitlines()[-1])
    assert backend == "svg" and not pyplot_loaded and kinds == ["Figure"] * 3
    assert (tmp_path / "lc.png").stat().st_size > 1000


def test_functions_return_the_figure_and_save_only_with_a_path(tmp_path):
    fig = plot.learning_curves(HISTORY1)
    assert isinstance(fig, Figure) and list(tmp_path.iterdir()) == []
    path = tmp_path / "cm.png"
    fig = plot.confusion_matrix(np.array([[3, 1], [0, 4]]), ["no", "yes"], path)
    assert isinstance(fig, Figure) and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cm.png"]      # no temporary left


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_epoch_ticks_are_whole_numbers(n):
    h = {"epoch": list(range(1, n + 1)), "loss": list(np.linspace(1, 0.5, n)),
         "accuracy": list(np.linspace(0.5, 0.9, n)), "val_loss": [None] * n,
         "val_accuracy": [None] * n, "lr": [None] * n}
    fig = plot.learning_curves(h)
    assert len(fig.axes) == 2                           # no lr panel without a learning rate
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks
        if n == 1:
            assert ticks == [1]
    assert len(plot.learning_curves(HISTORY1).axes) == 3     # loss, accuracy, learning rate


def test_image_grid_has_no_blank_band_under_its_title(tmp_path):
    from matplotlib.image import imread
    path = tmp_path / "filters.png"
    images = np.random.default_rng(1).random((100, 28, 28))
    plot.image_grid(images, path, title="first-layer filters (100 of 500), fashion-mnist")
    rgb = imread(str(path))[..., :3]
    ink = np.flatnonzero(~np.all(rgb > 0.99, axis=(1, 2)))     # rows with a dark pixel
    gaps = np.diff(ink) - 1          # white rows between inked rows: title to tiles included
    assert gaps.max() < 20, (gaps.max(), rgb.shape)
    with pytest.raises(ValueError, match=r"expected images of shape \(k, H, W\)"):
        plot.image_grid(np.zeros((3, 4)))

def test_image_grid_scales_each_tile_or_all_to_a_given_range():
    images = np.stack([np.full((4, 4), 0.25), np.linspace(0, 0.5, 16).reshape(4, 4)])
    tile = (slice(1, 5), slice(1, 5))                   # the first tile inside its frame
    fixed = plot.image_grid(images, value_range=(0, 1)).axes[0].images[0].get_array()
    assert np.allclose(fixed[tile], 0.25)               # probabilities shown as they are
    own = plot.image_grid(images).axes[0].images[0].get_array()
    assert np.allclose(own[tile], 0.0)                  # a flat tile scaled to its own range
    assert own[1:5, 6:10].min() == 0 and own[1:5, 6:10].max() == 1
