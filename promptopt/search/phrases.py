"""Phrases of an instruction and the edits Plum's metaheuristics make to them (Pan et al., 2024).

An instruction is split into phrases without any model, by three rules applied in order:

1. **Sentences**: a break after `.`, `!` or `?` followed by whitespace, and at every line break.
   A list number ("1.", "a.") or a common abbreviation ("e.g.", "i.e.", "etc.") is not a
   sentence end.
2. **Clauses**: within a sentence, a break after `,`, `;` or `:` followed by whitespace, and
   before the subordinating conjunctions in `CONJUNCTIONS`. "and" and "or" are not among them:
   they mostly join list items and labels ("positive or negative"), which are not phrases.
3. **Short clauses join their neighbour**: a clause of fewer than `min_words` words is merged
   into the clause before it (the first into the one after), so that a list of labels
   ("Description, Entity, Human.") stays one phrase instead of one phrase per label.

Each phrase keeps the whitespace that followed it, so joining the phrases of an unedited
instruction gives back its exact text (`join_phrases`). An edited instruction is rendered with
a light tidy-up (`render_edit`).

The edits are the paper's four: delete a phrase, swap two phrases, paraphrase a phrase (the
only one that needs the optimizer model, so the text of its replacement comes from the caller),
and add a phrase from a pool. An edit is identified by its operator and the phrases it touches
(`Edit.key`), which is what a tabu list remembers.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

DELETE = "delete"
SWAP = "swap"
PARAPHRASE = "paraphrase"
ADD = "add"
OPERATORS = (DELETE, SWAP, PARAPHRASE, ADD)
"""The edit operators, in the order they are listed and drawn."""

CONJUNCTIONS = ("but", "because", "although", "though", "whereas", "while", "unless", "so that")
"""Conjunctions a clause break is made before."""

MIN_WORDS = 3
"""Clauses shorter than this many words join their neighbour (rule 3)."""

_SENTENCE = re.compile(r"(?<=[.!?])[ \t]*\n\s*|(?<=[.!?])[ \t]+|\s*\n\s*")
_CLAUSE = re.compile(
    r"(?<=[,;:])\s+|\s+(?=(?:" + "|".join(c.replace(" ", r"\s+") for c in CONJUNCTIONS) + r")\b)"
)
# A word ending in "." that does not end a sentence: a list number or letter, an abbreviation.
_NOT_AN_END = re.compile(r"(?:^|\s)(?:\(?\d{1,3}\.|\(?[A-Za-z]\.|e\.g\.|i\.e\.|etc\.|vs\.|cf\.)$")
_TRAILING_PUNCT = re.compile(r"[\s.,;:!?]+$")


@dataclass(frozen=True)
class Phrase:
    """A phrase of an instruction and the whitespace that followed it."""

    text: str
    gap: str = " "


def _cut(text: str, pattern: re.Pattern[str], keep: Callable[[str], bool]) -> list[Phrase]:
    """Split `text` where `pattern` matches (the match is the gap), unless `keep(before)`."""
    out: list[Phrase] = []
    start = 0
    for match in pattern.finditer(text):
        body = text[start : match.start()]
        if not body.strip() or keep(text[: match.start()]):
            continue
        out.append(Phrase(body, match.group()))
        start = match.end()
    out.append(Phrase(text[start:], ""))
    return out


def _merge_short(clauses: list[Phrase], min_words: int) -> list[Phrase]:
    """Runs of short clauses become one phrase; a run still short joins the clause before it
    (or, at the start, the one after it)."""

    def short(p: Phrase) -> bool:
        return len(p.text.split()) < min_words

    def join(a: Phrase, b: Phrase) -> Phrase:
        return Phrase(a.text + a.gap + b.text, b.gap)

    runs: list[tuple[Phrase, bool]] = []
    for clause in clauses:
        if runs and short(clause) and runs[-1][1]:
            runs[-1] = (join(runs[-1][0], clause), True)
        else:
            runs.append((clause, short(clause)))
    merged: list[Phrase] = []
    pending: Phrase | None = None
    for phrase, _ in runs:
        if pending is not None:
            phrase, pending = join(pending, phrase), None
        if short(phrase):
            if merged:
                merged[-1] = join(merged[-1], phrase)
                continue
            pending = phrase
            continue
        merged.append(phrase)
    if pending is not None:
        merged.append(pending)
    return merged


def split_phrases(text: str, min_words: int = MIN_WORDS) -> list[Phrase]:
    """The phrases of an instruction (see the module's rules); `join_phrases` of the result is
    `text` exactly.

    Args:
        text: The instruction.
        min_words: Clauses with fewer words join a neighbouring clause.

    Returns:
        The phrases in order; one phrase (maybe empty) for text without breaks.
    """
    phrases: list[Phrase] = []
    for sentence in _cut(text, _SENTENCE, lambda before: bool(_NOT_AN_END.search(before))):
        clauses = _cut(sentence.text, _CLAUSE, lambda before: False)
        clauses = _merge_short(clauses, min_words)
        last = clauses[-1]
        clauses[-1] = Phrase(last.text, last.gap + sentence.gap)
        phrases.extend(clauses)
    return phrases


def join_phrases(phrases: Sequence[Phrase]) -> str:
    """The phrases joined with the whitespace that followed each."""
    return "".join(p.text + p.gap for p in phrases)


def render_edit(phrases: Sequence[Phrase]) -> str:
    """An edited instruction's text: the phrases joined (a space where two would touch), with
    surrounding whitespace removed, a sentence's first letter upper case, and a full stop for
    a comma or semicolon left before a sentence and for a clause mark (",", ";", ":") left at
    the very end."""
    parts: list[str] = []
    for i, phrase in enumerate(phrases):
        text = phrase.text.strip()
        if not text:
            continue
        if text[0].islower() and (not parts or parts[-1].rstrip()[-1:] in (".", "!", "?")):
            # A clause moved to the start of a sentence.
            text = text[0].upper() + text[1:]
        if parts and parts[-1].rstrip()[-1:] in (",", ";") and re.match(r"[A-Z][a-z]", text):
            # A sentence moved after a clause: the clause now ends the sentence before it.
            parts[-1] = re.sub(r"[,;](\s*)$", r".\1", parts[-1])
        gap = phrase.gap if phrase.gap else " "
        parts.append(text + (gap if i < len(phrases) - 1 else ""))
    out = "".join(parts).strip()
    if out and out[-1] in ",;:":
        out = out[:-1] + "."
    return out


def phrase_key(text: str) -> str:
    """The form under which two phrases are the same: case, spacing and closing punctuation
    do not count."""
    return _TRAILING_PUNCT.sub("", " ".join(text.split()).casefold())


@dataclass(frozen=True)
class Edit:
    """One edit of an instruction's phrases.

    `positions` are indices into the phrases edited: the phrase deleted or paraphrased, the two
    swapped, or where the added phrase goes (0 to len). `phrases` are the texts involved: the
    phrase deleted or paraphrased, the two swapped, or the phrase added. `replacement` is a
    paraphrase's new text, once the optimizer has given it.
    """

    op: str
    positions: tuple[int, ...]
    phrases: tuple[str, ...]
    replacement: str | None = None

    @property
    def key(self) -> tuple[str, ...]:
        """The edit's identity: its operator and the phrases it touches (a swap's in sorted
        order, since swapping a with b is swapping b with a)."""
        keys = [phrase_key(p) for p in self.phrases]
        if self.op == SWAP:
            keys.sort()
        return (self.op, *keys)

    @property
    def inverse_key(self) -> tuple[str, ...] | None:
        """The key of the edit that undoes this one, when there is such an edit: deleting a
        phrase undoes adding it and the reverse, and a swap undoes itself. A paraphrase has
        none, since no operator puts the old wording back."""
        if self.op == DELETE:
            return (ADD, *self.key[1:])
        if self.op == ADD:
            return (DELETE, *self.key[1:])
        if self.op == SWAP:
            return self.key
        return None

    def to_json(self) -> dict[str, Any]:
        """The edit as a lineage record shows it."""
        out: dict[str, Any] = {
            "op": self.op,
            "positions": list(self.positions),
            "phrases": list(self.phrases),
        }
        if self.replacement is not None:
            out["replacement"] = self.replacement
        return out


def delete(phrases: Sequence[Phrase], i: int) -> list[Phrase]:
    """The phrases without phrase `i`."""
    return [p for j, p in enumerate(phrases) if j != i]


def swap(phrases: Sequence[Phrase], i: int, j: int) -> list[Phrase]:
    """The phrases with the texts of `i` and `j` exchanged; the whitespace stays in place."""
    out = list(phrases)
    out[i] = Phrase(phrases[j].text, phrases[i].gap)
    out[j] = Phrase(phrases[i].text, phrases[j].gap)
    return out


def substitute(phrases: Sequence[Phrase], i: int, text: str) -> list[Phrase]:
    """The phrases with phrase `i`'s text replaced by `text`."""
    out = list(phrases)
    out[i] = Phrase(text, phrases[i].gap)
    return out


