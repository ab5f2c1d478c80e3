"""Build the documentation site offline: `python tools/build_docs.py [--out _site] [--workers N]`.

The notebooks go through nbdev's docs processors (`nbdev.serve.proc_nbs`, what `nbdev_preview` and `nbdev_docs`
run before Quarto: `#| hide` and `#| export` cells dropped, `show_doc` run for the API entries), then through
mkdocs-material with mkdocs-jupyter, which renders them with their stored outputs. Quarto's markdown conventions
that mkdocs-jupyter does not know (`#| echo: false`, `output: asis`, link attributes, links to the Quarto site) are
translated here. Everything the pages load is served by the site itself: MathJax 3 from the `mathjax` npm package
(`docs/_npm/package.json`; installed with `npm ci --prefix docs/_npm` when missing), no web fonts,
no widget or require.js loaders. `nbdev_docs` remains the build where Quarto is installed.

Pages keep nbdev's names (`nbs/03_pooling.ipynb` -> `nbs/pooling.html`), so nbdev's cross-reference links point
into this site. The navigation lists `index.ipynb`, then `nbs/*.ipynb` by name, then each subfolder of `nbs/` the
same way; notebooks are discovered, never listed by hand.
"""
import argparse, json, os, re, shutil, subprocess, sys, tempfile, time
from configparser import ConfigParser
from pathlib import Path

import yaml
from nbdev.doclinks import _nbpath2html  # nbdev's page name for a notebook: the Quarto site and its links use it

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT/'docs'
NPM = DOCS/'_npm'  # the npm packages the site serves (`_`: nbdev's docs processors skip it)
MATHJAX = NPM/'node_modules/mathjax/es5'  # MathJax 3 as distributed, for browsers
MATHJAX_BUNDLE = 'tex-svg-full.js'  # TeX in, SVG out (no font files), every TeX extension inside
COLAB_BADGE = 'https://colab.research.google.com/assets/colab-badge.svg'

def _shown(rel):
    "nbdev's docs skip files and folders whose names start with `_` or `.` (checkpoints included)."
    return not any(part.startswith(('_', '.')) for part in Path(rel).parts)

def _candidate_files(root):
    "Files under `index.ipynb` and `nbs/` that git would commit (tracked, or untracked and not ignored)."
    if (root/'.git').exists():
        out = subprocess.run(['git', 'ls-files', '-co', '--exclude-standard', '--', 'index.ipynb', 'nbs'], cwd=root,
                             capture_output=True, text=True, check=True).stdout
        return [Path(l) for l in out.splitlines() if (root/l).is_file()]
    return [p.relative_to(root) for p in [root/'index.ipynb', *(root/'nbs').rglob('*')] if p.is_file()]

def _nav_key(rel):
    "Sort key: at each level of `nbs/`, notebooks by name before subfolders by name."
    return tuple((1, part) for part in rel.parts[:-1]) + ((0, rel.name),)

def source_notebooks(root=ROOT):
    "The notebooks the site shows, relative to `root`, in navigation order."
    nbs = [p for p in _candidate_files(root) if p.suffix == '.ipynb' and _shown(p)]
    index = [p for p in nbs if p == Path('index.ipynb')]
    return index + sorted((p for p in nbs if p.parts[0] == 'nbs'), key=_nav_key)

def page_path(rel):
    "Where notebook `rel` lands in the site's source folder: nbdev's page name, as a notebook."
    return _nbpath2html(Path(rel)).with_suffix('.ipynb')

def _rel_url(target, page):
    "URL of site path `target` from the page at site path `page`."
    return Path(os.path.relpath(target, Path(page).parent)).as_posix()

# ---------------------------------------------------------------------------------------------------------------
# 1. nbdev's processors, on a copy of the sources (the repository's own `_proc` stays untouched)

def stage_sources(root, dest):
    "Copy `settings.ini` and what `source_notebooks` draws from into `dest`."
    dest.mkdir(parents=True)
    shutil.copy2(root/'settings.ini', dest/'settings.ini')
    for rel in _candidate_files(root):
        if not _shown(rel): continue
        (dest/rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root/rel, dest/rel)

