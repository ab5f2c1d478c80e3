"""The docs site as a reader meets it: `tools/build_docs.py` builds it, a local server serves it, headless Chromium
opens every page.

Each page must load with no console error, no failed request, no request to another host, every image decoded,
its TeX typeset by the site's own MathJax (no raw `$$` left, no MathJax error); no link may point to a missing
local file or anchor; the home page's navigation must list every notebook (`index.ipynb`, then `nbs/` by name,
then its subfolders) in that order. Failures name the page and what failed. Screenshots of the home page and of the
first notebook page with a figure just below an equation go to `$SITE_SCREENSHOTS` (default: the test's temporary
folder); their paths are printed.

One test builds and browses everything, so that pytest-xdist does not build the site once per worker.
Debian's chromium is driven through its executable path (`playwright install` would download a browser).
"""
import functools, importlib.util, json, os, re, shutil, threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urljoin, urlsplit, unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = '/usr/bin/chromium'
CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
                 '--disable-sync', '--no-first-run']
LOCAL_HOSTS = {'127.0.0.1', 'localhost'}

def _missing_tools():
    "What this machine lacks to run the test (CI installs all of it: .ci/run)."
    missing = [m for m in ('playwright', 'mkdocs', 'material', 'mkdocs_jupyter') if not importlib.util.find_spec(m)]
    if not Path(CHROMIUM).exists(): missing.append(CHROMIUM)
    if not (ROOT/'docs/_npm/node_modules/mathjax').exists() and not shutil.which('npm'): missing.append('npm (MathJax)')
    return missing

def _load_build_docs():
    spec = importlib.util.spec_from_file_location('build_docs', ROOT/'tools/build_docs.py')
    mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
    return mod

def expected_notebooks(root=ROOT):
    "Every notebook, found independently of the build script: index first, then nbs/ files, then subfolders."
    shown = lambda p: not any(part.startswith(('_', '.')) for part in p.relative_to(root).parts)
    nbs = [p.relative_to(root) for p in (root/'nbs').rglob('*.ipynb') if shown(p)]
    key = lambda p: tuple((1, d) for d in p.parts[:-1]) + ((0, p.name),)
    return [Path('index.ipynb')] + sorted(nbs, key=key)

def expected_page(rel):
    "nbdev's page name for a notebook (`nbdev.doclinks._nbpath2html`): nbs/03_pooling.ipynb -> nbs/pooling.html."
    return rel.with_name(re.sub(r'^\d+[a-zA-Z0-9]*_', '', rel.name.lower())).with_suffix('.html').as_posix()

TEX = re.compile(r'\$\$.+?\$\$|\$[^$\n]*[\\^_{][^$\n]*\$|\\\(.+?\\\)', re.S)

def has_tex(html):
    "Whether a built page's text (outside code, scripts and styles) holds TeX for MathJax."
    text = re.sub(r'<(pre|code|script|style|textarea)\b.*?</\1>', ' ', html, flags=re.S | re.I)
    return bool(TEX.search(re.sub(r'<[^>]+>', ' ', text)))

def serve(folder):
    "A quiet HTTP server for `folder` on 127.0.0.1 (a free port), in a daemon thread."
    handler = functools.partial(type('Quiet', (SimpleHTTPRequestHandler,), {'log_message': lambda *a: None}),
                                directory=str(folder))
    server = ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server

# Run in the page after `load`: wait for MathJax, then report what a reader would see.
PAGE_REPORT = """async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  const content = document.querySelector('.md-content') || document.body;
  const walker = document.createTreeWalker(content, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest('pre, code, script, style, textarea, mjx-container, .MathJax')
      ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  let text = ''; while (walker.nextNode()) text += walker.currentNode.nodeValue + '\\n';
  return {
    mathjax: !!(window.MathJax && MathJax.version), mathjaxVersion: window.MathJax && MathJax.version,
    typeset: content.querySelectorAll('mjx-container').length,
    mathErrors: content.querySelectorAll('mjx-merror, [data-mjx-error]').length,
    text: text,
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    sidebarLinks: Array.from(document.querySelectorAll('.md-sidebar a[href]')).map(a => a.href),
    ids: Array.from(document.querySelectorAll('[id]')).map(e => e.id),
    nav: Array.from(document.querySelectorAll('nav.md-nav--primary a.md-nav__link[href]')).map(a => a.href),
  };
}"""