def insert(phrases: Sequence[Phrase], i: int, text: str) -> list[Phrase]:
    """The phrases with `text` added as a new phrase at position `i` (0 to len)."""
    out = list(phrases)
    out.insert(i, Phrase(text, " "))
    return out


def apply_edit(phrases: Sequence[Phrase], edit: Edit) -> list[Phrase]:
    """The phrases after `edit`.

    Raises:
        ValueError: a paraphrase without its replacement, or an unknown operator.
    """
    if edit.op == DELETE:
        return delete(phrases, edit.positions[0])
    if edit.op == SWAP:
        return swap(phrases, edit.positions[0], edit.positions[1])
    if edit.op == ADD:
        return insert(phrases, edit.positions[0], edit.phrases[0])
    if edit.op == PARAPHRASE:
        if edit.replacement is None:
            raise ValueError("a paraphrase edit needs its replacement text")
        return substitute(phrases, edit.positions[0], edit.replacement)
    raise ValueError(f"unknown edit operator {edit.op!r}")


def available_operators(
    phrases: Sequence[Phrase], operators: Sequence[str], pool: Sequence[str]
) -> list[str]:
    """The operators of `operators` that can edit these phrases: deleting and swapping need
    two phrases (an instruction is never left empty), adding needs a pool phrase the
    instruction does not already hold."""
    present = {phrase_key(p.text) for p in phrases}
    out = []
    for op in operators:
        if op in (DELETE, SWAP) and len(phrases) < 2:
            continue
        if op == ADD and not any(phrase_key(t) not in present for t in pool):
            continue
        out.append(op)
    return out


