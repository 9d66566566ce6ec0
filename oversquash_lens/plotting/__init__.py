"""One look for every matplotlib figure: the style, log axes, the ε lines, atomic saving.

Below the analyzers in the package's layers, so every result's ``plot()`` draws with it
without importing the HTML views; :mod:`oversquash_lens.render` re-exports it.

Example:
    >>> from oversquash_lens import plotting
    >>> with plotting.style():
    ...     pass
"""

from ._style import COLORS as COLORS
from ._style import log_axes as log_axes
from ._style import precision_lines as precision_lines
from ._style import save_figure as save_figure
from ._style import style as style

__all__ = ["COLORS", "log_axes", "precision_lines", "save_figure", "style"]
