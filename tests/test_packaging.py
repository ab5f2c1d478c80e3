"""What `pip install discffusion` gives a user: every module importable with the declared requirements, and the
embedded model inside the wheel. The test environment installs the dev extras too, so a module that imports a
dev-only package (ipywidgets once was one) passes every other test and fails for a pip user; these checks read
the declared requirements instead of the environment."""
import ast, shutil, subprocess, sys, zipfile
from configparser import ConfigParser
from importlib.metadata import packages_distributions
from pathlib import Path
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
OPTIONAL = {'datasets'}   # imported inside a function, with an error that says to install it (Winoground folders)

def declared(key: str = 'requirements') -> set[str]:
    "Canonical names of the distributions `settings.ini` declares under `key`."
    cfg = ConfigParser(delimiters=['=']); cfg.read(ROOT/'settings.ini', encoding='utf-8')
    return {canonicalize_name(Requirement(r).name) for r in cfg['DEFAULT'][key].split()}

def imported_modules() -> dict[str, set[str]]:
    "{top-level module: files of the package importing it}, for modules outside the standard library."
    out = {}
    for f in sorted((ROOT/'discffusion').glob('*.py')):
        for node in ast.walk(ast.parse(f.read_text(encoding='utf-8'))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
            for n in names: out.setdefault(n.split('.')[0], set()).add(f.name)
    return {m: fs for m, fs in out.items() if m not in sys.stdlib_module_names and m != 'discffusion'}

def test_every_import_is_a_declared_requirement():
    dists, required = packages_distributions(), declared()
    missing = {m: sorted(fs) for m, fs in imported_modules().items()
               if m not in OPTIONAL and not {canonicalize_name(d) for d in dists.get(m, [m])} & required}
    assert not missing, f"imported by the package but not in settings.ini's requirements: {missing}"

def test_the_check_sees_a_dev_only_import():
    # the check above would have caught ipywidgets: imported by visualize.py, declared only in dev_requirements
    assert 'visualize.py' in imported_modules()['ipywidgets']
    assert 'ipywidgets' in declared('dev_requirements')

def tracked_files() -> list[str]:
    "The repository's tracked files (as a clone that `pip install git+...` builds from holds them)."
    return subprocess.run(['git', 'ls-files'], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()

def test_wheel_holds_the_embedded_model(tmp_path):
    src = tmp_path/'src'   # a copy, so the build leaves no build/ folder in the checkout
    # --no-build-isolation: build with this environment's setuptools and wheel (dev requirements), offline
    for f in tracked_files():
        if (ROOT/f).is_file(): (src/f).parent.mkdir(parents=True, exist_ok=True); shutil.copy2(ROOT/f, src/f)
    subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '--no-build-isolation', '-w',
                    str(tmp_path), str(src)], check=True, cwd=tmp_path)
    wheel, = tmp_path.glob('discffusion-*.whl')
    names, package = set(zipfile.ZipFile(wheel).namelist()), [f for f in tracked_files() if f.startswith('discffusion/')]
    assert package and not set(package) - names, sorted(set(package) - names)[:5]
    assert 'discffusion/assets/shapes-sd/unet/diffusion_pytorch_model.safetensors' in names
