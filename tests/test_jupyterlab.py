"""The notebooks as readers meet them: in a real JupyterLab, in a real (headless) browser.

A JupyterLab server starts on 127.0.0.1 with its own port and token, over a copy of notebooks/; Debian's
Chromium, driven by selenium, opens each notebook in a new kernel, clears the stored outputs and runs every cell
from the menus, and checks that no cell wrote to stderr (no traceback, no warning), that no widget is shown
as raw text, and that chapter 04's user picker renders as controls whose list changes with the user.
Skipped, with the reason, when no browser is installed (``apt-get install chromium chromium-driver``).

What is checked here is what JupyterLab shows, not the training again: nbval runs every notebook's defaults, so
every chapter runs here with its first set of other parameters (tests/notebook_parameters.py, injected as papermill
would, with a scratch data folder) -- the set papermill then leaves to this test (tests/test_notebook_parameters.py).
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from notebook_parameters import PARAMETER_SETS

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER),
                                reason="no browser: apt-get install chromium chromium-driver to run the JupyterLab tests")
webdriver = pytest.importorskip("selenium.webdriver")
papermill = pytest.importorskip("papermill")
from papermill.iorw import load_notebook_node  # noqa: E402
from papermill.parameterize import parameterize_notebook  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import Select  # noqa: E402

NOTEBOOKS = sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
SECONDS_PER_CELL = 300  # a cell that runs this long without finishing fails the test; a slow machine only waits longer
SETTINGS = {  # a fresh user-settings folder: every cell in the page, no autosave, no news pop-up
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, scratch_data):
    """A JupyterLab server over a copy of the notebooks, each with its first set of other parameters; stopped,
    with its kernels, at the end."""
    folder = tmp_path_factory.mktemp("lab")
    for name in NOTEBOOKS:
        parameters = {"DATA_DIR": str(scratch_data), **PARAMETER_SETS[Path(name).stem][0]}
        nbformat.write(parameterize_notebook(load_notebook_node(str(ROOT / "notebooks" / name)), parameters), folder / name)
    settings = tmp_path_factory.mktemp("settings")
    for name, values in SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), os.urandom(12).hex()
    log = open(folder / "jupyterlab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}", "--allow-root",
         f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={tmp_path_factory.mktemp('workspaces')}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("JupyterLab did not start within 60 s: " + (folder / "jupyterlab.log").read_text()[-2000:])
        yield f"http://127.0.0.1:{port}", token
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1000,700",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"):
        options.add_argument(argument)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=webdriver.ChromeService(CHROMEDRIVER), options=options)
    driver.set_script_timeout(30)
    yield driver
    driver.quit()


def wait_for(condition, seconds: float, what: str, progress=None):
    """Poll ``condition`` until it holds; fail after ``seconds`` -- counted afresh whenever ``progress()`` (what the
    page shows, such as the cells run so far) changes, so a slow machine makes the wait longer, not the test red."""
    deadline, seen = time.monotonic() + seconds, progress() if progress else None
    while time.monotonic() < deadline:
        result = condition()
        if progress and (now := progress()) != seen:
            deadline, seen = time.monotonic() + seconds, now
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {seconds:.0f} s {'with nothing new ' if progress else ''}waiting for {what}")


VISIBLE = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in front (others may stay in the page)


def texts(driver, selector: str) -> list[str]:
    """The text of every element matching ``selector``, read in one go in the page (cells re-render)."""
    return driver.execute_script("return Array.from(document.querySelectorAll(arguments[0])).map(e => e.innerText.trim())",
                                 selector)


def prompts(driver) -> list[str]:
    return texts(driver, f"{VISIBLE} .jp-CodeCell .jp-InputPrompt")


def menu(driver, title: str, command: str):
    driver.find_element(By.XPATH, f"//div[contains(@class, 'lm-MenuBar-itemLabel') and text()='{title}']").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, f"li[data-command='{command}']"), 10, f"the {title} menu")[0].click()


def clear_and_run_all(driver):
    """Edit > Clear Outputs of All Cells, then Run > Run All Cells, in the kernel the notebook just started: every
    output comes from this run. (Not Kernel > Restart: a restart right after the kernel started can lose the next
    request between page and server on a loaded machine, and leave every cell waiting.) Run All is given again when
    it has queued no cell 30 s later: JupyterLab's Run All skips every cell, silently, while the page's session has no
    kernel yet, though the status bar may already say Idle (seen in about one notebook in ten on a loaded machine).
    Not sooner: after 10 s, a first Run All still starting its kernel was seen to open JupyterLab's Select Kernel
    dialog over the second, and every cell waited."""
    select_kernel_if_asked(driver)
    menu(driver, "Edit", "editmenu:clear-all")
    wait_for(lambda: all(p in ("[ ]:", "") for p in prompts(driver)), 120, "the outputs to clear")
    for _ in range(3):
        select_kernel_if_asked(driver)
        menu(driver, "Run", "runmenu:run-all")
        try:
            wait_for(lambda: not select_kernel_if_asked(driver) and any(p not in ("[ ]:", "") for p in prompts(driver)),
                     30, "the first cell to be queued")
            return
        except AssertionError:
            continue
    raise AssertionError("Run > Run All Cells queued no cell, three times in a minute and a half")


def select_kernel_if_asked(driver) -> bool:
    """Answer JupyterLab's *Select Kernel* dialog as a reader would, with the kernel it offers (Python 3), and say
    whether it was shown. JupyterLab asks when the start of the notebook's kernel did not answer in time (seen on a
    loaded machine, about one notebook in twenty): the dialog sits over the page and no cell runs until it is
    answered."""
    for dialog in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog"):
        if "Select Kernel" in dialog.text:
            dialog.find_element(By.CSS_SELECTOR, ".jp-Dialog-button.jp-mod-accept").click()
            return True
    return False


def shut_down_kernels(url: str, token: str):
    """End every session of the server (its kernel with it), as File > Shut Down would: one kernel at a time."""
    def call(method: str, path: str):
        request = urllib.request.Request(f"{url}/api/{path}", method=method, headers={"Authorization": f"token {token}"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read() or b"null")

    for session in call("GET", "sessions"):
        call("DELETE", f"sessions/{session['id']}")


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_clean_in_jupyterlab(lab, browser, name, tmp_path):
    url, token = lab
    shut_down_kernels(url, token)  # the last notebook's: one kernel at a time, as on a student's laptop
    browser.get(f"{url}/lab/tree/{name}?reset&token={token}")  # reset: only this notebook open
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, f"{VISIBLE} .jp-CodeCell"), 180, f"{name} to open")
    wait_for(lambda: "Idle" in browser.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget, #jp-main-statusbar").text
             or browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook-ExecutionIndicator[data-status='idle']"), 180, "the kernel")
    clear_and_run_all(browser)

    reruns = []

    def every_cell_ran() -> bool:
        if select_kernel_if_asked(browser):  # the kernel was lost and JupyterLab asks for one: start it, run it all again
            clear_and_run_all(browser)
        shown = prompts(browser)
        if all(p and p not in ("[ ]:", "[*]:") for p in shown):
            return True
        # Run All over, the kernel idle, and a cell never run while those after it ran (seen once in a loaded clean-clone
        # run: chapter 00's fourth cell): JupyterLab dropped it. Cleared and run again, all of it, once.
        if "[*]:" not in shown and "[ ]:" in shown and shown[-1] not in ("[ ]:", "") and not reruns \
                and "Idle" in browser.find_element(By.CSS_SELECTOR, ".jp-StatusBar-Widget, #jp-main-statusbar").text:
            reruns.append(list(shown))
            clear_and_run_all(browser)
        return False

    try:
        wait_for(every_cell_ran, SECONDS_PER_CELL, f"every cell of {name} to run",
                 progress=lambda: sum(p not in ("[ ]:", "[*]:") for p in prompts(browser)))
    except AssertionError as timeout:
        browser.save_screenshot(str(tmp_path / "timeout.png"))
        raise AssertionError(f"{timeout}; prompts: {prompts(browser)} (before running it all again: {reruns}); "
                             f"screenshot: {tmp_path / 'timeout.png'}") from None
    stderr = [text[:300] for text in texts(browser, f"{VISIBLE} [data-mime-type='application/vnd.jupyter.stderr']")]
    assert stderr == [], f"{name} wrote to stderr: {stderr}"
    outputs = " ".join(texts(browser, f"{VISIBLE} .jp-OutputArea-output"))
    assert "VBox(children" not in outputs and "HBox(children" not in outputs, f"{name} shows a widget as raw text"
    if name.startswith("04"):
        check_the_user_picker(browser)


def check_the_user_picker(driver):
    picker = wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"), 30, "the user picker")[0]
    shown = f"{VISIBLE} .widget-vbox .widget-output"

    def listed():
        found = texts(driver, shown)
        return found[-1] if found else ""

    before = wait_for(listed, 30, "the picker's first list")
    Select(picker).select_by_visible_text("1")
    after = wait_for(lambda: listed() if listed() and listed() != before else None, 60, "the list to change with the user")
    assert after.startswith("user 1:") and before != after
