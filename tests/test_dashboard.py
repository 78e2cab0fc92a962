"""The benchmark dashboard (benchmarks/publish.py) from the kept history (benchmarks/results/):
it works with no network, its graphs render, and a benchmark's graph has one point per
recorded commit.  The browser checks drive headless Chromium through selenium with every host
but 127.0.0.1 unresolvable; they skip, saying why, where Chromium, chromedriver or selenium is
missing (.ci/run installs Chromium from the system packages)."""
import functools
import http.server
import json
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MACHINE = ROOT / "benchmarks" / "results" / "reference"
GRAPHED = "bench_dense.Dense.time_forward_relu"       # in every recorded commit's results


def recorded(name):
    """Commit hashes whose results hold a value of benchmark ``name`` (any parameters)."""
    hashes = set()
    for path in MACHINE.glob("*.json"):
        if path.name == "machine.json" or path.name == "peers.json":
            continue
        saved = json.loads(path.read_text())
        result = saved["results"].get(name)
        if result and any(v is not None for v in result[0]):
            hashes.add(saved["commit_hash"])
    return hashes


def test_history_holds_15_commits():
    assert len(recorded(GRAPHED)) >= 15, f"{MACHINE} holds {len(recorded(GRAPHED))} commits"
    machine = json.loads((MACHINE / "machine.json").read_text())
    assert "BLAS" in machine["cpu"] and machine["num_cpu"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "publish.py"), "-o", str(out)],
                   cwd=ROOT, check=True, capture_output=True)
    return out


def test_site_fetches_nothing_from_outside(site):
    index = (site / "index.html").read_text()
    for url in re.findall(r'<(?:script|link)\b[^>]*?(?:src|href)="([^"]+)"', index):
        assert not re.match(r"[a-z]+://", url), url
        assert (site / url).is_file(), f"index.html loads {url}, which the site lacks"
    overview = (site / "overview.html").read_text()
    assert "Dense.time_backward_relu" in overview and "<svg" in overview


@pytest.fixture(scope="module")
def browser(site):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    if not chromium or not driver_path:
        pytest.skip("Chromium or chromedriver is not installed (apt-get install chromium "
                    "chromium-driver); the dashboard's browser checks need them")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    from selenium.webdriver.chrome.service import Service
    driver = webdriver.Chrome(service=Service(driver_path), options=opts)
    yield driver, f"http://127.0.0.1:{server.server_address[1]}"
    driver.quit()
    server.shutdown()


def requested(driver):
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def test_pages_render_offline(browser):
    from selenium.webdriver.support.ui import WebDriverWait
    driver, origin = browser
    driver.get(f"{origin}/overview.html")
    assert len(driver.find_elements("css selector", "#overview svg polyline")) >= 10

    driver.get(f"{origin}/index.html#{GRAPHED}")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.execute_script(
        "var p = $('#main-graph').data('plot'); return p && p.getData().length > 0"))
    points = driver.execute_script(
        "return $('#main-graph').data('plot').getData().map(function (s) {"
        "  return s.data.filter(function (d) { return d[1] !== null; }).length; });")
    assert max(points) == len(recorded(GRAPHED)), points
    painted = driver.execute_script(
        "var c = $('#main-graph canvas')[0], ctx = c.getContext('2d');"
        "var px = ctx.getImageData(0, 0, c.width, c.height).data, n = 0;"
        "for (var i = 3; i < px.length; i += 4) { if (px[i] > 0) n++; } return n;")
    assert painted > 1000, "the graph's canvas is blank"

    outside = [u for u in requested(driver) if not u.startswith((origin, "data:", "about:"))]
    assert not outside, f"pages requested outside the site: {outside}"
    assert not driver.current_url.endswith("error.html")
