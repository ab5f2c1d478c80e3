"""mkdocs hooks for the docs site (docs/mkdocs.yml names this file)."""
import re
from mkdocs.structure.toc import get_toc

# nbconvert's template puts a MathJax 2 loader from a CDN into every notebook page; the site serves MathJax 3
# itself (extra_javascript), so the loader and its configuration go.
NBCONVERT_MATHJAX = re.compile(r'<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->', re.S)
# Its template also adds a loader that imports mermaid.js from a CDN when a page has a mermaid diagram: it goes
# too (a diagram would stay as its source text rather than reach out to another host).
NBCONVERT_MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>', re.S)
HEADING = re.compile(r'<h([1-6]) id="([^"]*)"([^>]*)>(.*?)</h\1>', re.S)
ANCHOR_LINK = re.compile(r'<a class="anchor-link" href="#[^"]*">.*?</a>', re.S)

def unique_heading_ids(html):
    "(html, [(level, id, title html)]): repeated heading ids get `_1`, `_2`... (two API entries can share a name)."
    seen, headings = {}, []
    def fix(m):
        level, hid, attrs, inner = m.groups()
        n = seen.get(hid, 0); seen[hid] = n + 1
        new = f'{hid}_{n}' if n else hid
        inner = inner.replace(f'href="#{hid}"', f'href="#{new}"')
        headings.append((int(level), new, ANCHOR_LINK.sub('', inner).strip()))
        return f'<h{level} id="{new}"{attrs}>{inner}</h{level}>'
    return HEADING.sub(fix, html), headings

def toc_tokens(headings):
    "Nest (level, id, name) headings into mkdocs' table-of-contents tokens."
    root = {'level': 0, 'children': []}
    stack = [root]
    for level, hid, name in headings:
        token = {'level': level, 'id': hid, 'name': name, 'children': []}
        while stack[-1]['level'] >= level: stack.pop()
        stack[-1]['children'].append(token); stack.append(token)
    return root['children']

def on_page_content(html, page, config, files):
    """Drop nbconvert's CDN loaders from a notebook page, and rebuild its table of contents from the page itself.

    mkdocs-jupyter builds the table of contents from a markdown copy of the notebook with code spans removed, so
    a heading with `code` in it got a different name and anchor than the page's heading."""
    if not page.file.src_uri.endswith('.ipynb'): return html
    html, headings = unique_heading_ids(NBCONVERT_MERMAID.sub('', NBCONVERT_MATHJAX.sub('', html)))
    page.toc = get_toc(toc_tokens(headings))
    return html
