"""A word-level tokenizer for the shapes captions: words to ids, with padding and an empty prompt.

    tok = Tokenizer.default()                     # the vocabulary of every shapes caption
    ids, mask = tok.encode(["a small red circle at the top left", ""])
    ids.shape, mask.shape                         # (2, 16) int64, (2, 16) bool
    tok.decode(ids, mask)                         # ['a small red circle at the top left', '']

Real text encoders split text into sub-words (CLIP uses byte-pair encoding over 49,408 tokens);
the shapes captions use about thirty words, so one id per word is enough and every id can be read.

Two special tokens come first:

- ``<pad>`` (id 0) fills every caption up to ``max_length``; ``mask`` is False there, so attention
  never reads it.
- ``<empty>`` (id 1) is the whole encoding of the empty prompt "": one real token, then padding.
  The empty prompt is the null condition of classifier-free guidance, and giving it a token of its
  own means it has a learned embedding like any caption, and that every row of ``mask`` has at
  least one True entry (attention over no token at all is undefined: a softmax over nothing).
"""

from __future__ import annotations

import torch

from ..data.shapes import COLOR_NAMES, POSITION_NAMES, SCALE_NAMES, SHAPE_NAMES
from ..validation import check_int

PAD, EMPTY = "<pad>", "<empty>"
SPECIALS = (PAD, EMPTY)


def split_words(caption: str) -> list[str]:
    """The words of a caption: lower case, split on white space ("" has none)."""
    return caption.lower().split()


class Tokenizer:
    """Maps captions to fixed-length rows of word ids and a padding mask.

    Args:
        words: the vocabulary, without the special tokens; ids 0 and 1 are ``<pad>`` and
            ``<empty>``, then ``words[i]`` has id ``i + 2``.
        max_length: L, the length of every encoded row; a caption with more words is an error.
    """

    def __init__(self, words, max_length: int = 16):
        words = [str(w) for w in words]
        if len(set(words)) != len(words):
            raise ValueError(f"words: expected each word once, got duplicates in {words}")
        bad = [w for w in words if w in SPECIALS or not w or w != w.lower() or len(w.split()) != 1]
        if bad:
            raise ValueError(f"words: expected lower-case single words other than {list(SPECIALS)}, got {bad}")
        self.max_length = check_int("max_length", max_length, minimum=1)
        self.vocab = list(SPECIALS) + words                      # id -> token
        self.ids = {w: i for i, w in enumerate(self.vocab)}       # token -> id
        self.pad_id, self.empty_id = self.ids[PAD], self.ids[EMPTY]

    @classmethod
    def from_captions(cls, captions, max_length: int | None = None) -> "Tokenizer":
        """A tokenizer whose vocabulary is every word of ``captions``, in order of first use.

        ``max_length`` defaults to the longest caption's number of words.
        """
        words = list(dict.fromkeys(w for c in captions for w in split_words(c)))
        if max_length is None:
            max_length = max([len(split_words(c)) for c in captions] + [1])
        return cls(words, max_length)

    @classmethod
    def default(cls, max_length: int = 16) -> "Tokenizer":
        """The vocabulary of the shapes captions ("a small red circle at the top left").

        Built from the attribute names of ``dlcourse.data.shapes``, so every caption
        ``make_shapes`` writes can be encoded; 16 positions leave room for longer prompts.
        """
        phrases = ["a", *SCALE_NAMES, *COLOR_NAMES, *SHAPE_NAMES, *POSITION_NAMES]
        return cls.from_captions([" ".join(phrases)], max_length=max_length)

    def __len__(self) -> int:
        return len(self.vocab)

    def __repr__(self) -> str:
        return f"Tokenizer({len(self.vocab)} tokens, max_length={self.max_length})"

    def encode(self, captions, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a list of captions.

        Args:
            captions: B strings; "" is the empty prompt.
            device: where to put the result (the CPU if None).

        Returns:
            ids: (B, L) int64 word ids, ``<pad>`` after the last word.
            mask: (B, L) bool, True at real tokens (the words, or ``<empty>``).
        """
        if isinstance(captions, str):
            raise TypeError(f"captions: expected a list of strings, got the string {captions!r} "
                            f"(wrap one caption in a list)")
        captions = list(captions)
        B, L = len(captions), self.max_length
        ids = torch.full((B, L), self.pad_id, dtype=torch.long)
        for row, caption in enumerate(captions):
            if not isinstance(caption, str):
                raise TypeError(f"captions[{row}]: expected a string, got {type(caption).__name__}")
            words = split_words(caption)
            if len(words) > L:
                raise ValueError(f"captions[{row}]: expected at most max_length={L} words, "
                                 f"got {len(words)} in {caption!r}")
            unknown = [w for w in words if w not in self.ids or w in SPECIALS]
            if unknown:
                known = " ".join(self.vocab[len(SPECIALS):])
                raise ValueError(f"captions[{row}]: unknown word {unknown[0]!r} in {caption!r}; "
                                 f"the vocabulary is: {known}")
            tokens = [self.ids[w] for w in words] or [self.empty_id]
            ids[row, :len(tokens)] = torch.tensor(tokens)
        mask = ids != self.pad_id                                   # (B, L)
        return ids.to(device), mask.to(device)

    def decode(self, ids: torch.Tensor, mask: torch.Tensor | None = None) -> list[str]:
        """The captions of ``ids`` (B, L): the words at real tokens, "" for ``<empty>``.

        ``mask`` (B, L) bool picks the real tokens; by default every token that is not ``<pad>``.
        """
        if mask is None:
            mask = ids != self.pad_id
        out = []
        for row, keep in zip(ids.tolist(), mask.tolist()):
            words = [self.vocab[i] for i, k in zip(row, keep) if k and i != self.empty_id]
            out.append(" ".join(words))
        return out

    def get_config(self) -> dict:
        """Plain types that rebuild this tokenizer: ``Tokenizer(**config)``."""
        return {"words": self.vocab[len(SPECIALS):], "max_length": self.max_length}
