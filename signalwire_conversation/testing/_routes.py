"""The URL table of the REST API (moto's ``urls.py``): path → handler, with path parameters."""

from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple

from ._errors import HTTPError
from ._rest import Handler, handlers

__all__ = ["Router"]

_SEGMENT = re.compile(r"\{([a-z_]+)\}")


def _compile(pattern: str) -> "re.Pattern[str]":
    regex = _SEGMENT.sub(lambda m: f"(?P<{m.group(1)}>[^/]+)", re.escape(pattern).replace(r"\{", "{").replace(r"\}", "}"))
    return re.compile(f"^{regex}/?$")


class Router:
    def __init__(self) -> None:
        self._routes: List[Tuple[str, "re.Pattern[str]", Handler]] = [
            (method, _compile(pattern), handler) for method, pattern, handler in handlers()
        ]

    def match(self, method: str, path: str) -> Tuple[Handler, Dict[str, str]]:
        """The handler of ``method path`` and its path parameters; 404 or 405 otherwise."""
        allowed: List[str] = []
        for route_method, regex, handler in self._routes:
            m = regex.match(path)
            if m is None:
                continue
            if route_method == method or (method == "HEAD" and route_method == "GET"):
                return handler, m.groupdict()
            allowed.append(route_method)
        if allowed:
            raise HTTPError(405, headers={"Allow": ", ".join(sorted(set(allowed)))})
        raise HTTPError(404)

    def known(self, path: str) -> Optional[bool]:
        return any(regex.match(path) for _, regex, _ in self._routes)
