"""Cutting text that is still being written into speech pieces, each as soon as it is decided.

A chat step's reply arrives a few characters at a time, and the speak step after it
should start on the first sentence. `PieceCutter` takes the text in deltas of any size
and hands out each piece the moment no later text can change it:

- the first piece is the first sentence, or, when that sentence is long, its longest
  head that ends after a clause (else between words) within `first_chars`;
- later pieces pack whole sentences up to `max_chars`; a longer sentence is cut the
  same way, its last part packed with what follows.

The pieces depend on the text alone, never on how it was divided into deltas
(`cut_pieces(text)` gives the same), so a reply generated again yields the same pieces
for the same text, and spoken pieces can be reused by their text.
"""

from __future__ import annotations

from sparkjobs.execution.sentences import FIRST_PIECE_CHARS, MAX_PIECE_CHARS, complete_sentences

_CLAUSE_MARKS = frozenset(",;:\u2014")


class PieceCutter:
    """Speech pieces of a text fed in deltas: `feed` while it grows, `finish` at its end."""

    def __init__(
        self, *, first_chars: int = FIRST_PIECE_CHARS, max_chars: int = MAX_PIECE_CHARS
    ) -> None:
        if not 1 <= first_chars <= max_chars:
            raise ValueError(f"first_chars must be 1 to max_chars ({max_chars}), not {first_chars}")
        self._first_chars, self._max_chars = first_chars, max_chars
        self._raw = ""  # the text from the start of the sentence in progress
        self._consumed = 0  # characters of that sentence (normalized) already handed out
        self._packed = ""  # whole sentences waiting to fill a piece
        self.count = 0  # pieces handed out so far

    def feed(self, delta: str) -> list[str]:
        """Take more text; the pieces it decided, in order (often none)."""
        self._raw += delta
        sentences, self._raw = complete_sentences(self._raw)
        pieces: list[str] = []
        for sentence in sentences:
            pieces += self._advance(sentence[self._consumed :], complete=True)[0]
            self._consumed = 0
        current = " ".join(self._raw.split())[self._consumed :]
        if len(current) > self._first_chars:  # a long sentence: its head may be decided
            decided, left = self._advance(current, complete=False)
            pieces += decided
            self._consumed += len(current) - len(left)
        return pieces

    def finish(self) -> list[str]:
        """The text has ended: the pieces still held back."""
        tail = " ".join(self._raw.split())[self._consumed :]
        self._raw, self._consumed = "", 0
        pieces = self._advance(tail, complete=True)[0] if tail else []
        if self._packed:
            pieces.append(self._packed)
            self._packed = ""
            self.count += 1
        return pieces

    def _advance(self, text: str, *, complete: bool) -> tuple[list[str], str]:
        """Hand out what `text`, the rest of the sentence in progress, decides.

        Returns:
            The pieces decided, and the end of `text` still undecided (empty when
            the sentence is complete: what is left waits in `_packed`).
        """
        pieces: list[str] = []
        while text:
            limit = self._first_chars if self.count == 0 else self._max_chars
            if self.count == 0 and complete and len(text) <= limit:
                return self._out(pieces, text), ""  # the first sentence: spoken at once
            if self._packed and len(self._packed) + 1 + len(text) > self._max_chars:
                # This sentence (and whatever it grows to) cannot join the packed ones.
                pieces = self._out(pieces, self._packed)
                self._packed = ""
                continue
            if len(text) <= limit:
                if not complete:
                    return pieces, text
                self._packed = f"{self._packed} {text}" if self._packed else text
                return pieces, ""
            cut = _head_end(text, limit)
            if cut is None:  # one word longer than the limit
                if not complete:
                    return pieces, text  # still growing
                cut = len(text)
            pieces = self._out(pieces, text[:cut])
            text = text[cut + 1 :]
        return pieces, ""

    def _out(self, pieces: list[str], piece: str) -> list[str]:
        self.count += 1
        return [*pieces, piece]


def _head_end(text: str, limit: int) -> int | None:
    """Where to cut a sentence longer than `limit` (normalized, `len(text) > limit`):
    the last space within `limit` after a clause, else the last space within it, else
    the first space at all (a long word is a piece of its own); None: no space yet."""
    spaces = [i for i in range(1, limit + 1) if text[i] == " "]
    after_clause = [i for i in spaces if text[i - 1] in _CLAUSE_MARKS]
    if after_clause:
        return after_clause[-1]
    if spaces:
        return spaces[-1]
    found = text.find(" ", limit + 1)
    return None if found < 0 else found


def cut_pieces(
    text: str, *, first_chars: int = FIRST_PIECE_CHARS, max_chars: int = MAX_PIECE_CHARS
) -> list[str]:
    """The pieces `PieceCutter` makes of the whole of `text`.

    Joined with spaces they give `text` with its white space normalized.
    """
    cutter = PieceCutter(first_chars=first_chars, max_chars=max_chars)
    return cutter.feed(text) + cutter.finish()
