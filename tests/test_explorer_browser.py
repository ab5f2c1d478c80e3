"""The explorer in a real browser: JupyterLab on 127.0.0.1 (with a token, in a temporary folder) serves a one-cell
notebook that shows `explorer()`; Debian's Chromium, driven by Playwright, runs the cell, picks another colour and
checks that the scores, the captions and the heat maps are redrawn. `playwright install` is never run (it downloads
a browser); `.ci/run` installs Debian's `chromium`. Set DISCFFUSION_SCREENSHOTS to a folder to keep the screenshots."""
import importlib.util, json, os, secrets, socket, subprocess, sys, time, urllib.request
from contextlib import contextmanager
from pathlib import Path
import pytest

CHROMIUM = '/usr/bin/chromium'
FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run']
ROOT = Path(__file__).resolve().parents[1]
CELL = "from discffusion.visualize import explorer\nexplorer(device='cpu')"

def free_port() -> int:
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors='replace')[-n:] if path.exists() else '(no log)'

def write_folder(root: Path):
    "The notebook, and JupyterLab settings that keep it from fetching news or checking for updates."
    cell = {'cell_type': 'code', 'execution_count': None, 'id': 'explorer', 'metadata': {}, 'outputs': [],
            'source': CELL}
    kernel = {'display_name': 'Python 3', 'language': 'python', 'name': 'python3'}
    (root/'work').mkdir()
    (root/'work'/'explorer.ipynb').write_text(json.dumps({'cells': [cell], 'metadata': {'kernelspec': kernel},
                                                          'nbformat': 4, 'nbformat_minor': 5}))
    settings = root/'settings'/'@jupyterlab'/'apputils-extension'
    settings.mkdir(parents=True)
    quiet = {'fetchNews': 'false', 'checkForUpdates': False}
    (settings/'notification.jupyterlab-settings').write_text(json.dumps(quiet))

def api(base: str, token: str, path: str, method: str = 'GET'):
    "A call to the Jupyter server's REST API, decoded."
    req = urllib.request.Request(f'{base}/api/{path}', method=method, headers={'Authorization': f'token {token}'})
    with urllib.request.urlopen(req, timeout=5) as r: body = r.read()
    return json.loads(body) if body else None

def server_env(root: Path) -> dict:
    "This checkout first on the kernel's path; Jupyter's settings, workspaces and runtime files in `root`."
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get('PYTHONPATH')]))
    return os.environ | {'PYTHONPATH': path, 'HF_HUB_OFFLINE': '1', 'OMP_NUM_THREADS': '1',
                         'JUPYTERLAB_SETTINGS_DIR': str(root/'settings'),
                         'JUPYTERLAB_WORKSPACES_DIR': str(root/'workspaces'), 'JUPYTER_RUNTIME_DIR': str(root/'runtime'),
                         'JUPYTER_CONFIG_DIR': str(root/'config')}

