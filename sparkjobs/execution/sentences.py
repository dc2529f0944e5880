"""Splitting long text for speech: at sentence boundaries, into pieces of bounded length.

Each piece is synthesized on its own, so a piece must end where a reader would pause:
after a sentence when possible, else after a clause, else between words. Emotion tags
such as <laugh> stay whole because no split falls inside a word.
"""

from __future__ import annotations

import re

MAX_PIECE_CHARS = 300
# The first piece of a speech is short, so that its audio comes first and soon: a
# serial TTS server speaks 300 characters in about 18 s, 120 in about 7.
FIRST_PIECE_CHARS = 120

# A sentence ends at . ! ? or … (with closing quotes or brackets) before white space.
_SENTENCE_END = re.compile(r"(?<=[.!?\u2026])([\"'\u201d\u2019)\]]*)\s+|\n\s*\n")
_CLAUSE_END = re.compile(r"(?<=[,;:—])\s+")
# A full stop after these is not the end of a sentence.
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e", "no", "fig"}
)


def split_sentences(text: str) -> list[str]:
    """The sentences of `text`, white space normalized, abbreviations kept together."""
    complete, rest = complete_sentences(text)
    tail = " ".join(rest.split())
    return [*complete, tail] if tail else complete


def complete_sentences(text: str) -> tuple[list[str], str]:
    """The sentences of `text` that no later text can change, and the rest as it is.

    A sentence is complete once the white space after its end has arrived: "Hello."
    alone may still become "Hello.\"" or belong to "Dr. Who". So text that is still
    being written (a chat's reply) can be read sentence by sentence as it grows.

    Returns:
        The complete sentences (white space normalized, empty ones dropped), and the
        text after the last of them, unnormalized.
    """
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        candidate = text[start : match.start() + len(match.group(1) or "")]
        last_word = candidate.rsplit(maxsplit=1)[-1] if candidate.split() else ""
        word = last_word.rstrip(".").lower()
        if last_word.endswith(".") and (word in _ABBREVIATIONS or len(word) == 1):
            continue  # "Dr. Smith", "J. Doe": the sentence goes on
        normalized = " ".join(candidate.split())
        if normalized:
            sentences.append(normalized)
        start = match.end()
    return sentences, text[start:]


def split_text(text: str, max_chars: int = MAX_PIECE_CHARS) -> list[str]:
    """Pieces of `text`, in order, each at most `max_chars` long (one word aside).

    Whole sentences are packed together while they fit; a sentence longer than
    `max_chars` is cut after clauses, then between words. A single word longer than
    `max_chars` becomes a piece of its own rather than being cut.

    Args:
        text: the text to speak.
        max_chars: the longest piece, in characters.

    Returns:
        The pieces; joined with spaces they give `text` with its white space normalized.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, not {max_chars}")
    units: list[str] = []
    for sentence in split_sentences(text):
        units.extend(_fit(sentence, max_chars))
    return _pack(units, max_chars)


def speech_pieces(
    text: str, *, first_chars: int = FIRST_PIECE_CHARS, max_chars: int = MAX_PIECE_CHARS
) -> list[str]:
    """The pieces of a speech in order of need: the first one short, the rest long.

    The first piece is the first sentence, or the first clause of a long one (then its
    first words), packed with what follows while it stays within `first_chars`; the
    others are packed up to `max_chars`, as `split_text` does, for fewer calls.

    Returns:
        The pieces; joined with spaces they give `text` with its white space normalized.
    """
    if not 1 <= first_chars <= max_chars:
        raise ValueError(f"first_chars must be 1 to max_chars ({max_chars}), not {first_chars}")
    sentences = split_sentences(text)
    if not sentences:
        return []
    units = _fit(sentences[0], first_chars)
    for sentence in sentences[1:]:
        units.extend(_fit(sentence, max_chars))
    first, used = units[0], 1
    while used < len(units) and len(first) + 1 + len(units[used]) <= first_chars:
        first, used = f"{first} {units[used]}", used + 1
    rest = " ".join(units[used:])
    return [first, *split_text(rest, max_chars)] if rest else [first]


def _fit(sentence: str, max_chars: int) -> list[str]:
    """A sentence as parts of at most `max_chars`: by clauses, then by words."""
    if len(sentence) <= max_chars:
        return [sentence]
    parts: list[str] = []
    for clause in _CLAUSE_END.split(sentence):
        if len(clause) <= max_chars:
            parts.append(clause)
        else:
            parts.extend(_pack(clause.split(), max_chars))
    return _pack(parts, max_chars)


def _pack(units: list[str], max_chars: int) -> list[str]:
    """Join consecutive units with spaces while the result stays within `max_chars`."""
    pieces: list[str] = []
    for unit in units:
        if pieces and len(pieces[-1]) + 1 + len(unit) <= max_chars:
            pieces[-1] = f"{pieces[-1]} {unit}"
        else:
            pieces.append(unit)
    return pieces
