"""Print docs/results.md: every public result class and what each of its fields means.

Usage::

    .venv/bin/python scripts/results_page.py > docs/results.md

The page is generated from the classes' ``Attributes:`` documentation; a test checks
that the committed page is current.
"""

import oversquash_lens as osl
from oversquash_lens.results._base import public_result_classes
from oversquash_lens.results._describe import fields_markdown

if __name__ == "__main__":
    print(fields_markdown(public_result_classes(osl)), end="")