def browse(page, url, problems):
    "Open `url`, record what went wrong into `problems` (list of str); return the page report."
    def rec(what): problems.append(what)
    page.on('console', lambda m: m.type == 'error' and rec(f'console error: {m.text} ({m.location.get("url")})'))
    page.on('pageerror', lambda e: rec(f'uncaught exception: {e}'))
    page.on('requestfailed', lambda r: rec(f'failed request: {r.url} ({r.failure})'))
    page.on('response', lambda r: r.status >= 400 and rec(f'HTTP {r.status}: {r.url}'))
    response = page.goto(url, wait_until='load')
    if response is None or response.status != 200: rec(f'page itself: HTTP {response and response.status}')
    page.wait_for_load_state('networkidle')
    return page.evaluate(PAGE_REPORT)

def check_page(rel, report, site, problems):
    "The content checks of one page: images, math."
    for img in report['images']:
        if not img['ok']: problems.append(f'image not loaded (naturalWidth 0): {img["src"][:120]}')
    if has_tex((site/rel).read_text(encoding='utf-8')):
        if not report['mathjax']: problems.append('page has TeX but MathJax did not load')
        elif report['typeset'] == 0: problems.append('page has TeX but MathJax typeset nothing (no mjx-container)')
        if report['mathErrors']: problems.append(f'{report["mathErrors"]} MathJax errors (mjx-merror)')
        raw = TEX.findall(report['text'])
        if raw: problems.append(f'raw TeX left in the page: {raw[:3]}')

def check_links(reports, site):
    """{page: [problem]}: links to a local file that is missing; navigation and table-of-contents links to an anchor
    their page does not have. (Links that nbdev writes into the text may name anchors no page has, e.g. a private
    function's: nbdev's own convention, the same on its Quarto site, so those are not checked.)"""
    problems = {}
    for rel, report in reports.items():
        for link in report['links'] + report['sidebarLinks']:
            parts = urlsplit(link)
            if parts.scheme not in ('http', 'https') or parts.hostname not in LOCAL_HOSTS: continue
            path = unquote(parts.path).lstrip('/') or 'index.html'
            if path.endswith('/'): path += 'index.html'
            if not (site/path).exists(): problems.setdefault(rel, []).append(f'link to a missing file: {link}')
            elif (link in report['sidebarLinks'] and parts.fragment and path in reports
                  and unquote(parts.fragment) not in reports[path]['ids']):
                problems.setdefault(rel, []).append(f'navigation link to a missing anchor: {path}#{parts.fragment}')
    return {k: sorted(set(v)) for k, v in problems.items()}

FOREIGN_LOAD = re.compile(r'<(?:script|img|iframe|source|video|audio)\b[^>]*\ssrc="(?:https?:)?//[^"]*"'
                          r'|<link\b[^>]*\shref="(?:https?:)?//[^"]*"[^>]*>'
                          r'|\bimport\(\s*["\'](?:https?:)?//[^"\']*|@import\s+(?:url\()?["\']?(?:https?:)?//', re.I)

def check_static(site):
    """{page: [problem]}: HTML that would load something from another host, even where the browser run does not
    trigger it (a loader that runs only when a page has some kind of content). Links (<a href>) are fine."""
    problems = {}
    for f in sorted(site.rglob('*.html')):
        found = [m.group(0)[:150] for m in FOREIGN_LOAD.finditer(f.read_text(encoding='utf-8'))]
        found = [m for m in found if not re.search(r'rel="(canonical|alternate)"', m)]
        if found: problems[f.relative_to(site).as_posix()] = [f'loads from another host: {m}' for m in found]
    return problems

