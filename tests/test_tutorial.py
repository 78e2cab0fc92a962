"""docs/tutorial.md runs as written, and the README's test command is what CI runs.

The tutorial's ```python blocks are extracted in order.  Those before its GPU section run as one
script in a fresh process (in a temporary folder, so its runs/ lands there); the GPU section's
blocks run as a second script in their own process with NUMBA_ENABLE_CUDASIM=1 set before
anything is imported.  Both read Fashion-MNIST through $DLKIT_DATA (skipped without it, like
every data test).  The GPU part skips in one line where numba-cuda is not installed, and fails
instead when CI is set (.ci/run installs it).
"""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import in_ci

ROOT = Path(__file__).resolve().parent.parent
TUTORIAL = ROOT / "docs" / "tutorial.md"
GPU_HEADING = re.compile(r"^## \d+\. Run it on the GPU", re.M)
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def tutorial_parts():
    """(cpu_code, gpu_code): the python blocks before and after the GPU heading."""
    text = TUTORIAL.read_text()
    m = GPU_HEADING.search(text)
    assert m, f"{TUTORIAL}: no heading matching {GPU_HEADING.pattern!r}"
    cpu = BLOCK.findall(text[:m.start()])
    gpu = BLOCK.findall(text[m.start():])
    assert cpu and gpu, "the tutorial has python blocks before and inside its GPU section"
    return "\n".join(cpu), "\n".join(gpu)


def run_script(code, folder, name, extra_env=None, timeout=300):
    script = folder / name
    script.write_text(code)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("NUMBA_ENABLE_CUDASIM", None)
    env.update(extra_env or {})
    r = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True,
                       text=True, timeout=timeout)
    assert r.returncode == 0, (f"{name} (from docs/tutorial.md) failed, exit {r.returncode}:\n"
                               f"{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
    return r.stdout


def test_tutorial_runs(data_dir, tmp_path):
    cpu, _ = tutorial_parts()
    out = run_script(cpu, tmp_path, "tutorial.py")
    assert "test accuracy" in out and "GFLOP/s" in out


def test_tutorial_gpu_part_runs_in_the_simulator(data_dir, tmp_path):
    if importlib.util.find_spec("numba_cuda") is None:
        msg = 'numba-cuda is not installed (pip install -e ".[test]")'
        if in_ci():
            pytest.fail(f"CI is set but {msg}", pytrace=False)
        pytest.skip(msg)
    _, gpu = tutorial_parts()
    out = run_script(gpu, tmp_path, "tutorial_gpu.py", {"NUMBA_ENABLE_CUDASIM": "1"})
    assert "params on the device: True" in out


def test_readme_test_command_is_what_ci_runs():
    """The quick start's second command appears verbatim as a line of .ci/run."""
    readme = (ROOT / "README.md").read_text()
    commands = [line for line in re.findall(r"^pip install .*$", readme, re.M)
                if "python -m pytest" in line]
    assert commands, "README.md: no `pip install ... python -m pytest ...` command"
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[0] in ci, f".ci/run does not run the README's test command {commands[0]!r}"


# flags the README quotes that belong to other programs (asv, srun, the benchmark scripts)
NOT_SCRIPT_FLAGS = {"--python", "--quick", "--ntasks-per-node", "--cpus-per-task", "--rounds",
                    "--bench"}


def script_help(*args):
    r = subprocess.run([sys.executable, *args, "--help"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, f"{args} --help failed:\n{r.stderr[-3000:]}"
    return r.stdout


def test_readme_flags_and_defaults_match_the_scripts():
    """Every --flag the README quotes exists in a training script's --help, and the defaults
    the README gives for train_mnist.py are the ones its --help states."""
    readme = (ROOT / "README.md").read_text()
    helps = {name: script_help(f"scripts/{name}.py") for name in
             ("train_mnist", "train_imdb", "train_dbn")}
    helps["char_rnn"] = script_help("scripts/char_rnn.py", "train") + \
        script_help("scripts/char_rnn.py", "sample")
    known = set(re.findall(r"--[a-z][a-z0-9-]*", " ".join(helps.values())))
    quoted = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", readme)) - NOT_SCRIPT_FLAGS
    assert quoted <= known, f"README.md quotes flags no script has: {sorted(quoted - known)}"

    m = re.search(r"Its defaults:(.*?)\.\s", " ".join(readme.split()))
    assert m, "README.md: no 'Its defaults:' sentence for train_mnist.py"
    entries = {e.split()[0]: e for e in
               re.split(r"\n\s{2}(?=-)", helps["train_mnist"]) if e.startswith("-")}
    for flag, value in re.findall(r"`(--[a-z-]+) ([^`]+)`", m.group(1)):
        entry = " ".join(entries[flag].split())
        assert f"default: {value}" in entry, \
            f"README.md says {flag} {value}; train_mnist.py --help says: {entry}"
