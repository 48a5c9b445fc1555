"""Sphinx configuration for kronjit's documentation (builds offline)."""
import os
import sys

sys.path.insert(0, os.path.abspath(".."))
import kronjit  # noqa: E402

project = "kronjit"
author = "the kronjit developers"
copyright = "2026, the kronjit developers"
version = release = kronjit.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build", "auto_examples/*.ipynb", "auto_examples/*.py",
                    "auto_examples/*.zip", "auto_examples/*.md5", "auto_examples/*.json"]
myst_heading_anchors = 3

templates_path = ["_templates"]
autosummary_generate = True
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False
autodoc_typehints = "none"
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# Every page's doctests run in one namespace per page, numpy printed the way
# the examples were written.
doctest_global_setup = "import numpy as np"
doctest_test_doctest_blocks = "default"

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "reset_modules_order": "both",
    "write_computation_times": False,  # its page loads jQuery and DataTables from CDNs
    "show_signature": False,
}

# No network at build time, nothing from a CDN at view time: no intersphinx,
# no math renderer (the pages use no LaTeX), the theme's bundled assets only.
html_theme = "pydata_sphinx_theme"
html_title = f"kronjit {version}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "icon_links": [],
    "navbar_end": ["navbar-icon-links"],
}
html_static_path = []
html_show_sourcelink = False
html_show_sphinx = False
html_theme_options["footer_start"] = ["copyright"]
html_theme_options["footer_end"] = []
