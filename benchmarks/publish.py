#!/usr/bin/env python
"""Build the benchmark dashboard from the kept history (benchmarks/results/): a site that works
with no network.

    python benchmarks/publish.py                # writes .asv/html/
    python benchmarks/publish.py -o site/       # elsewhere
    python -m http.server -d .asv/html 8000     # then open http://localhost:8000/overview.html

It runs ``asv publish``, then serves every script, style and font asv's pages fetch from the
internet from the site itself (benchmarks/dashboard/vendor/: jQuery, flot, Bootstrap,
stupidtable, blueimp-md5, unmodified, with their MIT licences), and adds ``overview.html``:
per kernel family, the headline benchmark's latest figure, its trend over the recorded commits
and the ratio to PyTorch that ``compare_torch.py`` measured (benchmarks/results/<machine>/
peers.json, written by ``compare_torch.py --json``), each linking to asv's graph.
"""
import argparse
import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "benchmarks" / "dashboard"

# asv 0.6's index.html fetches these from CDNs; each maps to the file served in their place
VENDORED = {
    "jquery-3.3.1.min.js": "jquery-3.3.1.min.js",
    "jquery.flot.min.js": "jquery.flot.js",
    "jquery.flot.time.min.js": "jquery.flot.time.js",
    "jquery.flot.selection.min.js": "jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupidtable.min.js",
    "md5.min.js": "md5.min.js",
    "bootstrap.min.js": "bootstrap.min.js",
    "bootstrap.min.css": "bootstrap.min.css",
}

# family: (benchmark, its parameters as asv lists them, compare_torch case or None)
HEADLINES = {
    "dense": ("bench_dense.Dense.time_backward_relu", ("(128, 784, 128)",),
              "dense_128x784x128"),
    "loss": ("bench_dense.SoftmaxCrossEntropy.time_softmax_cross_entropy", ("(128, 10)",),
             "softmax_ce_128x10"),
    "conv": ("bench_conv.Conv2D.time_backward", ("'32x64_14'", "'relu'"),
             "conv_32x64_3x3_pad1"),
    "pool": ("bench_conv.Pool.time_backward", ("'max2x2'",), "maxpool_2x2_128x32x26x26"),
    "recurrent": ("bench_recurrent.LSTM.time_forward_backward", ("(28, 128, 28, 128)",),
                  "lstm_T28_B128_I28_H128"),
    "embedding": ("bench_recurrent.Embedding.time_backward", (),
                  "embedding_10000x128_64x200"),
    "batchnorm": ("bench_batchnorm.BatchNorm2d.time_layer_forward_backward",
                  ("(128, 32, 28, 28)",), "batchnorm2d_128x32x28x28"),
    "layernorm": ("bench_norm.LayerNorm.time_layer_forward_backward", ("(4096, 256)",),
                  "layernorm_4096x256"),
    "attention": ("bench_attention.Attention.time_backward", ("(12, 4, 64, 32)",),
                  "attention_12x4x64x32"),
    "optimizer": ("bench_training.Optimizers.time_step", ("'adam'",), "adam_mlp"),
    "rbm": ("bench_rbm.CD.time_cd1", (), None),
    "MLP step": ("bench_training.ZooStep.time_train_step", ("'mlp'",), "mlp_step"),
    "CNN step": ("bench_training.ZooStep.time_train_step", ("'cnn'",), "cnn_step"),
    "row-LSTM step": ("bench_training.ZooStep.time_train_step", ("'lstm'",), "lstm_step"),
    "IMDb LSTM step": ("bench_training.ZooStep.time_train_step", ("'imdb'",), "imdb_step"),
    "resnet step": ("bench_training.ZooStep.time_train_step", ("'resnet'",), "resnet_step"),
    "GPT step": ("bench_training.ZooStep.time_train_step", ("'gpt'",), "gpt_step"),
    "MLP peak memory": ("bench_training.ZooStep.peakmem_train_step", ("'mlp'",), None),
    "CNN first step, cold": ("bench_compile.FirstStep.track_cold_cache", ("'cnn'",), None),
    "checkpoint": ("bench_training.Checkpoint.time_save", (), None),
}


def vendor(site):
    """Copy the vendored files into the site and point index.html at them."""
    shutil.copytree(DASHBOARD / "vendor", site / "vendor", dirs_exist_ok=True)
    shutil.copytree(DASHBOARD / "fonts", site / "fonts", dirs_exist_ok=True)
    index = site / "index.html"
    text = index.read_text()

    def local(match):
        tag, url = match.group(0), match.group(2)
        name = VENDORED.get(url.rsplit("/", 1)[-1])
        if name is None:
            raise SystemExit(f"publish.py: asv's index.html fetches {url}, which is not "
                             "vendored: add it to benchmarks/dashboard/vendor and VENDORED")
        tag = re.sub(r'\s(integrity|crossorigin|referrerpolicy)="[^"]*"', "", tag)
        return tag.replace(url, f"vendor/{name}")

    text = re.sub(r'<(script|link)\b[^>]*?(?:src|href)="(https?://[^"]+)"[^>]*>', local, text)
    text = text.replace('<li id="nav-li-" class="active">',
                        '<li><a href="overview.html">Overview</a></li>\n\t'
                        '<li id="nav-li-" class="active">', 1)
    index.write_text(text)


