"""Offline HTML views (circuitsvis, bundle inlined) and one matplotlib figure style.

Every view is a :class:`Rendered`: ``_repr_html_`` for notebooks, ``save_html(path)``
for a complete page that works without a network, ``fragment(ids)`` to compose pages
with :func:`page` (the bundle inlined once).

Example:
    >>> from oversquash_lens import render
    >>> view = render.colored_tokens(["<bos>", "1"], [0.2, 1.0])
    >>> len(view.fragment("v")) < 400
    True
"""

from ..plotting import log_axes as log_axes
from ..plotting import precision_lines as precision_lines
from ..plotting import save_figure as save_figure
from ..plotting import style as style
from ._attention import attention_heads as attention_heads
from ._bundle import bundle as bundle
from ._bundle import notebook_bundle as notebook_bundle
from ._components import collapse_pair as collapse_pair
from ._components import colored_tokens as colored_tokens
from ._components import colored_tokens_multi as colored_tokens_multi
from ._components import flow_tokens as flow_tokens
from ._components import proxy_tokens as proxy_tokens
from ._page import Component as Component
from ._page import Html as Html
from ._page import Page as Page
from ._page import Rendered as Rendered
from ._page import element_ids as element_ids
from ._page import page as page

__all__ = [
    "Component",
    "Html",
    "Page",
    "Rendered",
    "attention_heads",
    "bundle",
    "collapse_pair",
    "colored_tokens",
    "colored_tokens_multi",
    "element_ids",
    "flow_tokens",
    "log_axes",
    "notebook_bundle",
    "page",
    "precision_lines",
    "proxy_tokens",
    "save_figure",
    "style",
]
