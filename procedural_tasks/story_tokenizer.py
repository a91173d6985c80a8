"""A small byte-level BPE tokenizer for stories, trained with the `tokenizers` library.

The study used a SentencePiece BPE with 8,192 tokens (protocol §7.1). For the CPU preset a vocabulary of 512-2,048
is enough for TinyStories' simple English. Byte-level BPE covers any input text (no unknown token) and decodes back
to the exact input. Special tokens get fixed ids: `<pad>` 0, `<bos>` 1, `<eos>` 2. As in the study, `encode`
prepends BOS and adds no EOS by default. Saved as the library's own JSON file (no pickle).

Training is deterministic: the same texts and config give the same JSON file. `vocab_size` is an upper bound: a
small or repetitive corpus can run out of pairs that occur `min_frequency` times, so read the trained size from
`StoryTokenizer.vocab_size`.
"""

import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from interp.errors import ConfigError, DataError

PAD, BOS, EOS = "<pad>", "<bos>", "<eos>"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, BOS, EOS)
_N_BYTES = 256


@dataclass(frozen=True, kw_only=True)
class StoryTokenizerConfig:
    """Vocabulary size and merge threshold of a trained tokenizer."""

    vocab_size: int = 1024  # including the 256 byte tokens and the 3 special tokens
    min_frequency: int = 2  # a pair must occur this often to be merged

    def __post_init__(self) -> None:
        floor = _N_BYTES + len(SPECIAL_TOKENS)
        if self.vocab_size < floor:
            raise ConfigError(
                f"vocab_size {self.vocab_size} is below {floor} (256 bytes + 3 special tokens); e.g. vocab_size=1024"
            )
        if self.min_frequency < 1:
            raise ConfigError(f"min_frequency {self.min_frequency} must be at least 1; e.g. min_frequency=2")


class StoryTokenizer:
    """A trained tokenizer: encode/decode to lists of ints, save/load as JSON."""

    def __init__(self, tokenizer) -> None:
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != [0, 1, 2]:
            raise DataError(
                f"tokenizer special tokens {SPECIAL_TOKENS} have ids {ids}, not [0, 1, 2]; retrain it"
            )
        self.tokenizer = tokenizer

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def pad_id(self) -> int:
        return 0

    @property
    def bos_id(self) -> int:
        return 1

    @property
    def eos_id(self) -> int:
        return 2

    def encode(self, text: str, *, bos: bool = True, eos: bool = False) -> list[int]:
        """Token ids of `text`, with BOS first (default) and EOS last (if asked)."""
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        return ([self.bos_id] if bos else []) + ids + ([self.eos_id] if eos else [])

    def encode_batch(self, texts: Sequence[str], *, bos: bool = True, eos: bool = False) -> list[list[int]]:
        """`encode` for many texts at once (the library batches them)."""
        head, tail = ([self.bos_id] if bos else []), ([self.eos_id] if eos else [])
        return [
            head + e.ids + tail for e in self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        ]

    def decode(self, ids: Sequence[int]) -> str:
        """The text of `ids`, with special tokens dropped."""
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise DataError(
                f"token ids {bad[:5]} are outside the vocabulary of {self.vocab_size}; check the model"
            )
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    def save(self, path: str | Path) -> None:
        """Write the library's JSON file atomically (temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        os.close(fd)
        try:
            self.tokenizer.save(tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    @classmethod
    def load(cls, path: str | Path) -> "StoryTokenizer":
        """Read a JSON file written by `save`."""
        from tokenizers import Tokenizer

        path = Path(path)
        if not path.is_file():
            raise DataError(
                f"tokenizer file {path} does not exist; train one with train_tokenizer and save it"
            )
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # the library raises a bare Exception on malformed JSON
            raise DataError(
                f"{path} is not a tokenizers JSON file ({err}); train and save a new one"
            ) from err
        return cls(tokenizer)


def train_tokenizer(texts: Iterable[str], *, config: StoryTokenizerConfig | None = None) -> StoryTokenizer:
    """Train a byte-level BPE tokenizer on `texts` (e.g. Instruct-formatted stories)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    config = config or StoryTokenizerConfig()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=config.vocab_size,
        min_frequency=config.min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    texts = list(texts)
    if not any(t.strip() for t in texts):
        raise DataError("the tokenizer corpus is empty; give it at least one non-empty story")
    tokenizer.train_from_iterator(texts, trainer=trainer, length=len(texts))
    return StoryTokenizer(tokenizer)
