"""Every notebook's widgets in a real browser: JupyterLab started here, driven by headless Chromium.

The headless tests (tests/test_widgets_*.py) call the builders and their observers in Python; this
test shows what a learner sees. It starts JupyterLab on a free localhost port, with a token, in a
temporary directory holding copies of the solution notebooks that use ``dlcourse.widgets``, in
fast mode (``DLCOURSE_FAST=1``). For each notebook it opens it in a 1366 x 768 window, runs all
cells and, for every widget output:

- it rendered: no "Error displaying widget", and no training progress bar ended red;
- every picture is shown at its own size (one screen pixel per PNG pixel, unless the output is
  narrower), pictures of one size show at one size, captions under a row of pictures start at
  one height, and the explorer fits the window's height;
- moving each slider, choosing from each dropdown, pressing each toggle button, typing into each
  number box and pressing Play changes the picture (an ``img``'s ``src`` changes), within
  ``CHANGE_TIMEOUT_S``;

and that the page logged no error. Run it with ``make test-browser``. Without Playwright (the
``browser`` extra) or a Chromium binary (Debian: ``apt-get install chromium``; or set
``DLCOURSE_CHROMIUM``) it is skipped, saying which is missing. ``DLCOURSE_BROWSER_NOTEBOOKS``
(comma-separated name prefixes, e.g. ``01,09``) limits it to some notebooks; on a failure, a
screenshot and the page's HTML go to the folder ``DLCOURSE_BROWSER_ARTIFACTS`` names, if set.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
SOLUTIONS = ROOT / "solutions"
WINDOW = {"width": 1366, "height": 768}
RUN_TIMEOUT_S = 600          # one notebook's cells, fast mode, on a busy 2-core machine
CHANGE_TIMEOUT_S = 90        # one redraw after a control moved (a sampler at 200 steps included)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Console messages that are not the course's: the browser asking the network for things it cannot reach.
IGNORED_CONSOLE = ("favicon", "net::ERR_", "Failed to load resource")


def _chromium() -> str | None:
    path = os.environ.get("DLCOURSE_CHROMIUM")
    if path:
        return path if Path(path).is_file() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _widget_notebooks() -> list[Path]:
    """Solution notebooks whose code uses dlcourse.widgets, optionally limited by DLCOURSE_BROWSER_NOTEBOOKS."""
    wanted = [w.strip() for w in os.environ.get("DLCOURSE_BROWSER_NOTEBOOKS", "").split(",") if w.strip()]
    found = []
    for path in sorted(SOLUTIONS.glob("*/*.ipynb")):
        if path.stem != path.parent.name or (wanted and not any(path.stem.startswith(w) for w in wanted)):
            continue
        cells = json.loads(path.read_text())["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        if "dlcourse.widgets" in code or "from dlcourse import widgets" in code:
            found.append(path)
    return found


NOTEBOOKS = _widget_notebooks()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def chromium_path():
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("browser test skipped: the Python package playwright is not installed "
                    "(pip install '.[browser]', or make test-browser)")
    path = _chromium()
    if path is None:
        pytest.skip("browser test skipped: no Chromium found (apt-get install chromium, or set DLCOURSE_CHROMIUM "
                    "to its path); never `playwright install`, which downloads a browser")
    return path


@pytest.fixture(scope="module")
def lab(tmp_path_factory, chromium_path):
    """A JupyterLab server on a free localhost port, in a temporary directory of notebook copies."""
    pytest.importorskip("jupyterlab", reason="browser test skipped: jupyterlab is not installed")
    home = tmp_path_factory.mktemp("lab")
    work = home / "work"
    work.mkdir()
    for path in NOTEBOOKS:
        shutil.copy(path, work / path.name)
    # Render every cell (JupyterLab otherwise renders only the cells near the viewport).
    settings = home / "settings" / "@jupyterlab"
    (settings / "notebook-extension").mkdir(parents=True)
    (settings / "notebook-extension" / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}))
    (settings / "apputils-extension").mkdir(parents=True)                 # no "news?" pop-up over the page
    (settings / "apputils-extension" / "notification.jupyterlab-settings").write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, DLCOURSE_FAST="1", JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), JUPYTER_CONFIG_DIR=str(home / "config"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), PYTHONPATH=str(ROOT))
    env.pop("NBGRADER_EXECUTION", None)
    env.pop("MPLBACKEND", None)                                   # the kernel's own inline backend
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}", "--ServerApp.ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}",
           "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "getuid") and os.getuid() == 0:
        cmd.append("--allow-root")
    log = open(home / "lab.log", "w")
    server = subprocess.Popen(cmd, cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"JupyterLab did not start:\n{(home / 'lab.log').read_text()[-3000:]}")
            time.sleep(1)
        yield {"url": url, "token": token, "log": home / "lab.log"}
    finally:
        _shutdown_kernels(url, token)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def _shutdown_kernels(url: str, token: str) -> None:
    """Shut down every kernel of the server (each notebook's, once it has been checked)."""
    try:
        with urllib.request.urlopen(f"{url}/api/kernels?token={token}", timeout=10) as r:
            kernels = json.load(r)
        for k in kernels:
            request = urllib.request.Request(f"{url}/api/kernels/{k['id']}?token={token}", method="DELETE")
            urllib.request.urlopen(request, timeout=30).close()
    except OSError:
        pass


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


# --- JavaScript run in the page -----------------------------------------------------------------

STATUS_JS = """() => {
  const app = window.jupyterapp;
  const panel = app && app.shell.currentWidget;
  if (!panel || !panel.content || !panel.sessionContext) return {ready: false};
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = panel.content.widgets.filter(c => c.model.type === 'code');
  const errors = [];
  for (const c of cells) {
    for (const o of c.model.outputs.toJSON()) {
      if (o.output_type === 'error') errors.push(`${o.ename}: ${o.evalue}`);
    }
  }
  return {ready: true, kernel: kernel ? kernel.status : 'none', errors,
          pending: cells.filter(c => c.model.executionCount === null).length,
          running: cells.filter(c => (c.promptNode && c.promptNode.textContent.includes('*'))).length};
}"""

# Every widget output of the notebook, and for the explorers (a picture and a control) their layout.
WIDGET_OUTPUT = ".jp-OutputArea-output:has(> .jupyter-widgets)"
WIDGETS_JS = """() => {
  const outputs = [...document.querySelectorAll(WIDGET_OUTPUT)];
  return outputs.map((el, i) => {
    const box = el.getBoundingClientRect();
    const imgs = [...el.querySelectorAll('img')].map(img => {
      const r = img.getBoundingClientRect();
      const parent = img.parentElement.getBoundingClientRect();
      return {natural: [img.naturalWidth, img.naturalHeight], shown: [r.width, r.height], top: r.top,
              room: parent.width, loaded: img.complete && img.naturalWidth > 0};
    });
    // rows of captioned pictures: an HBox of VBoxes, each a picture above a caption
    const rows = [...el.querySelectorAll('.widget-hbox')].map(row => [...row.children]).filter(cols =>
        cols.length > 1 && cols.every(c => c.classList.contains('widget-vbox') && c.querySelector(':scope > img')
                                           && c.children.length === 2))
      .map(cols => cols.map(c => ({img: c.children[0].getBoundingClientRect().top,
                                   caption: c.children[1].getBoundingClientRect().top})));
    return {index: i, text: el.innerText.slice(0, 300), height: box.height, imgs, rows,
            danger: el.querySelectorAll('.progress-bar-danger').length,
            progress: el.querySelectorAll('.widget-progress').length,
            controls: el.querySelectorAll('.widget-slider, .widget-dropdown, .widget-toggle-buttons, '
                                          + '.widget-play, .widget-inline-hbox input[type=number]').length};
  });
}""".replace("WIDGET_OUTPUT", repr(WIDGET_OUTPUT))


def _srcs(output) -> list[str]:
    return output.eval_on_selector_all("img", "imgs => imgs.map(i => i.src)")


def _wait_for_change(page, output, before: list[str], what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < CHANGE_TIMEOUT_S:
        if _srcs(output) != before:
            return time.monotonic() - start
        page.wait_for_timeout(100)
    raise AssertionError(f"{what}: the picture did not change within {CHANGE_TIMEOUT_S} s")


def _controls(page, output):
    """(description, action) for every control of one widget output.

    An explorer with a button (a "Generate" that draws what the controls set) is given each
    control's change and then a press of that button, as a learner would.
    """
    actions = []
    for i, slider in enumerate(output.query_selector_all(".widget-slider")):
        def move(slider=slider):
            track = slider.query_selector(".noUi-base") or slider.query_selector(".slider")
            handle = slider.query_selector(".noUi-handle")
            t, h = track.bounding_box(), handle.bounding_box()
            # click the track a fifth of its length away from the handle, towards the far side
            x = h["x"] + h["width"] / 2
            target = x - t["width"] / 5 if x > t["x"] + t["width"] / 2 else x + t["width"] / 5
            page.mouse.click(target, t["y"] + t["height"] / 2)
        actions.append((f"slider {i} ({slider.inner_text().strip()[:30]!r})", move))
    for i, select in enumerate(output.query_selector_all(".widget-dropdown select")):
        def choose(select=select):
            options = select.eval_on_selector_all("option", "os => os.map(o => o.value)")
            current = select.eval_on_selector(":scope", "s => s.value")
            select.select_option(next(o for o in options if o != current))
        actions.append((f"dropdown {i}", choose))
    for i, group in enumerate(output.query_selector_all(".widget-toggle-buttons")):
        def press(group=group):
            group.query_selector("button:not(.mod-active)").click()
        actions.append((f"toggle buttons {i}", press))
    for i, box in enumerate(output.query_selector_all(".widget-inline-hbox input[type=number]")):
        def type_(box=box):
            value = int(float(box.input_value()))
            low, high = box.get_attribute("min"), box.get_attribute("max")
            new = value + 1 if high is None or value + 1 <= float(high) else value - 1
            if low is not None and new < float(low):
                return
            box.fill(str(new))
            box.press("Enter")
        actions.append((f"number box {i}", type_))
    buttons = [b for b in output.query_selector_all(".widget-button")
               if not b.evaluate("b => !!b.closest('.widget-play, .widget-toggle-buttons')")]
    if buttons:
        def then_press(act, button=buttons[0]):
            def both():
                act()
                page.wait_for_timeout(300)
                button.click()
            return both
        actions = [(f"{what}, then {buttons[0].inner_text().strip()!r}", then_press(act)) for what, act in actions]
    for i, play in enumerate(output.query_selector_all(".widget-play")):
        def press_play(play=play):
            play.query_selector("button").click()
        actions.append((f"Play {i}", press_play))
    return actions


@pytest.mark.skipif(not NOTEBOOKS, reason="no solution notebook uses dlcourse.widgets")
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_widgets_render_and_respond(notebook, lab, browser):
    page = browser.new_page(viewport=WINDOW)
    console = []
    page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: console.append(f"page error: {e}"))
    start = time.monotonic()
    try:
        # a workspace of its own, reset: JupyterLab reopens no notebook checked before (nor starts its kernel)
        page.goto(f"{lab['url']}/lab/workspaces/{notebook.stem}/tree/{notebook.name}?reset&token={lab['token']}",
                  timeout=120_000)
        page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                               "&& window.jupyterapp.shell.currentWidget.sessionContext", timeout=120_000)
        page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.ready")
        page.wait_for_function("() => { const k = window.jupyterapp.shell.currentWidget.sessionContext.session; "
                               "return k && k.kernel && k.kernel.status === 'idle'; }", timeout=120_000)
        page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
        status = {}
        while time.monotonic() - start < RUN_TIMEOUT_S:
            page.wait_for_timeout(2000)
            status = page.evaluate(STATUS_JS)
            if status.get("errors"):
                pytest.fail(f"{notebook.stem}: a cell raised {status['errors'][0]}")
            if status.get("ready") and status["pending"] == 0 and status["running"] == 0 and status["kernel"] == "idle":
                break
        else:
            pytest.fail(f"{notebook.stem}: cells still running after {RUN_TIMEOUT_S} s: {status}")
        ran = time.monotonic() - start
        page.wait_for_timeout(1500)                                   # the last outputs' views render

        notebook_text = page.inner_text(".jp-NotebookPanel")
        assert "Error displaying widget" not in notebook_text, f"{notebook.stem}: a widget failed to display"
        outputs = page.query_selector_all(WIDGET_OUTPUT)
        infos = page.evaluate(WIDGETS_JS)
        assert outputs and len(infos) == len(outputs), f"{notebook.stem}: no widget was displayed"
        explorers = 0
        timings = []
        for output, info in zip(outputs, infos):
            name = f"{notebook.stem}, widget {info['index']}"
            assert "Error displaying widget" not in info["text"], f"{name}: {info['text']}"
            assert info["danger"] == 0, f"{name}: a progress bar ended red: {info['text']}"
            if not info["imgs"] or not info["controls"]:
                continue                                              # a progress bar, a label
            explorers += 1
            output.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            info = page.evaluate(WIDGETS_JS)[info["index"]]
            for img in info["imgs"]:
                assert img["loaded"], f"{name}: a picture did not load"
                (nw, nh), (w, h) = img["natural"], img["shown"]
                if nw <= img["room"]:
                    assert abs(w - nw) <= 1 and abs(h - nh) <= 1, \
                        f"{name}: a {nw} x {nh} picture is shown at {w:.0f} x {h:.0f}, not at its own size"
                else:
                    assert abs(w / h - nw / nh) < 0.02, f"{name}: a picture narrowed out of proportion"
            sizes = {}
            for img in info["imgs"]:
                sizes.setdefault(tuple(img["natural"]), set()).add(tuple(round(v) for v in img["shown"]))
            assert all(len(s) == 1 for s in sizes.values()), f"{name}: pictures of one size shown at several: {sizes}"
            for row in info["rows"]:
                assert max(c["img"] for c in row) - min(c["img"] for c in row) <= 1, f"{name}: pictures not aligned"
                assert max(c["caption"] for c in row) - min(c["caption"] for c in row) <= 1, \
                    f"{name}: captions at different heights: {row}"
            assert info["height"] <= WINDOW["height"], \
                f"{name}: {info['height']:.0f} px tall, more than the {WINDOW['height']} px window"
            for what, act in _controls(page, output):
                before = _srcs(output)
                act()
                timings.append((what, _wait_for_change(page, output, before, f"{name}, {what}")))
                if what.startswith("Play"):
                    output.query_selector(".widget-play button:nth-child(2)").click()   # pause
                page.wait_for_timeout(500)
        assert explorers, f"{notebook.stem}: no explorer (a picture with a control) among its widgets"
        errors = [c for c in console if not any(s in c for s in IGNORED_CONSOLE)]
        assert not errors, f"{notebook.stem}: the page logged errors: {errors[:5]}"
        slowest = max(timings, key=lambda t: t[1])
        print(f"{notebook.stem}: ran in {ran:.0f} s; {explorers} explorer(s), {len(timings)} controls, "
              f"slowest redraw {slowest[1]:.1f} s ({slowest[0]}); total {time.monotonic() - start:.0f} s")
    except BaseException as e:
        artifacts = os.environ.get("DLCOURSE_BROWSER_ARTIFACTS")
        if artifacts:                                                 # what the page showed, to look at
            Path(artifacts).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(artifacts) / f"{notebook.stem}.png"), full_page=True)
            (Path(artifacts) / f"{notebook.stem}.html").write_text(page.content())
            (Path(artifacts) / f"{notebook.stem}.txt").write_text(f"{type(e).__name__}: {e}\n\n" + "\n".join(console))
        raise
    finally:
        page.close()
        _shutdown_kernels(lab["url"], lab["token"])