def wait_for_server(proc, base: str, token: str, log: Path, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None: raise AssertionError(f"JupyterLab exited with code {proc.returncode}:\n{tail(log)}")
        try: return api(base, token, 'status')
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(f"JupyterLab not answering on {base} after {timeout:.0f} s:\n{tail(log)}")
            time.sleep(0.5)

@contextmanager
def jupyter_lab(root: Path):
    "A JupyterLab server on a free port of 127.0.0.1; yields (base url, token, log path)."
    token, port, log = secrets.token_hex(16), free_port(), root/'jupyter.log'
    cmd = [sys.executable, '-m', 'jupyter', 'lab', '--no-browser', '--ip=127.0.0.1', f'--port={port}', '--allow-root',
           '--ServerApp.port_retries=0', f'--IdentityProvider.token={token}', f'--ServerApp.root_dir={root/"work"}']
    with open(log, 'w') as out: proc = subprocess.Popen(cmd, env=server_env(root), stdout=out, stderr=subprocess.STDOUT)
    base = f'http://127.0.0.1:{port}'
    try:
        wait_for_server(proc, base, token, log)
        yield base, token, log
    finally:
        try:
            for k in api(base, token, 'kernels'): api(base, token, f'kernels/{k["id"]}', 'DELETE')
        except OSError: pass
        proc.terminate()
        try: proc.wait(20)
        except subprocess.TimeoutExpired: proc.kill(); proc.wait()

def wait_kernel_idle(base: str, token: str, timeout: float):
    "Wait until the notebook's kernel exists and is idle (asked of the server, not guessed with sleeps)."
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kernels = api(base, token, 'kernels')
        if kernels and all(k['execution_state'] == 'idle' for k in kernels): return
        time.sleep(0.5)
    raise AssertionError(f"kernel not idle after {timeout:.0f} s: {api(base, token, 'kernels')}")

@pytest.fixture
def screenshots(tmp_path):
    "Where screenshots go: DISCFFUSION_SCREENSHOTS if set, else the test's temporary folder."
    folder = Path(os.environ.get('DISCFFUSION_SCREENSHOTS') or tmp_path/'screenshots')
    folder.mkdir(parents=True, exist_ok=True)
    return folder

class Steps:
    "Named browser steps: each prints its time; a failure names the step and keeps a screenshot and the server log."
    def __init__(self, page, folder: Path, log: Path):
        self.page, self.folder, self.log, self.t0 = page, folder, log, time.monotonic()

    def __call__(self, name: str, fn, timeout_ms: int = 60_000):
        try: out = fn(timeout_ms)
        except Exception as e:
            shot = self.folder/'explorer-failed.png'
            self.page.screenshot(path=str(shot), full_page=True)
            raise AssertionError(f"browser step '{name}' failed: {e}\nscreenshot: {shot}\n"
                                 f"JupyterLab log:\n{tail(self.log)}") from None
        print(f'{time.monotonic() - self.t0:5.1f} s  {name}')
        return out

def test_explorer_in_jupyterlab_redraws_when_a_control_moves(tmp_path, screenshots):
    if not Path(CHROMIUM).exists() or importlib.util.find_spec('jupyterlab') is None:
        pytest.fail(f"needs Debian's chromium at {CHROMIUM} and JupyterLab "
                    "(`apt-get install chromium`, `pip install -e .[dev]`; .ci/run does both)")
    from playwright.sync_api import sync_playwright
    write_folder(tmp_path)
    with jupyter_lab(tmp_path) as (base, token, log), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={'width': 1700, 'height': 1100})
        step = Steps(page, screenshots, log)
        step('open the notebook', lambda t: page.goto(f'{base}/lab/tree/explorer.ipynb?token={token}', timeout=t))
        step('see the cell', lambda t: page.wait_for_selector('.jp-Notebook .jp-Cell .cm-content', timeout=t))
        step('kernel idle', lambda t: wait_kernel_idle(base, token, t / 1000))
        step('run the cell', lambda t: (page.click('.jp-Notebook .jp-Cell .cm-content', timeout=t),
                                        page.keyboard.press('Shift+Enter')))
        status = step('explorer drawn', lambda t: page.wait_for_selector('.dsd-status >> text=best:', timeout=t))
        assert 'a red circle left of a blue square' in status.inner_text() and 'update 1' in status.inner_text()
        heatmaps = page.locator('.dsd-heatmaps').get_attribute('src')
        page.screenshot(path=str(screenshots/'explorer-before.png'), full_page=True)
        step('pick green', lambda t: page.select_option('.dsd-color1 select', 'green', timeout=t))
        step('explorer redrawn', lambda t: page.wait_for_function(
            "() => (document.querySelector('.dsd-status') || {}).innerText?.includes('update 2')", timeout=t))
        step('kernel idle after the update', lambda t: wait_kernel_idle(base, token, t / 1000))
        status = page.locator('.dsd-status').inner_text()
        assert 'Error' not in status and 'a green circle left of a blue square' in status, \
            f"the status should name the new scene's caption, got {status!r}"
        assert page.locator('.dsd-heatmaps').get_attribute('src') != heatmaps, "the heat-map image was not redrawn"
        captions = page.locator('.dsd-captions textarea').input_value()
        assert captions.startswith('a green circle left of a blue square\n'), f"captions not rewritten: {captions!r}"
        page.screenshot(path=str(screenshots/'explorer-after.png'), full_page=True)
        browser.close()
