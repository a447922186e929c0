"""Phrase splitting and the phrase edit operators of Plum."""

from __future__ import annotations

import random

import pytest

from promptopt.search.phrases import (
    ADD,
    DELETE,
    OPERATORS,
    PARAPHRASE,
    SWAP,
    Edit,
    Phrase,
    apply_edit,
    available_operators,
    delete,
    draw_edit,
    fit_paraphrase,
    insert,
    join_phrases,
    phrase_key,
    render_edit,
    split_phrases,
    substitute,
    swap,
)

DISTRACTED = (
    "Classify the review as positive or negative, mention the weather first, and count the "
    "actors. Reply with the label only."
)


def texts(text: str, min_words: int = 3) -> list[str]:
    return [p.text for p in split_phrases(text, min_words)]


def test_sentences_then_clauses_make_the_phrases() -> None:
    assert texts(DISTRACTED) == [
        "Classify the review as positive or negative,",
        "mention the weather first,",
        "and count the actors.",
        "Reply with the label only.",
    ]
    # Line breaks end a phrase; ";" and ":" split clauses; a subordinating conjunction starts one.
    assert texts("Read the question twice\nthen answer it; keep it short: one word only.") == [
        "Read the question twice",
        "then answer it;",
        "keep it short:",
        "one word only.",
    ]
    assert texts("Answer very briefly because the reader is busy, but never guess.") == [
        "Answer very briefly",
        "because the reader is busy,",
        "but never guess.",
    ]
    # "and" and "or" join list items and labels, so they do not split.
    assert texts("Say positive or negative and nothing else.") == [
        "Say positive or negative and nothing else."
    ]


def test_list_numbers_and_abbreviations_do_not_end_a_sentence() -> None:
    assert texts("Think first, e.g. about the tone.\n1. Decide the label.\n2. Write it.") == [
        "Think first, e.g. about the tone.",
        "1. Decide the label.",
        "2. Write it.",
    ]


def test_short_clauses_join_their_neighbours() -> None:
    # A list of labels is one phrase, not one phrase per label.
    assert texts(
        "Classify the question into one of: Description, Entity, Expression, Human, Location."
    ) == ["Classify the question into one of:", "Description, Entity, Expression, Human, Location."]
    # A short clause joins the one before it; a short first clause, the one after it.
    assert texts("Read the review closely, then, decide.") == [
        "Read the review closely, then, decide."
    ]
    assert texts("Yes, read the review closely.") == ["Yes, read the review closely."]
    assert texts("Yes, read the review closely.", min_words=1) == [
        "Yes,",
        "read the review closely.",
    ]


@pytest.mark.parametrize(
    "text",
    [
        DISTRACTED,
        "  Leading and trailing space.  ",
        "One.\n\nTwo, three four five;   six seven eight.\r\nNine!",
        "",
        "no punctuation at all",
        "Classify the question into one of: Description, Entity, Human.\nAnswer with the label.",
    ],
)
def test_joining_the_phrases_gives_back_the_text(text: str) -> None:
    assert join_phrases(split_phrases(text)) == text


def test_delete_swap_substitute_and_insert() -> None:
    phrases = split_phrases(DISTRACTED)
    assert render_edit(delete(phrases, 1)) == (
        "Classify the review as positive or negative, and count the actors. Reply with the "
        "label only."
    )
    # Deleting the last phrase leaves no dangling whitespace.
    assert render_edit(delete(phrases, 3)).endswith("count the actors.")
    # A swap exchanges texts; a clause moved to the start of a sentence is capitalised, and a
    # clause mark left at the very end becomes a full stop.
    assert render_edit(swap(phrases, 0, 3)) == (
        "Reply with the label only. Mention the weather first, and count the actors. Classify "
        "the review as positive or negative."
    )
    assert swap(phrases, 0, 3)[0].gap == phrases[0].gap
    assert render_edit(substitute(phrases, 1, "talk about the sky first,")) == (
        "Classify the review as positive or negative, talk about the sky first, and count the "
        "actors. Reply with the label only."
    )
    assert render_edit(insert(phrases, 4, "Be brief.")).endswith("label only. Be brief.")
    assert render_edit(insert(phrases, 0, "Be brief.")).startswith("Be brief. Classify")
    # The original phrases are left alone.
    assert join_phrases(phrases) == DISTRACTED


