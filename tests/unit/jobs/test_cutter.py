"""Cutting a reply that is still being written into speech pieces, each as soon as it is decided."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from sparkjobs.execution.cutter import PieceCutter, cut_pieces
from sparkjobs.execution.sentences import FIRST_PIECE_CHARS, MAX_PIECE_CHARS

BRIEFING = (
    "Good morning. It is a bright day in Berlin, with a light wind from the west, and the "
    "forecast says the sun will stay out until late afternoon when clouds arrive. Traffic "
    "is calm. Markets opened higher."
)


def fed(text: str, size: int) -> list[list[str]]:
    """What the cutter hands out after each delta of `size` characters, then at the end."""
    cutter = PieceCutter()
    steps = [cutter.feed(text[i : i + size]) for i in range(0, len(text), size)]
    return [*steps, cutter.finish()]


def test_the_first_sentence_is_handed_out_as_soon_as_the_space_after_it_arrives() -> None:
    steps = fed(BRIEFING, 1)
    first = next(i for i, got in enumerate(steps) if got)
    assert steps[first] == ["Good morning."]
    assert first == len("Good morning. ") - 1  # the delta that brought the space


def test_later_sentences_are_packed_until_the_next_one_no_longer_fits() -> None:
    pieces = cut_pieces(BRIEFING)
    assert pieces[0] == "Good morning."
    assert pieces[1].startswith("It is a bright day")
    assert pieces[1].endswith("opened higher.")
    assert len(pieces) == 2


def test_a_long_first_sentence_is_cut_after_a_clause_before_it_ends() -> None:
    sentence = (
        "Across the northern districts this morning, where the rain has been heavy since "
        "midnight, the river has risen, and the roads along the bank are closed until "
        "further notice from the city."
    )
    steps = fed(sentence, 4)
    first = next(i for i, got in enumerate(steps) if got)
    assert steps[first] == [
        "Across the northern districts this morning, where the rain has been heavy since "
        "midnight, the river has risen,"
    ]
    assert first < len(steps) - 1  # before the sentence (and the text) ended
    assert len(steps[first][0]) <= FIRST_PIECE_CHARS


def test_a_word_longer_than_a_piece_is_a_piece_of_its_own() -> None:
    word = "x" * 400
    assert cut_pieces(f"Hi there. {word} and more.") == ["Hi there.", word, "and more."]


def test_nothing_comes_of_white_space() -> None:
    assert cut_pieces("  \n\n ") == []
    assert fed("   ", 1) == [[], [], [], []]


def test_a_short_text_without_a_sentence_end_is_handed_out_at_the_end() -> None:
    assert fed("Hello there", 3) == [[], [], [], [], ["Hello there"]]


_TEXT = st.text(alphabet=st.sampled_from('ab .,;!?\n\u2014"'), max_size=1200)


@settings(max_examples=300, deadline=None)
@given(_TEXT, st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60))
def test_the_pieces_depend_on_the_text_never_on_how_it_arrived(text: str, sizes: list[int]) -> None:
    cutter = PieceCutter()
    pieces: list[str] = []
    position = 0
    for size in sizes:
        pieces += cutter.feed(text[position : position + size])
        position += size
    pieces += cutter.feed(text[position:])
    pieces += cutter.finish()
    assert pieces == cut_pieces(text)
    assert cutter.count == len(pieces)


@settings(max_examples=300, deadline=None)
@given(_TEXT)
def test_the_pieces_keep_every_word_in_order_within_their_bounds(text: str) -> None:
    pieces = cut_pieces(text)
    assert " ".join(pieces) == " ".join(text.split())
    assert all(piece == piece.strip() and piece for piece in pieces)
    if pieces:
        assert len(pieces[0]) <= FIRST_PIECE_CHARS or " " not in pieces[0]
    assert all(len(piece) <= MAX_PIECE_CHARS or " " not in piece for piece in pieces)


def test_a_pieces_end_held_back_completes_it_either_way() -> None:
    from sparkjobs.backends.audio import wav_header
    from sparkjobs.execution.wavjoin import piece_ends, piece_pcm

    pcm = bytes(range(256)) * 40  # 5120 frames of 16-bit mono
    wav = wav_header(len(pcm), 24000, 1, 2) + pcm
    for first in (True, False):
        ends = piece_ends(wav, first=first)
        assert ends.head + ends.tail_more == piece_pcm(wav, first=first, last=False)[0]
        assert ends.head + ends.tail_last == piece_pcm(wav, first=first, last=True)[0]
        assert ends.tail_more != ends.tail_last  # the fade-out is all that waits