def run_nbdev_processors(src, workers, root=ROOT):
    "Run `nbdev.serve.proc_nbs` in `src` with `root`'s package importable; return the output folder."
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(filter(None, [str(root), os.environ.get('PYTHONPATH')])),
           'MPLBACKEND': 'Agg', 'HF_HUB_OFFLINE': '1'}
    code = f'from nbdev.serve import proc_nbs; proc_nbs(force=True, n_workers={int(workers)})'
    res = subprocess.run([sys.executable, '-c', code], cwd=src, env=env, capture_output=True, text=True)
    if res.returncode:
        raise SystemExit(f'build_docs: nbdev_proc_nbs failed (exit {res.returncode}):\n{res.stdout}{res.stderr}')
    return src/'_proc'

# ---------------------------------------------------------------------------------------------------------------
# 2. Quarto conventions -> what mkdocs-jupyter renders

DIRECTIVE = re.compile(r'^\s*#\|\s*([\w-]+)\s*:?\s*(.*?)\s*$')
LINK_ATTRS = re.compile(r'\[([^\]]+)\]\(([^)\s]+)\)\{((?:\s*[\w-]+="[^"]*")+)\s*\}')  # [text](url){key="value"}
NB_LINK = re.compile(r'(\]\(|href=")([^)"\s#:]+\.ipynb)(#[^)"\s]*)?')

def _src(cell): return cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])

def split_directives(source):
    "({directive: value}, code): the leading `#| key: value` lines of a code cell, and the rest."
    lines, found = source.splitlines(), {}
    while lines and (m := DIRECTIVE.match(lines[0])):
        found[m.group(1)] = m.group(2).strip('"\'')
        lines.pop(0)
    return found, '\n'.join(lines).strip('\n')

def _markdown_output(cell):
    return next((''.join(o['data']['text/markdown']) if isinstance(o['data']['text/markdown'], list)
                 else o['data']['text/markdown'])
                for o in cell.get('outputs', []) if 'text/markdown' in o.get('data', {}))

def _has_markdown_output(cell): return any('text/markdown' in o.get('data', {}) for o in cell.get('outputs', []))

def convert_code_cell(cell):
    "The cell as mkdocs-jupyter should show it: None to drop it, a markdown cell for `output: asis`."
    opts, code = split_directives(_src(cell))
    if opts.get('include') == 'false': return None
    if opts.get('output') == 'asis' and _has_markdown_output(cell):  # show_doc's entries: markdown in the page
        return {'cell_type': 'markdown', 'metadata': {}, 'source': _markdown_output(cell)}
    if opts.get('output') == 'false': cell['outputs'] = []
    if opts.get('echo') == 'false':
        cell['metadata'].setdefault('tags', []).append('hide-input')
        if not cell.get('outputs'): return None
    elif not code and not cell.get('outputs'): return None
    cell['source'] = code
    for out in cell.get('outputs', []):  # no widget manager on a static page: the text form stands in
        out.get('data', {}).pop('application/vnd.jupyter.widget-view+json', None)
    return cell

def title_cell(frontmatter):
    "The page's H1 and summary, which nbdev moved from the notebook into Quarto's front matter."
    title, summary = frontmatter.get('title', ''), frontmatter.get('description', '')
    return {'cell_type': 'markdown', 'metadata': {}, 'source': f'# {title}' + (f'\n\n> {summary}' if summary else '')}

def localize(text, page, src_rel, pages, doc_url):
    "Point links and images at this site: nbdev's doc links, `.ipynb` links, the Colab badge."
    text = LINK_ATTRS.sub(lambda m: f'<a href="{m.group(2)}" {m.group(3).strip()}>{m.group(1)}</a>', text)
    text = text.replace(doc_url, _rel_url('.', page) + '/' if Path(page).parent != Path('.') else '')
    text = text.replace(COLAB_BADGE, _rel_url('assets/colab-badge.svg', page))
    def nb_link(m):
        target = Path(os.path.normpath(Path(src_rel).parent/m.group(2)))
        if target not in pages: return m.group(0)
        return m.group(1) + _rel_url(pages[target], page).replace('.ipynb', '.html') + (m.group(3) or '')
    return NB_LINK.sub(nb_link, text)

