"""Print the package's layers as the README's layout block (from oversquash_lens._layers).

Usage::

    .venv/bin/python scripts/layout.py

``tests/test_layers.py`` checks that README.md holds exactly this text.
"""

import textwrap

from oversquash_lens._layers import LAYERS


def _name(member: str) -> str:
    if not member:
        return "__init__.py"
    return f"{member}.py" if member.startswith("_") else f"{member}/"


def layout_text(width: int = 90) -> str:
    """The layers, bottom first, each with its modules and its role."""
    lines = ["oversquash_lens/, bottom to top: a module imports only from its layer or below"]
    for layer in LAYERS:
        members = " ".join(_name(m) for m in layer.modules)
        lines += textwrap.wrap(
            members, width, initial_indent=f"  {layer.name:<12}", subsequent_indent=" " * 14
        )
        lines += textwrap.wrap(
            layer.role, width, initial_indent=" " * 16, subsequent_indent=" " * 16
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(layout_text(), end="")