def draw_edit(
    rng: random.Random,
    phrases: Sequence[Phrase],
    *,
    operators: Sequence[str],
    pool: Sequence[str] = (),
    allowed: Callable[[Edit], bool] = lambda edit: True,
    attempts: int = 20,
) -> Edit | None:
    """A random edit of the phrases, with the operator drawn uniformly among those that apply,
    then its phrases and position uniformly; an edit `allowed` refuses (tabu, already made
    this step) is drawn again, up to `attempts` times.

    Args:
        rng: The run's seeded random generator.
        phrases: The instruction's phrases.
        operators: The operators that may be used.
        pool: Phrases an `add` may insert (those the instruction holds are left out).
        allowed: Whether an edit may be made.
        attempts: Draws before giving up.

    Returns:
        The edit (a paraphrase without its replacement), or None when none was allowed.
    """
    present = {phrase_key(p.text) for p in phrases}
    addable = sorted({phrase_key(t): t for t in pool if phrase_key(t) not in present}.values())
    ops = available_operators(phrases, operators, addable)
    for _ in range(attempts if ops else 0):
        op = ops[rng.randrange(len(ops))]
        n = len(phrases)
        if op == DELETE:
            i = rng.randrange(n)
            edit = Edit(DELETE, (i,), (phrases[i].text,))
        elif op == SWAP:
            i, j = sorted(rng.sample(range(n), 2))
            edit = Edit(SWAP, (i, j), (phrases[i].text, phrases[j].text))
        elif op == ADD:
            text = addable[rng.randrange(len(addable))]
            edit = Edit(ADD, (rng.randrange(n + 1),), (text,))
        else:
            i = rng.randrange(n)
            edit = Edit(PARAPHRASE, (i,), (phrases[i].text,))
        if edit.op == SWAP and phrase_key(edit.phrases[0]) == phrase_key(edit.phrases[1]):
            continue
        if allowed(edit):
            return edit
    return None


def fit_paraphrase(original: str, paraphrase: str) -> str:
    """A paraphrase made to fit in its phrase's place: on one line, starting in lower case
    when the original did, and ending with the original's closing punctuation (a clause's
    comma stays a comma, a sentence's full stop a full stop), so that the sentence around it
    still reads."""
    text = " ".join(paraphrase.split())
    text = _TRAILING_PUNCT.sub("", text)
    start = original.lstrip()[:1]
    if start.islower() and re.match(r"[A-Z][a-z]", text):
        # A clause inside a sentence stays one: "Please check" in place of "check".
        text = text[0].lower() + text[1:]
    stripped = original.rstrip()
    ending = stripped[len(_TRAILING_PUNCT.sub("", stripped)) :].strip()
    return text + ending[-1:] if ending else text