def frontmatter(cell):
    "The YAML front matter of a raw cell (`---` ... `---`), or None."
    m = re.fullmatch(r'\s*---\n(.*?)\n---\s*', _src(cell), re.S) if cell['cell_type'] == 'raw' else None
    return (yaml.safe_load(m.group(1)) or {}) if m else None

def notebook_title(nb, fallback):
    "The title nbdev took from the notebook's H1."
    return next((fm['title'] for c in nb['cells'] if (fm := frontmatter(c)) and fm.get('title')), fallback)

def convert_notebook(nb, src_rel, pages, doc_url):
    "A processed notebook (dict), made ready for mkdocs-jupyter."
    page, cells = pages[Path(src_rel)], []
    for cell in nb['cells']:
        if cell['cell_type'] == 'raw':
            if (fm := frontmatter(cell)) is not None: cells.append(title_cell(fm))
            continue
        if cell['cell_type'] == 'code': cell = convert_code_cell(cell)
        if cell is None: continue
        if cell['cell_type'] == 'markdown':
            cell['source'] = localize(_src(cell), page, src_rel, pages, doc_url)
            if cell['source'].strip() == '<!-- WARNING: THIS FILE WAS AUTOGENERATED! DO NOT EDIT! -->': continue
        for out in cell.get('outputs', []):
            for mime in ('text/markdown', 'text/html'):
                if mime in out.get('data', {}):
                    out['data'][mime] = localize(''.join(out['data'][mime]), page, src_rel, pages, doc_url)
        cells.append(cell)
    nb['metadata'].pop('widgets', None)  # else nbconvert's template loads a widget manager from a CDN
    return {**nb, 'cells': cells}

def stage_pages(proc, dest, notebooks, doc_url):
    "Write the converted notebooks and the other processed files into the mkdocs source folder `dest`."
    pages, titles = {rel: page_path(rel) for rel in notebooks}, {}
    clash = {p for p in pages.values() if list(pages.values()).count(p) > 1}
    if clash: raise SystemExit(f'build_docs: several notebooks map to the same page {sorted(map(str, clash))}')
    for rel in notebooks:
        if not (proc/rel).exists(): raise SystemExit(f'build_docs: nbdev_proc_nbs produced no {rel}')
        nb = json.loads((proc/rel).read_text(encoding='utf-8'))
        titles[rel] = notebook_title(nb, rel.stem)
        nb = convert_notebook(nb, rel, pages, doc_url)
        (dest/pages[rel]).parent.mkdir(parents=True, exist_ok=True)
        (dest/pages[rel]).write_text(json.dumps(nb, indent=1), encoding='utf-8')
    for f in proc.rglob('*'):  # images and data files the notebooks refer to, at the same relative place
        if f.is_file() and f.suffix != '.ipynb':
            (dest/f.relative_to(proc)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, dest/f.relative_to(proc))
    return pages, titles

# ---------------------------------------------------------------------------------------------------------------
# 3. mkdocs

def ensure_mathjax():
    "MathJax's folder, installing `docs/_npm/package.json`'s dependencies with npm when it is missing."
    path = MATHJAX
    if not path.exists():
        npm = shutil.which('npm')
        if not npm: raise SystemExit(f'build_docs: {path} is missing, and npm is not installed to install it')
        subprocess.run([npm, 'ci', '--prefix', str(NPM), '--no-audit', '--no-fund'], check=True)
    return path

def copy_mathjax(src, dest):
    "MathJax into the site: the one bundle the pages load, and the components its menu loads on demand."
    unused_bundle = lambda d, names: [n for n in names if Path(d) == src and n.endswith('.js') and n != MATHJAX_BUNDLE
                                      and n.startswith(('tex-', 'mml-', 'node-'))]
    shutil.copytree(src, dest, ignore=unused_bundle)

