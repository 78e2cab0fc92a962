"""The wheel a user installs: ``pip wheel`` builds it (from a copy of the sources, so the
checkout gets no build/ or egg-info), a fresh venv with ``--system-site-packages`` (numpy,
numba... come from the system: no network) installs it, imports dlkit from the venv (not from
this checkout, not from its editable install) and runs every console command's --help from the
venv's bin/.  The wheel carries the LICENSE, the classifiers and the entry points.  About half
a minute."""
import configparser
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("setup.cfg", "pyproject.toml", "README.md", "LICENSE", "dlkit", "kernels")


def _commands():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {ln.split("=")[0].strip(): ln.split("=")[1].strip() for ln in lines}


def _run(cmd, cwd, timeout=300):
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True,
                       timeout=timeout, env=dict(os.environ, PIP_NO_INPUT="1",
                                                 PIP_DISABLE_PIP_VERSION_CHECK="1"))
    assert r.returncode == 0, f"{cmd}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


def test_wheel_installs_into_a_fresh_venv_and_its_commands_run(tmp_path):
    commands = _commands()
    assert set(commands) == {"dlkit-train-mnist", "dlkit-train-imdb", "dlkit-char-rnn",
                             "dlkit-train-dbn"}
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
        else:
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp_path / "wheels"
    # --no-build-isolation: the installed setuptools builds it, nothing is downloaded
    _run([sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation",
          "-w", wheels], cwd=tmp_path)
    (wheel,) = wheels.glob("dlkit-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt")))
    assert any(n.endswith("LICENSE") and ".dist-info/" in n for n in names), names
    assert "dlkit/py.typed" in names and "dlkit/cli/train_mnist.py" in names
    assert "Classifier: License :: OSI Approved :: MIT License" in meta
    assert all(f"{c} = {target}" in entry.decode() for c, target in commands.items())

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv],
         cwd=tmp_path)
    py = venv / "bin" / "python"
    # the system's pip (visible through --system-site-packages) installs into the venv
    _run([py, "-m", "pip", "install", "--no-deps", "--force-reinstall", "--no-index", wheel],
         cwd=tmp_path)
    where = _run([py, "-c", "import dlkit, dlkit.cli.char_rnn; print(dlkit.__file__)"],
                 cwd=tmp_path).strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    for command in commands:
        out = _run([venv / "bin" / command, "--help"], cwd=tmp_path)
        assert out.startswith(f"usage: {command} "), out[:300]
        assert command == "dlkit-char-rnn" or "(default:" in out, out
    assert "usage: dlkit-char-rnn train " in _run([venv / "bin" / "dlkit-char-rnn", "train",
                                                    "--help"], cwd=tmp_path)