def check_nav(nav, notebooks, pages):
    "Problems with the home page's navigation: every notebook's page listed, in notebook order."
    if nav is None: return ['no navigation found']
    missing = [f'notebook page missing from the nav: {nb} -> {pg}' for nb, pg in zip(notebooks, pages) if pg not in nav]
    listed = [u for u in nav if u in pages]
    return missing or ([] if listed == pages else [f'nav order {listed} != notebook order {pages}'])

# After MathJax: the first figure with a typeset equation at most 1,200 px above its bottom, as page coordinates.
MATH_FIGURE = """() => {
  const maths = Array.from(document.querySelectorAll('.md-content mjx-container'))
    .map(m => m.getBoundingClientRect().top + window.scrollY);
  for (const img of document.querySelectorAll('.md-content .jp-RenderedImage img')) {
    const r = img.getBoundingClientRect(), top = r.top + window.scrollY, bottom = r.bottom + window.scrollY;
    const above = maths.filter(t => t < top && bottom - t < 1200);
    if (above.length) return {top: Math.max(...above), bottom: bottom};
  }
  return null;
}"""

def math_figure_screenshot(page, path):
    "Screenshot an equation and the figure below it, the viewport made tall enough for both; False if none."
    box = page.evaluate(MATH_FIGURE)
    if not box: return False
    size = page.viewport_size
    height = max(size['height'], int(box['bottom'] - box['top']) + 240)
    page.set_viewport_size({'width': size['width'], 'height': height})
    page.evaluate(f'window.scrollTo(0, {box["top"] - 120})')
    page.wait_for_timeout(300)
    page.screenshot(path=str(path))
    page.set_viewport_size(size)
    return True

def browse_site(site, pages, shots):
    "Open every page of `site` in headless Chromium: ({page: [problem]}, {page: report}); screenshots into `shots`."
    from playwright.sync_api import sync_playwright
    server = serve(site)
    base, failures, reports = f'http://127.0.0.1:{server.server_address[1]}/', {}, {}
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={'width': 1280, 'height': 900})
            foreign = []
            def route(r):
                url = urlsplit(r.request.url)
                if url.scheme in ('data', 'blob', 'about') or url.hostname in LOCAL_HOSTS: return r.continue_()
                foreign.append(r.request.url); r.abort()
            context.route('**/*', route)
            figure_shot = None
            for rel in pages:
                if not (site/rel).exists(): failures[rel] = ['page not built']; continue
                problems, page = [], context.new_page()
                foreign.clear()
                reports[rel] = report = browse(page, urljoin(base, rel), problems)
                problems += [f'request to a non-local host: {u}' for u in foreign]
                check_page(rel, report, site, problems)
                if rel == 'index.html': page.screenshot(path=str(shots/'home.png'))
                elif figure_shot is None and math_figure_screenshot(page, shots/f'{Path(rel).stem}-math-figure.png'):
                    figure_shot = rel
                if problems: failures[rel] = problems
                page.close()
            browser.close()
    finally:
        server.shutdown()
    return failures, reports

@pytest.fixture(scope='module')
def built_site(tmp_path_factory):
    if os.environ.get('CI') is None and (missing := _missing_tools()):
        pytest.skip(f'docs site test needs {", ".join(missing)} (CI installs them: .ci/run)')
    return _load_build_docs().build(tmp_path_factory.mktemp('site')/'site', workers=1)