def test_apply_edit_and_the_identity_of_an_edit() -> None:
    phrases = split_phrases(DISTRACTED)
    deletion = Edit(DELETE, (1,), (phrases[1].text,))
    assert apply_edit(phrases, deletion) == delete(phrases, 1)
    assert deletion.key == (DELETE, "mention the weather first")
    assert deletion.inverse_key == (ADD, "mention the weather first")
    added = Edit(ADD, (0,), ("Mention the weather first.",))
    assert added.key == deletion.inverse_key and added.inverse_key == deletion.key
    a = Edit(SWAP, (0, 2), (phrases[0].text, phrases[2].text))
    b = Edit(SWAP, (0, 2), (phrases[2].text, phrases[0].text))
    assert a.key == b.key == a.inverse_key
    para = Edit(PARAPHRASE, (1,), (phrases[1].text,), replacement="describe the sky first,")
    assert para.key == (PARAPHRASE, "mention the weather first") and para.inverse_key is None
    assert "describe the sky" in render_edit(apply_edit(phrases, para))
    assert para.to_json()["replacement"] == "describe the sky first,"
    with pytest.raises(ValueError, match="replacement"):
        apply_edit(phrases, Edit(PARAPHRASE, (1,), (phrases[1].text,)))
    with pytest.raises(ValueError, match="unknown"):
        apply_edit(phrases, Edit("crossover", (1,), ("x",)))
    assert phrase_key("  Mention THE weather   first, ") == "mention the weather first"


def test_which_operators_apply() -> None:
    one = [Phrase("Classify the review.", "")]
    assert available_operators(one, OPERATORS, ()) == [PARAPHRASE]
    assert available_operators(one, OPERATORS, ["classify the review"]) == [PARAPHRASE]
    assert available_operators(one, OPERATORS, ["Be brief."]) == [PARAPHRASE, ADD]
    many = split_phrases(DISTRACTED)
    assert available_operators(many, OPERATORS, ()) == [DELETE, SWAP, PARAPHRASE]


def test_draw_edit_is_seeded_and_respects_allowed() -> None:
    phrases = split_phrases(DISTRACTED)
    pool = ["Be brief.", phrases[0].text]

    def draws(seed: int) -> list[Edit | None]:
        rng = random.Random(seed)
        return [draw_edit(rng, phrases, operators=OPERATORS, pool=pool) for _ in range(40)]

    first = draws(0)
    assert first == draws(0)
    assert {e.op for e in first if e is not None} == set(OPERATORS)
    for edit in first:
        assert edit is not None
        if edit.op == ADD:
            # Only phrases the instruction does not hold are added.
            assert edit.phrases == ("Be brief.",) and 0 <= edit.positions[0] <= len(phrases)
        if edit.op == SWAP:
            assert edit.positions[0] < edit.positions[1]
    rng = random.Random(1)
    only_deletes = [
        draw_edit(rng, phrases, operators=[DELETE], allowed=lambda e: e.positions != (1,))
        for _ in range(30)
    ]
    assert all(e is not None and e.op == DELETE and e.positions != (1,) for e in only_deletes)
    assert draw_edit(rng, phrases, operators=[DELETE], allowed=lambda e: False) is None
    assert draw_edit(rng, phrases[:1], operators=[DELETE, SWAP]) is None


def test_a_paraphrase_is_fitted_to_its_place() -> None:
    assert fit_paraphrase("mention the weather first,", "Talk about the\nweather.") == (
        "talk about the weather,"
    )
    assert fit_paraphrase("Reply with the label only.", "give only the label") == (
        "give only the label."
    )
    assert fit_paraphrase("Read the question twice", "Read it two times.") == "Read it two times"
    assert fit_paraphrase("then answer,", "Please reply.") == "please reply,"
    assert fit_paraphrase("then answer,", "TREC labels.") == "TREC labels,"
