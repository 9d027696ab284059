"""Sphinx configuration of the signalwire-conversation documentation.

Build: ``python -m sphinx -W --keep-going -q -b html docs OUT`` (what CI runs).
Pages are Markdown (MyST); the API reference is generated from the docstrings.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))

from signalwire_conversation import __version__  # noqa: E402

project = "signalwire-conversation"
author = "signalwire-conversation contributors"
copyright = "signalwire-conversation contributors"
release = __version__
version = ".".join(__version__.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "clihelp",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_ivar = True

html_theme = "alabaster"
html_title = f"signalwire-conversation {release}"
html_static_path: List[str] = []

# Pages written by other parts of the project. They are linked (and listed in the tables of
# contents) only when they exist, so the build never breaks while one is being written.
OPTIONAL_PAGES = ["realtime", "emulator", "scaling-out", "performance", "reliability"]
_MARKER = re.compile(r"^%optional:(?P<names>[\w ,-]+)%$", re.M)
_DOC_ROLE = re.compile(r"\{doc\}`(?:(?P<title>[^`<]+?)\s*<)?/(?P<name>[\w-]+)>?`")


def _exists(name: str) -> bool:
    return any(os.path.exists(os.path.join(HERE, name + ext)) for ext in (".md", ".rst"))


def _tolerate_optional_pages(app: Any, docname: str, source: List[str]) -> None:
    text = source[0]

    def toc(match: "re.Match[str]") -> str:
        names = [n.strip() for n in match.group("names").split(",")]
        return "\n".join(n for n in names if _exists(n))

    def link(match: "re.Match[str]") -> str:
        name = match.group("name")
        if name not in OPTIONAL_PAGES or _exists(name):
            return match.group(0)
        return match.group("title") or name.replace("-", " ")

    text = _API_MARKER.sub(lambda m: _testing_api() if _has_emulator() else "", text)
    source[0] = _DOC_ROLE.sub(link, _MARKER.sub(toc, text))


_API_MARKER = re.compile(r"^%optional-api:testing%$", re.M)
_TESTING_API = """
## The emulator

```{eval-rst}
.. currentmodule:: signalwire_conversation.testing

.. autoclass:: Emulator
   :members:
   :no-show-inheritance:

.. autoclass:: Subscriber
   :members:
   :no-show-inheritance:
```
"""


def _has_emulator() -> bool:
    try:
        from signalwire_conversation import testing
    except ImportError:
        return False
    return hasattr(testing, "Emulator") and hasattr(testing, "Subscriber")


def _testing_api() -> str:
    return _TESTING_API


def setup(app: Any) -> None:
    app.connect("source-read", _tolerate_optional_pages)
