// MathJax 3 reads this before it loads: TeX between $...$ / $$...$$ (Jupyter's delimiters) or \(...\) / \[...\].
window.MathJax = {
  tex: {
    inlineMath: [['$', '$'], ['\\(', '\\)']],
    displayMath: [['$$', '$$'], ['\\[', '\\]']],
    processEscapes: true,
    processEnvironments: true,
  },
  svg: {fontCache: 'global'},
};
