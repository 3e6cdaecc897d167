"""The kit in a real browser: JupyterLab in headless Chromium runs notebook 01 with Run All, as a learner would.

Debian's ``chromium-headless-shell`` (apt), driven by Playwright for Python through ``executable_path``
(Playwright's own browser download needs the internet). JupyterLab serves a copy of the notebook (its autosave
never touches ``notebooks/``) on a private 1-node sandbox. The kernel has a real frontend here, so waits show
labkit's ipywidgets progress view instead of the plain lines ``labkit run`` saves. After Run All has finished,
the test checks the page and the notebook JupyterLab saved:

- every code cell ran (a number in each prompt, none left at ``[*]``) and no output is an error;
- the final checks cell printed ``all checks passed``;
- the progress widget rendered (``.labkit-progress``, with its text) and no "Error displaying widget";
- the page raised no uncaught JavaScript error.

Locally the test skips when Playwright, Chromium or JupyterLab is missing. In CI (``CI`` set) it fails instead:
``.ci/run`` installs all three, so a missing one is a broken CI, not a reason to skip.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from labkit import config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path(os.environ.get("LABKIT_CHROMIUM", "/usr/bin/chromium-headless-shell"))
NOTEBOOK = config.project_root() / "notebooks" / "01-wasi-demo-app.ipynb"
TOKEN = "labkit-browser-test"
RUN_ALL_TIMEOUT_S = 420  # the notebook takes ~25 s on the sandbox; its own waits are bounded by timeout_s=120
#: JupyterLab settings for the run: every cell stays in the page (JupyterLab 4 otherwise detaches cells
#: scrolled out of view), and no "Jupyter news?" toast over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}


def missing_pieces() -> list[str]:
    missing = []
    if importlib.util.find_spec("playwright") is None:
        missing.append("Playwright for Python (pip install -e '.[browser]'; ./lab setup installs it)")
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium-headless-shell)")
    if importlib.util.find_spec("jupyterlab") is None:
        missing.append("JupyterLab (the lab extra)")
    return missing


@pytest.fixture(scope="module", autouse=True)
def browser_available() -> None:
    missing = missing_pieces()
    if missing and os.environ.get("CI"):
        pytest.fail(f"CI must run the browser test, but these are missing: {'; '.join(missing)}", pytrace=False)
    if missing:
        pytest.skip(f"no browser here: missing {'; '.join(missing)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def jupyterlab(private_sandbox: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """JupyterLab serving a copy of notebook 01, its kernels on the private sandbox; yields (notebook URL, copy)."""
    root = tmp_path / "notebooks"
    root.mkdir()
    copy = Path(shutil.copy2(NOTEBOOK, root / NOTEBOOK.name))
    settings = tmp_path / "lab-settings"
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    env = {
        **os.environ,  # LABKIT_HOME from private_sandbox: the kernel reaches that sandbox, not ~/.labkit's
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data"),  # only this environment's kernels (sys.prefix)
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "jupyter-runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(settings),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "lab-workspaces"),
    }
    env.pop("LABKIT_PROGRESS", None)  # the kernel must choose the widget view itself, as for a learner
    port = free_port()
    log = tmp_path / "jupyterlab.log"
    args = [f"--port={port}", "--no-browser", "--allow-root", f"--IdentityProvider.token={TOKEN}",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.root_dir={root}"]  # fmt: skip
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while server.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api", timeout=2):
                    break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail(f"JupyterLab did not answer (exit {server.poll()}):\n{log.read_text()[-3000:]}")
        yield f"http://127.0.0.1:{port}/lab/tree/{copy.name}?token={TOKEN}", copy
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)  # the server and the kernels it started
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


#: True once Run All is over: no prompt reads [*], and every code cell has a number or an error was shown
#: (JupyterLab stops Run All at the first error).
RUN_ALL_FINISHED = """(codeCells) => {
  const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim());
  if (prompts.some(p => p.includes('*'))) return false;
  const numbered = prompts.filter(p => /\\[\\d+\\]/.test(p)).length;
  const failed = document.querySelector('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]');
  const idle = document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]');
  return Boolean(idle) && (numbered === codeCells || Boolean(failed));
}"""
KERNEL_READY = """() => {
  const name = document.querySelector('.jp-NotebookPanel-toolbar .jp-KernelName, .jp-Toolbar-kernelName');
  return name && !name.textContent.includes('No Kernel')
    && document.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]') !== null;
}"""


def test_run_all_of_notebook_01_renders_outputs_and_the_progress_widget(jupyterlab, tmp_path):
    from playwright.sync_api import sync_playwright

    url, copy = jupyterlab
    code_cells = sum(cell.cell_type == "code" for cell in nbformat.read(copy, as_version=4).cells)
    page_errors: list[str] = []
    shot = tmp_path / "jupyterlab.png"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM))
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.goto(url)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
            page.wait_for_function(KERNEL_READY, timeout=90_000)

            # Run All as a person does it: the Run menu, then "Run All Cells".
            page.get_by_role("menuitem", name="Run", exact=True).click()
            page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
            page.wait_for_function(RUN_ALL_FINISHED, arg=code_cells, timeout=RUN_ALL_TIMEOUT_S * 1000, polling=1000)

            prompts = page.eval_on_selector_all(".jp-CodeCell .jp-InputPrompt", "els => els.map(e => e.textContent)")
            stderr_shown = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
            stderr_texts = [text[:300] for text in stderr_shown.all_inner_texts()]
            checks_shown = page.locator(".jp-OutputArea-output", has_text="all checks passed").count()
            widgets = page.locator(".jupyter-widgets.labkit-progress")
            widget_count = widgets.count()
            widget_text = widgets.first.inner_text() if widget_count else ""
            broken_widgets = page.locator(".jp-OutputArea-output", has_text="Error displaying widget").count()

            # Save as a person would (the toolbar's save button), then read what JupyterLab wrote.
            page.locator(".jp-NotebookPanel-toolbar [data-command='docmanager:save']").click()
            page.wait_for_selector(".jp-mod-dirty", state="detached", timeout=30_000)
            page.screenshot(path=str(shot))
        finally:
            browser.close()

    saved = nbformat.read(copy, as_version=4)
    saved_code = [cell for cell in saved.cells if cell.cell_type == "code"]
    error_outputs = [
        f"{output.get('ename')}: {output.get('evalue')}"
        for cell in saved_code
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    unexecuted = [i for i, cell in enumerate(saved_code) if cell.get("execution_count") is None]
    widget_views = [
        output
        for cell in saved_code
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    ]
    seen = f"(screenshot: {shot})"

    assert error_outputs == [], f"error outputs in the browser run {seen}"
    assert stderr_texts == [], f"the page shows error or stderr output {seen}"
    assert unexecuted == [] and not any("*" in p for p in prompts), f"cells left unexecuted {seen}: {prompts}"
    assert len(prompts) == code_cells, f"{len(prompts)} prompts on the page for {code_cells} code cells {seen}"
    assert checks_shown == 1, f"the checks cell's 'all checks passed' is not on the page {seen}"
    assert any("all checks passed" in output.get("text", "") for cell in saved_code for output in cell.outputs)
    assert widget_views, f"no widget output was displayed (the kernel chose plain progress lines) {seen}"
    assert widget_count >= 1 and "waiting for" in widget_text, (
        f"the progress widget did not render: {widget_count} .labkit-progress element(s), text {widget_text!r} {seen}"
    )
    assert broken_widgets == 0, f"{broken_widgets} widget(s) failed to render {seen}"
    assert page_errors == [], f"uncaught JavaScript errors on the page {seen}"
