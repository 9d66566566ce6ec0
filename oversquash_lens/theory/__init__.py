"""Theory checks of the paper's Section 4 and Appendix B, on plain tensors (no model).

- Lemma B.1 (:func:`lemma_b1`): one token's softmax weight is O(1/n).
- Lemma B.2 / Fig 9 (:func:`fig9_total_variation`): a fixed perturbation's TV → 0.
- Prop. B.4 (:func:`alternating_tv`, :data:`ALTERNATING_TV_LIMIT`): without decay, TV
  stays at 2(e − 1)/(e + 1).
- Fig 8 / Fig 10 (:class:`SyntheticLayer`, :func:`synthetic_collapse_curve`): one
  untrained attention layer with NoPE, sinusoidal, RoPE or ALiBi; distance between the
  last-token outputs of ``[u, a]`` and ``[u, a, a]``.
- Prop. B.9 (:func:`bidirectional_nope_states`): no positions + no causal mask ⇒ "10" and
  "1100" are indistinguishable.
- Precision (:func:`fit_inverse_law`, :func:`predicted_collapse_length`,
  :func:`first_length_below`, :func:`crossing_length`): collapse length ≈ c/ε.
"""

from ._collapse_law import InverseLawFit as InverseLawFit
from ._collapse_law import crossing_length as crossing_length
from ._collapse_law import first_length_below as first_length_below
from ._collapse_law import fit_inverse_law as fit_inverse_law
from ._collapse_law import predicted_collapse_length as predicted_collapse_length
from ._counting import bidirectional_nope_states as bidirectional_nope_states
from ._softmax_lemmas import ALTERNATING_TV_LIMIT as ALTERNATING_TV_LIMIT
from ._softmax_lemmas import alternating_tv as alternating_tv
from ._softmax_lemmas import fig9_total_variation as fig9_total_variation
from ._softmax_lemmas import lemma_b1 as lemma_b1
from ._synthetic import CollapseCurve as CollapseCurve
from ._synthetic import PositionalEncoding as PositionalEncoding
from ._synthetic import SyntheticLayer as SyntheticLayer
from ._synthetic import synthetic_collapse_curve as synthetic_collapse_curve

__all__ = [
    "ALTERNATING_TV_LIMIT",
    "CollapseCurve",
    "InverseLawFit",
    "PositionalEncoding",
    "SyntheticLayer",
    "alternating_tv",
    "bidirectional_nope_states",
    "crossing_length",
    "fig9_total_variation",
    "first_length_below",
    "fit_inverse_law",
    "lemma_b1",
    "predicted_collapse_length",
    "synthetic_collapse_curve",
]
