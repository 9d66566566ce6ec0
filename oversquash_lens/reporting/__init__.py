"""The HTML report: the paper's suite of measurements on one model, in one folder.

Example:
    >>> from oversquash_lens.reporting import get_suite
    >>> get_suite("paper", quick=True).name
    'paper'
"""

from ._plan import SUITES as SUITES
from ._plan import Suite as Suite
from ._plan import get_suite as get_suite
from ._plan import paper_suite as paper_suite
from ._report import report as report
from ._shards import merge_report as merge_report
from ._shards import report_shard as report_shard

__all__ = ["SUITES", "Suite", "get_suite", "merge_report", "paper_suite", "report", "report_shard"]
