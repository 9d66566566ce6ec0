"""The HTML report: the paper's suite of measurements on one model, in one folder.

Example:
    >>> from oversquash_lens.report import get_suite
    >>> get_suite("paper", quick=True).name
    'paper'
"""

from ._report import report as report
from ._suite import SUITES as SUITES
from ._suite import Suite as Suite
from ._suite import get_suite as get_suite
from ._suite import paper_suite as paper_suite

__all__ = ["SUITES", "Suite", "get_suite", "paper_suite", "report"]
