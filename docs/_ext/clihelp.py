"""``cli-help`` directive: the real ``--help`` text of a command, so the docs never drift.

```{cli-help} messages
```
"""

from __future__ import annotations

import argparse
from typing import Any, Dict, List

from docutils import nodes
from sphinx.util.docutils import SphinxDirective


class CLIHelp(SphinxDirective):
    optional_arguments = 1
    has_content = False

    def run(self) -> List[nodes.Node]:
        from signalwire_conversation.cli import build_parser

        parser = build_parser()
        name = self.arguments[0] if self.arguments else None
        if name:
            sub = next(
                a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
            )
            parser = sub.choices[name]
        text = parser.format_help()
        if name:  # the shared epilog is shown once, with the top-level help
            for epilog in ("\nToken: ", "\nThe project credentials come from"):
                text = text.split(epilog, 1)[0]
        text = text.rstrip()
        block = nodes.literal_block(text, text)
        block["language"] = "text"
        return [block]


def setup(app: Any) -> Dict[str, Any]:
    app.add_directive("cli-help", CLIHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