def test_site_in_browser(built_site, tmp_path):
    site, shots = built_site, Path(os.environ.get('SITE_SCREENSHOTS') or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    notebooks = expected_notebooks()
    pages = [expected_page(nb) for nb in notebooks]
    failures, reports = browse_site(site, pages, shots)
    for check in (check_links(reports, site), check_static(site)):
        for rel, problems in check.items(): failures.setdefault(rel, []).extend(problems)
    nav = reports.get('index.html', {}).get('nav')
    nav = None if nav is None else list(dict.fromkeys(unquote(urlsplit(u).path).lstrip('/') for u in nav))
    if problems := check_nav(nav, notebooks, pages): failures['navigation (index.html)'] = problems
    print('screenshots:', *sorted(str(p) for p in shots.glob('*.png')), sep='\n  ')
    assert not failures, 'docs site problems:\n' + '\n'.join(f'{pg}: {m}' for pg, ms in failures.items() for m in ms)


# The build script's parts, without building (seconds).

def test_notebooks_discovered_in_nav_order(tmp_path):
    bd = _load_build_docs()
    names = ['index.ipynb', 'nbs/10_toy_model.ipynb', 'nbs/01_primer.ipynb', 'nbs/00_core.ipynb', 'nbs/_draft.ipynb',
             'nbs/90_appendix_recipes.ipynb', 'nbs/exercises/02_lora.ipynb', 'nbs/exercises/01_pooling.ipynb',
             'nbs/.ipynb_checkpoints/00_core-checkpoint.ipynb', 'nbs/figure.png']
    for n in names: (tmp_path/n).parent.mkdir(parents=True, exist_ok=True); (tmp_path/n).write_text('{}')
    order = ['index.ipynb', 'nbs/00_core.ipynb', 'nbs/01_primer.ipynb', 'nbs/10_toy_model.ipynb',
             'nbs/90_appendix_recipes.ipynb', 'nbs/exercises/01_pooling.ipynb', 'nbs/exercises/02_lora.ipynb']
    found = bd.source_notebooks(tmp_path)
    assert [p.as_posix() for p in found] == order == [p.as_posix() for p in expected_notebooks(tmp_path)]
    pages = {p: bd.page_path(p) for p in found}
    assert [expected_page(p) for p in found] == [pages[p].with_suffix('.html').as_posix() for p in found]
    assert pages[Path('nbs/exercises/02_lora.ipynb')] == Path('nbs/exercises/lora.ipynb')
    titles = {p: p.stem.split('_', 1)[-1] for p in found}
    assert bd.nav_entries(found, pages, titles) == [
        {'Home': 'index.ipynb'}, {'00 · core': 'nbs/core.ipynb'}, {'01 · primer': 'nbs/primer.ipynb'},
        {'10 · toy_model': 'nbs/toy_model.ipynb'}, {'90 · appendix_recipes': 'nbs/appendix_recipes.ipynb'},
        {'exercises': [{'01 · pooling': 'nbs/exercises/pooling.ipynb'}, {'02 · lora': 'nbs/exercises/lora.ipynb'}]}]

def _code(source, outputs=()): return {'cell_type': 'code', 'metadata': {}, 'source': source, 'outputs': list(outputs)}

def test_quarto_directives_become_what_mkdocs_jupyter_shows():
    bd = _load_build_docs()
    md_out = {'output_type': 'execute_result', 'data': {'text/markdown': ['### f\n', 'doc'], 'text/plain': ['<f>']}}
    assert bd.convert_code_cell(_code('#| echo: false\n#| output: asis\nshow_doc(f)', [md_out])) == \
        {'cell_type': 'markdown', 'metadata': {}, 'source': '### f\ndoc'}
    assert bd.convert_code_cell(_code('#| include: false\nx = 1')) is None
    img = {'output_type': 'display_data', 'data': {'image/png': 'iVBO', 'text/plain': ['<Figure>']}}
    cell = bd.convert_code_cell(_code('#| echo: false\nplt.plot()', [img]))
    assert cell['metadata']['tags'] == ['hide-input'] and cell['outputs'] == [img]
    assert bd.convert_code_cell(_code('#| echo: false\nx = 1')) is None  # nothing left to show
    cell = bd.convert_code_cell(_code('#| eval: false\n#| code-fold: show\n!pip install x', [md_out]))
    assert cell['source'] == '!pip install x' and cell['outputs']
    assert bd.convert_code_cell(_code('#| output: false\nprint(1)', [md_out]))['outputs'] == []
    widget = {'output_type': 'display_data',
              'data': {'application/vnd.jupyter.widget-view+json': {}, 'text/plain': 'W'}}
    assert bd.convert_code_cell(_code('w', [widget]))['outputs'][0]['data'] == {'text/plain': 'W'}

def test_links_point_into_the_site():
    bd = _load_build_docs()
    pages = {Path('index.ipynb'): Path('index.ipynb'), Path('nbs/03_pooling.ipynb'): Path('nbs/pooling.ipynb'),
             Path('nbs/exercises/01_a.ipynb'): Path('nbs/exercises/a.ipynb')}
    doc = 'https://example.org/proj/'
    loc = lambda text, src: bd.localize(text, pages[Path(src)], src, pages, doc)
    assert loc(f'[`f`]({doc}nbs/pooling.html#f)', 'nbs/exercises/01_a.ipynb') == '[`f`](../../nbs/pooling.html#f)'
    assert loc(f'[`f`]({doc}nbs/pooling.html#f)', 'index.ipynb') == '[`f`](nbs/pooling.html#f)'
    assert loc('[03](nbs/03_pooling.ipynb) and [a](nbs/exercises/01_a.ipynb#x)', 'index.ipynb') == \
        '[03](nbs/pooling.html) and [a](nbs/exercises/a.html#x)'
    assert loc('[up](../03_pooling.ipynb), [x](missing.ipynb)', 'nbs/exercises/01_a.ipynb') == \
        '[up](../pooling.html), [x](missing.ipynb)'
    assert loc(f'![b]({bd.COLAB_BADGE})', 'nbs/03_pooling.ipynb') == '![b](../assets/colab-badge.svg)'
    assert loc('[source](https://x.org/a.py#L3){target="_blank" style="float:right"}', 'index.ipynb') == \
        '<a href="https://x.org/a.py#L3" target="_blank" style="float:right">source</a>'

def test_nbdev_processing_honours_hide_export_and_show_doc(tmp_path):
    "A tiny repository through nbdev's processors and the conversion: what a reader must and must not see."
    import nbformat
    from nbformat.v4 import new_notebook, new_markdown_cell, new_code_cell
    bd = _load_build_docs()
    root = tmp_path/'repo'; (root/'nbs').mkdir(parents=True)
    shutil.copy2(ROOT/'settings.ini', root/'settings.ini')
    cells = [new_markdown_cell('# tiny\n\n> A tiny notebook.'), new_code_cell('#| default_exp tiny'),
             new_code_cell('#| hide\nHIDDEN_SECRET = 1'),
             new_code_cell("#| export\ndef double(x:int)->int:\n    'Twice `x`.'\n    return 2*x"),
             new_markdown_cell('Uses [`double`](../index.ipynb) and $a^2$.'), new_code_cell('double(2)')]
    kernel = {'kernelspec': {'name': 'python3', 'display_name': 'Python 3', 'language': 'python'}}
    for rel in ('index.ipynb', 'nbs/01_tiny.ipynb'):
        nbformat.write(new_notebook(cells=cells, metadata=kernel), root/rel)
    notebooks = bd.source_notebooks(root)
    bd.stage_sources(root, tmp_path/'src')
    proc = bd.run_nbdev_processors(tmp_path/'src', 1, root)
    pages, titles = bd.stage_pages(proc, tmp_path/'docs', notebooks, 'https://example.org/x/')
    assert titles == {Path('index.ipynb'): 'tiny', Path('nbs/01_tiny.ipynb'): 'tiny'}
    page = json.loads((tmp_path/'docs/nbs/tiny.ipynb').read_text())
    text = json.dumps(page)
    assert 'HIDDEN_SECRET' not in text and 'return 2*x' not in text and '#|' not in text
    md = [c['source'] for c in page['cells'] if c['cell_type'] == 'markdown']
    assert md[0] == '# tiny\n\n> A tiny notebook.'
    assert any('### double' in m and 'Twice' in m for m in md), md  # show_doc's entry, as page markdown
    assert any('[`double`](../index.html)' in m for m in md), md