def nav_entries(notebooks, pages, titles):
    "mkdocs `nav`: the home page, the notebooks of `nbs/` by number, then a section per subfolder."
    nav, sections = [], {}
    for rel in notebooks:
        num = re.match(r'^(\d+)[a-zA-Z0-9]*_', rel.name)
        label = 'Home' if rel == Path('index.ipynb') else (f'{num.group(1)} · ' if num else '') + titles[rel]
        entry = {label: pages[rel].as_posix()}
        folder = rel.parts[1:-1]
        if not folder: nav.append(entry); continue
        level = nav
        for i, name in enumerate(folder):
            key = '/'.join(folder[:i+1])
            if key not in sections: sections[key] = []; level.append({name: sections[key]})
            level = sections[key]
        level.append(entry)
    return nav

def write_config(stage, docs_dir, site_dir, nav, settings):
    "The mkdocs config: `docs/mkdocs.yml` plus this build's folders, nav and settings.ini's title."
    cfg = yaml.safe_load((DOCS/'mkdocs.yml').read_text(encoding='utf-8'))
    cfg.update(site_name=settings['title'], site_description=settings['description'], docs_dir=str(docs_dir),
               site_dir=str(site_dir), nav=nav, hooks=[str(DOCS/h) for h in cfg.get('hooks', [])])
    path = stage/'mkdocs.yml'
    path.write_text(yaml.safe_dump(cfg, sort_keys=False, allow_unicode=True), encoding='utf-8')
    return path

def settings_ini(root=ROOT):
    cp = ConfigParser(); cp.read(root/'settings.ini')
    return cp['DEFAULT']

def check_out(out, root):
    "Refuse an output folder whose replacement would delete something else than an earlier build."
    if out == root or out in root.parents or root in out.parents and out.relative_to(root).parts[0] in ('nbs', 'docs'):
        raise SystemExit(f'build_docs: --out {out}: expected a folder of its own (default: {root/"_site"})')
    if out.exists() and any(out.iterdir()) and not (out/'sitemap.xml').exists():
        raise SystemExit(f'build_docs: --out {out} exists and is not a site built here; give an empty or new folder')

def build(out=ROOT/'_site', workers=1, root=ROOT, log=print):
    "Build the site into `out` (replaced); return `out`."
    out, root, t0 = Path(out).resolve(), Path(root).resolve(), time.perf_counter()
    check_out(out, root)
    settings, notebooks, mathjax = settings_ini(root), source_notebooks(root), ensure_mathjax()
    doc_url = settings['doc_host'].rstrip('/') + '/' + settings['doc_baseurl'].strip('/') + '/'
    with tempfile.TemporaryDirectory(prefix='discffusion-docs-') as tmp:
        stage = Path(tmp)
        stage_sources(root, stage/'src')
        proc = run_nbdev_processors(stage/'src', workers, root)
        log(f'build_docs: nbdev processed {len(notebooks)} notebooks in {time.perf_counter()-t0:.1f} s')
        docs_dir = stage/'docs'
        shutil.copytree(DOCS/'assets', docs_dir/'assets')
        copy_mathjax(mathjax, docs_dir/'assets'/'mathjax')
        pages, titles = stage_pages(proc, docs_dir, notebooks, doc_url)
        config = write_config(stage, docs_dir, out, nav_entries(notebooks, pages, titles), settings)
        if out.exists(): shutil.rmtree(out)
        res = subprocess.run([sys.executable, '-m', 'mkdocs', 'build', '--strict', '--quiet', '-f', str(config)],
                             cwd=stage, capture_output=True, text=True)
        if res.returncode: raise SystemExit(f'build_docs: mkdocs build failed:\n{res.stdout}{res.stderr}')
    log(f'build_docs: site with {len(notebooks)} notebook pages in {out} ({time.perf_counter()-t0:.1f} s)')
    return out

def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--out', default=str(ROOT/'_site'), help='folder to write the site into (replaced; default: _site)')
    p.add_argument('--workers', type=int, default=min(4, os.cpu_count() or 1),
                   help="processes for nbdev's notebook processors (default: min(4, cores))")
    args = p.parse_args(argv)
    build(args.out, args.workers)

if __name__ == '__main__': main()
