"""Splitting long text at sentence boundaries into pieces of bounded length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparkjobs.execution.sentences import (
    FIRST_PIECE_CHARS,
    MAX_PIECE_CHARS,
    speech_pieces,
    split_sentences,
    split_text,
)


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("Dr. Smith met Mr. J. Doe. Then they left.",
         ["Dr. Smith met Mr. J. Doe.", "Then they left."]),
        ("Pi is 3.14 exactly. Yes.", ["Pi is 3.14 exactly.", "Yes."]),
        ('He said "stop." Then silence.', ['He said "stop."', "Then silence."]),
        ("Wait… what?  Really", ["Wait…", "what?", "Really"]),
        ("Para one\n\nPara two", ["Para one", "Para two"]),
        ("  ", []),
    ],
)  # fmt: skip
def test_sentences_end_at_terminal_punctuation_not_at_abbreviations(
    text: str, sentences: list[str]
) -> None:
    assert split_sentences(text) == sentences


def test_short_text_is_one_piece() -> None:
    assert split_text("Hello there. How are you?", 300) == ["Hello there. How are you?"]


def test_sentences_are_packed_while_they_fit() -> None:
    text = "Aaaa aaaa. Bbbb bbbb. Cccc cccc. Dddd dddd."
    assert split_text(text, 21) == ["Aaaa aaaa. Bbbb bbbb.", "Cccc cccc. Dddd dddd."]


def test_a_long_sentence_is_cut_after_clauses_then_between_words() -> None:
    text = "first clause here, second clause here; and a third one that is much too long"
    pieces = split_text(text, 20)
    assert pieces[:2] == ["first clause here,", "second clause here;"]
    assert all(len(piece) <= 20 for piece in pieces)
    assert " ".join(pieces) == text


def test_a_word_longer_than_the_limit_is_kept_whole() -> None:
    assert split_text("a supercalifragilistic b", 10) == ["a", "supercalifragilistic", "b"]


def test_emotion_tags_are_never_cut() -> None:
    pieces = split_text("I can't believe it <laugh> really. " * 20, 50)
    assert all(piece.count("<") == piece.count(">") for piece in pieces)


@pytest.mark.parametrize("limit", [5, 17, 40, 100, 300])
def test_pieces_are_bounded_and_lose_nothing(limit: int) -> None:
    text = (
        "The morning is bright, and the river runs high after the rain. "
        "Markets open at nine; traffic is light. Dr. Jones expects 12.5 mm of rain! "
        "Will it last? Nobody knows… but the forecast says so.\n\nThat is all."
    )
    pieces = split_text(text, limit)
    assert " ".join(pieces) == " ".join(text.split())
    assert all(len(p) <= limit or " " not in p for p in pieces)
    assert all(p == p.strip() and p for p in pieces)


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_text("x", 0)


SPEECH = " ".join(
    f"Part {n}: the morning opens grey over the river, and the first trams cross the bridge."
    for n in range(12)
)


def test_the_first_piece_of_a_speech_is_its_first_sentence_and_the_rest_are_long() -> None:
    pieces = speech_pieces(SPEECH)
    first = "Part 0: the morning opens grey over the river, and the first trams cross the bridge."
    assert pieces[0] == first
    assert len(pieces[0]) <= FIRST_PIECE_CHARS
    assert all(len(piece) <= MAX_PIECE_CHARS for piece in pieces)
    assert max(len(piece) for piece in pieces[1:]) > FIRST_PIECE_CHARS  # later ones pack
    assert " ".join(pieces) == " ".join(SPEECH.split())


def test_a_long_first_sentence_gives_its_first_clause_first() -> None:
    long = "When the council meets at ten, " + "it votes on the new lanes downtown " * 8 + "today."
    pieces = speech_pieces(long + " Then it rains.")
    assert pieces[0] == "When the council meets at ten,"
    assert " ".join(pieces) == " ".join((long + " Then it rains.").split())


def test_a_short_text_is_one_piece_and_short_sentences_share_the_first() -> None:
    assert speech_pieces("Hello there. How are you?") == ["Hello there. How are you?"]
    assert speech_pieces("   ") == []


@given(st.text(alphabet=st.sampled_from("ab .,;!?\n"), max_size=900))
def test_speech_pieces_keep_every_word_in_order_within_their_bounds(text: str) -> None:
    pieces = speech_pieces(text)
    assert " ".join(pieces) == " ".join(text.split())
    if pieces:
        assert len(pieces[0]) <= FIRST_PIECE_CHARS or " " not in pieces[0]
    assert all(len(piece) <= MAX_PIECE_CHARS or " " not in piece for piece in pieces)
