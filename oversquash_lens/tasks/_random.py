"""Random digits ending in "1" vs the same ending in "11" (Fig 5b)."""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from .._types import TokenSeq
from ._base import LayoutCache, TokenizerView
from ._families import _check_common, _check_text, _lead
from ._layout import Layout, Unit, de_bruijn_pairs
from ._units import UnitFamily, unit_text


@dataclass(frozen=True)
class RandomPrefix(UnitFamily):
    """A_k = prefix + (k − 1) random digits + last, B_k = A_k + last.

    Digits are drawn uniformly (with replacement) from ``digits`` by a NumPy generator
    seeded with ``[seed, k]``: each k's draw is reproducible on its own, whatever other
    lengths are requested, and draws for different k are independent (A_k is not a
    prefix of A_{k+1}). Build with :func:`random_prefix`.
    """

    digits: tuple[str, ...] = tuple("0123456789")
    last: str = "1"
    prefix: str = ""
    bos: bool | None = None
    joiner: str = ""
    seed: int = 0
    _cache: LayoutCache = field(default_factory=LayoutCache, init=False, repr=False, compare=False)
    name: ClassVar[str] = "random_prefix"

    def __post_init__(self) -> None:
        if not isinstance(self.digits, tuple) or not self.digits:
            raise ValueError(f"digits must be a non-empty tuple of strings, got {self.digits!r}")
        for d in self.digits:
            _check_text(d, "each digit", empty_ok=False)
        if len(set(self.digits)) != len(self.digits):
            raise ValueError(f"digits must be distinct, got {self.digits!r}")
        _check_text(self.last, "last", empty_ok=False)
        _check_common(self)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {self.seed!r}")

    @property
    def a_prefix_of_b(self) -> bool:
        """Always True: B_k is A_k plus one more ``last`` (but B_k is not A_{k+1})."""
        return True

    def draw(self, k: int) -> list[int]:
        """Indices into ``digits`` of the k − 1 random items of A_k.

        Example:
            >>> fam = random_prefix(seed=3)
            >>> fam.draw(6) == fam.draw(6), len(fam.draw(6))
            (True, 5)
        """
        return self._draw(k).tolist()

    def _draw(self, k: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, k])
        return rng.integers(0, len(self.digits), size=k - 1, dtype=np.int64)

    def _probes(self) -> list[list[Unit]]:
        units = [self._unit(d) for d in self.digits]
        last = self._unit(self.last)
        cover = [units[i] for i in de_bruijn_pairs(len(units))] + [last, last]
        return [cover, [last, last], *([u, last] for u in units)]

    def _units_a(self, k: int) -> list[Unit]:
        return [self._unit(self.digits[i]) for i in self.draw(k)] + [self._unit(self.last)]

    def _texts(self, k: int) -> tuple[str, str]:
        a = unit_text(self.prefix, self._units_a(k))
        return a, a + self.joiner + self.last

    def _min_len_b(self, layout: Layout, k: int) -> int:
        shortest = min(len(layout.units[self._unit(d)]) for d in self.digits)
        last = len(layout.units[self._unit(self.last)])
        return len(layout.head) + (k - 1) * shortest + 2 * last

    def _make(
        self, view: TokenizerView, layout: Layout, ks: list[int]
    ) -> list[tuple[TokenSeq, TokenSeq]]:
        pieces = [layout.units[self._unit(d)] for d in self.digits]
        last = list(layout.units[self._unit(self.last)])
        head = np.array(view.bos_ids + list(layout.head), dtype=np.int64)
        tail = np.array(last + last, dtype=np.int64)
        uniform = len({len(p) for p in pieces}) == 1
        table = np.array(pieces, dtype=np.int64) if uniform else None
        out = []
        for k in ks:
            drawn = self._draw(k)
            if table is not None:
                body = table[drawn].reshape(-1)
            else:  # items of different token counts (joiner merges with some digits only)
                body = np.array([i for d in drawn for i in pieces[d]], dtype=np.int64)
            b = torch.from_numpy(np.concatenate([head, body, tail]))
            out.append((b[: b.numel() - len(last)], b))
        return out

    def _describe_k(self, view: TokenizerView, k: int) -> str:
        lead = _lead(view, self.prefix)
        last = repr(self.joiner + self.last)
        return f"{lead}{k - 1} random digits (seed {self.seed}) + {last} vs … + {last}×2"

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters.

        Example:
            >>> random_prefix(digits="01", seed=2).describe()["digits"]
            ['0', '1']
        """
        return {
            **self._base_description(),
            "digits": list(self.digits),
            "last": self.last,
            "seed": self.seed,
        }


def random_prefix(
    *,
    digits: str | Sequence[str] = "0123456789",
    last: str = "1",
    prefix: str = "",
    bos: bool | None = None,
    joiner: str = "",
    seed: int = 0,
) -> RandomPrefix:
    """Prefix + (k − 1) uniform random digits + "1" vs the same + "11" (Fig 5b).

    Args:
        digits: Items to draw from: a string (each character is an item) or a
            sequence of strings. Each must be one token in context.
        last: The item that ends A_k and is repeated in B_k.
        prefix: Prompt text before the digits, used verbatim.
        bos: None for the model's default, True/False to force it.
        joiner: Text before every item.
        seed: Non-negative seed; the draw for length k uses ``[seed, k]``.

    Example:
        >>> import oversquash_lens as osl
        >>> model = osl.load_model("tiny-gpt2")
        >>> fam = random_prefix(seed=0, bos=False)
        >>> p = fam.pair(model, 5)
        >>> len(p.a), p.b[:-1].equal(p.a), p.b[-1].item() == 18
        (5, True, True)
    """
    items = tuple(digits) if isinstance(digits, str) else tuple(digits)
    return RandomPrefix(digits=items, last=last, prefix=prefix, bos=bos, joiner=joiner, seed=seed)
