"""Vocabulary: token strings <-> ids, with clear errors for tokens it does not know."""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from interp.errors import DataError


@dataclass(frozen=True)
class Vocabulary:
    """An ordered, duplicate-free list of token strings; a token's id is its index."""

    tokens: tuple[str, ...]
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index = {tok: i for i, tok in enumerate(self.tokens)}
        if len(index) != len(self.tokens):
            dupes = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
            raise DataError(f"vocabulary has duplicate tokens {dupes}")
        object.__setattr__(self, "_index", index)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: str) -> bool:
        return token in self._index

    def id(self, token: str) -> int:
        """The id of ``token``; DataError if it is not in the vocabulary."""
        try:
            return self._index[token]
        except KeyError:
            raise DataError(f"token '{token}' is not in the vocabulary ({len(self)} tokens)") from None

    def encode(self, tokens: Iterable[str]) -> np.ndarray:
        """Token strings -> int64 ids."""
        return np.array([self.id(t) for t in tokens], dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray) -> list[str]:
        """Ids -> token strings; DataError for an id out of range."""
        out = []
        for i in np.asarray(ids).tolist():
            if not 0 <= i < len(self.tokens):
                raise DataError(f"token id {i} is out of the vocabulary (0..{len(self.tokens) - 1})")
            out.append(self.tokens[i])
        return out