def graph_points(site, name, machine):
    """[(revision, value or list of values)] of benchmark ``name`` on ``machine``."""
    files = [p for p in (site / "graphs").rglob(f"{name}.json")
             if f"machine-{machine}" in p.parts]
    return json.loads(files[0].read_text()) if files else []


def value_at(bench, value, params):
    if not params:
        return value
    combos = [()]
    for values in bench["params"]:
        combos = [c + (v,) for c in combos for v in values]
    return value[combos.index(params)] if isinstance(value, list) else None


def fmt(value, unit):
    if value is None:
        return "not recorded"
    if unit == "bytes":
        return f"{value / 2**20:.1f} MiB"
    if unit == "seconds" and value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1e3:.3f} ms" if value >= 1e-3 else f"{value * 1e6:.1f} us"


def sparkline(values, width=160, height=28):
    pts = [(i, v) for i, v in enumerate(values) if v is not None]
    if len(pts) < 2:
        return ""
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span, n = (hi - lo) or 1.0, max(len(values) - 1, 1)
    xy = " ".join(f"{2 + i * (width - 4) / n:.1f},{height - 3 - (v - lo) * (height - 6) / span:.1f}"
                  for i, v in pts)
    return (f'<svg class="spark" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            f'<polyline fill="none" stroke="#2a6fb0" stroke-width="1.5" points="{xy}"/></svg>')


def overview(site, machine):
    index = json.loads((site / "index.json").read_text())
    peers_file = ROOT / "benchmarks" / "results" / machine / "peers.json"
    peers = json.loads(peers_file.read_text()) if peers_file.exists() else {}
    rev_hash = index["revision_to_hash"]
    rows = []
    for family, (name, params, case) in HEADLINES.items():
        bench = index["benchmarks"].get(name)
        if bench is None:
            continue
        series = [(rev, value_at(bench, v, params)) for rev, v in graph_points(site, name, machine)]
        values = [v for _, v in series]
        known = [(rev, v) for rev, v in series if v is not None]
        latest = known[-1] if known else (None, None)
        change = ""
        if len(known) >= 2:
            first = known[0][1]
            change = f"{latest[1] / first:.2f}x ({len(known)} commits)"
        ratio = peers.get("cases", {}).get(case, {}).get("ratio") if case else None
        label = f"{name.split('.', 1)[1]}({', '.join(params)})" if params else name.split(".", 1)[1]
        rows.append(
            f"<tr><td>{html.escape(family)}</td>"
            f'<td><a href="index.html#{html.escape(name)}">{html.escape(label)}</a></td>'
            f"<td class='num'>{fmt(latest[1], bench['unit'])}</td>"
            f"<td>{(rev_hash.get(str(latest[0])) or '')[:8]}</td>"
            f"<td>{sparkline(values)}</td><td>{html.escape(change)}</td>"
            f"<td class='num'>{f'{ratio:.2f}' if ratio else ''}</td>"
            f"<td>{html.escape(case or '')}</td></tr>")
    peer_note = (f"PyTorch ratios: dlkit time / PyTorch's best setting, measured side by side by "
                 f"<code>compare_torch.py</code> at commit {html.escape(peers.get('commit', '')[:8])}"
                 f" ({html.escape(peers.get('date', ''))}); below 1 means dlkit is faster."
                 if peers else "No PyTorch ratios recorded for this machine (peers.json).")
    n_commits = len({h for h in rev_hash.values()})
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>dlkit benchmarks: overview</title>
<link rel="stylesheet" href="vendor/bootstrap.min.css">
<style>body{{padding:1.5em}} td.num{{text-align:right;font-family:monospace}}
svg.spark{{vertical-align:middle}} td{{white-space:nowrap}}</style></head>
<body><h1>dlkit benchmarks on <code>{html.escape(machine)}</code></h1>
<p>The headline benchmark of each kernel family over the {n_commits} recorded commits
(oldest left). Lower is faster. <a href="index.html">All benchmarks (asv)</a>.</p>
<p>{peer_note}</p>
<table class="table table-condensed table-striped" id="overview">
<thead><tr><th>family</th><th>benchmark</th><th>latest</th><th>commit</th><th>trend</th>
<th>latest / first</th><th>PyTorch ratio</th><th>peer case</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    (site / "overview.html").write_text(page)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-o", "--html-dir", default=str(ROOT / ".asv" / "html"))
    p.add_argument("-m", "--machine", default="reference")
    a = p.parse_args(argv)
    site = Path(a.html_dir).resolve()
    subprocess.run([sys.executable, "-m", "asv", "publish", "--no-pull", "-o", str(site)],
                   cwd=ROOT, check=True)
    vendor(site)
    overview(site, a.machine)
    print(f"dashboard: {site / 'overview.html'} (serve the folder, e.g. "
          f"python -m http.server -d {site})")


if __name__ == "__main__":
    main()
