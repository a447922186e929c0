"""Pull a proposed instruction (or a list of items) out of an optimizer model's verbose reply.

Small and local models wrap their answer in chatter: "Sure! Here's the improved prompt:", code
fences, quotes, bold, and an explanation afterwards. The rules here are deliberately simple and
applied in a fixed order so that the result is predictable:

1. Reasoning blocks (`<think>...</think>`) are removed; if one is never closed, only text after
   it would count, so the reply has no answer.
2. The first `<START>...<END>` span of at least `min_chars` wins (tags in any case; `</START>`
   also closes). Shorter spans, such as an echoed "between <START> and <END>", are skipped; if
   every span is short, the first non-empty one is kept (and rejected as too short). A START
   with no END runs to the end of the reply and is then treated as prose (rule 4).
3. Otherwise the first non-empty fenced code block wins (an unterminated fence runs to the end).
4. Otherwise the prose rules apply: leading chatter paragraphs are dropped, and the answer ends at
   the first later paragraph that starts like an explanation ("This prompt ...", "Explanation:",
   "Note:", "Let me know ...").
5. The chosen text is cleaned: a label such as "Instruction:" or "Here is the improved prompt:"
   is removed from its start, then one layer of surrounding quotes, backticks or Markdown bold,
   a Markdown blockquote (`> `) around the whole text, and a single leading list marker.
6. The result is checked, in this order: empty → refusal, degenerate text or an echo of the
   meta-prompt → too long → too short.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

RejectReason = Literal["empty", "too_long", "degenerate", "no_instruction"]


@dataclass(frozen=True)
class Extraction:
    """The outcome of extracting one instruction.

    Accepted: `text` is the cleaned instruction and `reason` is None. Rejected: `text` is empty,
    `reason` is a short code and `message` explains it to a human.
    """

    text: str
    reason: RejectReason | None = None
    message: str = ""

    @property
    def accepted(self) -> bool:
        """True when an instruction was found and passed every check."""
        return self.reason is None

    @classmethod
    def reject(cls, reason: RejectReason, message: str) -> Extraction:
        """A rejected extraction."""
        return cls("", reason, message)


_THINK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.IGNORECASE | re.DOTALL)
_THINK_OPEN = re.compile(r"<think(?:ing)?>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think(?:ing)?>", re.IGNORECASE)
_FENCE = re.compile(
    r"^[ \t]*```+([^\n`]*)\n(.*?)(?:^[ \t]*```+[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)
_LANG_TAG = re.compile(r"[A-Za-z0-9_+.#-]*")

_LABEL_WORDS = (
    r"(?:instructions?|prompts?|versions?|variations?|paraphrases?|rewrites?|revisions?"
    r"|answer|output|response|result|reasons?|issues?|problems?|system (?:prompt|message))"
)
_LABEL_ADJECTIVES = (
    r"(?:new|improved|revised|updated|better|final|rewritten|modified|paraphrased|optimi[sz]ed"
    r"|suggested|proposed|edited|alternative|refined|enhanced|corrected|inferred|candidate"
    r"|rephrased|generated)"
)
# A bare label line: "Instruction:", "**Improved prompt 2:**", "### New prompt".
_LABEL = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:(?:the|my|an?|your|one)[ \t]+)?"
    rf"(?:{_LABEL_ADJECTIVES}[ \t]+)*{_LABEL_WORDS}(?:[ \t]*#?\d+)?[ \t]*(?:\*\*|__)?"
    r"[ \t]*:[ \t]*(?:\*\*|__)?[ \t]*",
    re.IGNORECASE,
)
_HEADING_LABEL = re.compile(
    rf"^[ \t]*#{{1,6}}[ \t]*(?:(?:the|my|an?|your)[ \t]+)?(?:{_LABEL_ADJECTIVES}[ \t]+)*"
    rf"{_LABEL_WORDS}(?:[ \t]*#?\d+)?[ \t]*:?[ \t]*$",
    re.IGNORECASE,
)
_CHATTER_START = (
    r"(?:sure|certainly|of course|okay|ok|absolutely|great|alright|all right|yes|no problem"
    r"|here(?:'s|\u2019s| is| are)|below is|below are"
    r"|i(?:'ve| have) (?:rewritten|revised|improved))"
)
# "Sure! Here's an improved version of the prompt: Classify ..." -> keep what follows the colon.
_CHATTER_LABEL = re.compile(
    rf"^[ \t]*{_CHATTER_START}\b[^\n:]{{0,160}}?\b{_LABEL_WORDS}\b[^\n:]{{0,60}}:[ \t]*",
    re.IGNORECASE,
)
# A whole chatter line, e.g. "Sure!" or "Certainly, here is a variation." on its own.
_CHATTER_LINE = re.compile(rf"^[ \t]*{_CHATTER_START}\b[^\n]{{0,200}}$", re.IGNORECASE)
_EXPLANATION = re.compile(
    r"^[ \t]*(?:\*\*|__)?[ \t]*(?:"
    r"this (?:\w+ )?(?:prompt|instruction|version|variation|rewrite|paraphrase|revision|wording"
    r"|change|edit)s?\b"
    r"|this (?:should|will|helps|ensures|makes|keeps|clarifies|addresses|emphasi[sz]es"
    r"|way|approach)\b"
    r"|these (?:changes|edits|revisions|improvements|modifications)\b"
    r"|the (?:new|improved|revised|updated|rewritten|above|modified)"
    r" (?:prompt|instruction|version)\b"
    r"|(?:explanation|rationale|reasoning|note|notes|changes(?: made)?|key changes|improvements"
    r"|why this works)\b[^\n]{0,20}:"
    r"|(?:i|we) (?:added|changed|made|removed|rewrote|revised|clarified|included|kept)\b"
    r"|here(?:'s|\u2019s| is) why\b|in this (?:version|prompt|revision|rewrite)\b"
    r"|let me know\b|i hope\b|hope this\b|feel free\b"
    r")",
    re.IGNORECASE,
)
_REFUSAL = re.compile(
    r"^[ \t\"'*]*(?:i[' \u2019]?m sorry|i am sorry|sorry,|i apologi[sz]e|i cannot|i can[' \u2019]?t"
    r"|i can not|i[' \u2019]?m (?:not able|unable)|i am (?:not able|unable)|i won[' \u2019]?t"
    r"|i will not|as an ai\b|unfortunately,? i)",
    re.IGNORECASE,
)
_LIST_MARKER = re.compile(r"^[ \t]*(?:[-*+•]|\d{1,2}[.)]|\(\d{1,2}\))[ \t]+")
_QUOTES = {'"': '"', "'": "'", "\u201c": "\u201d", "\u2018": "\u2019", "`": "`", "«": "»"}
_WORD = re.compile(r"\w+")


def extract_instruction(
    text: str,
    *,
    max_chars: int = 2000,
    min_chars: int = 8,
    start: str = "<START>",
    end: str = "<END>",
    echo_of: Iterable[str] = (),
) -> Extraction:
    """Extract one instruction from a model's reply, or say why there is none.

    Follows the module's numbered rules. Reason codes: "empty" (the reply is blank), "degenerate"
    (a refusal, only punctuation, heavy repetition of lines or words, or a repeat of a line of
    `echo_of`, normally `MetaPrompt.literal_lines()`), "too_long" (more than `max_chars`),
    "no_instruction" (nothing left after removing chatter, or shorter than `min_chars`).
    """
    if not text.strip():
        return Extraction.reject("empty", "the reply is empty")
    body = _strip_thinking(text.replace("\r\n", "\n"))
    if body is None:
        return Extraction.reject(
            "no_instruction", "the reply is an unfinished <think> block with no answer after it"
        )
    candidate = _candidate(body, start, end, min_chars)
    return _check(candidate, max_chars=max_chars, min_chars=min_chars, echo_of=echo_of)


def extract_all(text: str, start: str = "<START>", end: str = "<END>") -> list[str]:
    """Extract several delimited items, e.g. the reasons of a ProTeGi gradient.

    With delimiters: every non-empty span from a `start` tag to the next `end` tag (or the next
    `start`, or the end of the reply), in order. Without: the items of the first numbered or
    bulleted list (a line with a marker starts an item; indented or continuing lines join it; a
    blank line followed by unmarked text ends the list). With neither: the reply as a single item
    if `extract_instruction` accepts it, else nothing. Items are cleaned like instructions but not
    validated: run `extract_instruction` on an item to apply the checks.
    """
    body = _strip_thinking(text.replace("\r\n", "\n"))
    if body is None or not body.strip():
        return []
    start_re, end_re = _tag_patterns(start, end)
    starts = list(start_re.finditer(body))
    if starts:
        items = []
        for i, match in enumerate(starts):
            limit = starts[i + 1].start() if i + 1 < len(starts) else len(body)
            closing = end_re.search(body, match.end(), limit)
            items.append(body[match.end() : closing.start() if closing else limit])
        return [item for item in (_clean(i) for i in items) if item]
    listed = _list_items(body)
    if listed:
        return [item for item in (_clean(i) for i in listed) if item]
    single = extract_instruction(body, start=start, end=end)
    return [single.text] if single.accepted else []


def _strip_thinking(text: str) -> str | None:
    text = _THINK.sub("", text)
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        # Some chat templates drop the opening tag: everything before the close was reasoning.
        text = text[closes[-1].end() :]
    if _THINK_OPEN.search(text):
        return None
    return text


# A delimiter left behind (an unmatched or misspelt closing tag) is never part of an instruction.
_STRAY_TAG = re.compile(r"</?\s*(?:START|END)\s*>", re.IGNORECASE)


def _tag_patterns(start: str, end: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    start_re = re.compile(re.escape(start), re.IGNORECASE)
    closers = [re.escape(end)]
    # Small models also close with "</START>" or "</END>".
    for tag in (start, end):
        if tag.startswith("<") and tag.endswith(">"):
            closers.append(re.escape("</" + tag[1:]))
    return start_re, re.compile("|".join(closers), re.IGNORECASE)


def _candidate(body: str, start: str, end: str, min_chars: int) -> str:
    start_re, end_re = _tag_patterns(start, end)
    spans: list[str] = []
    unterminated: str | None = None
    for match in start_re.finditer(body):
        closing = end_re.search(body, match.end())
        if closing is None:
            unterminated = body[match.end() :]
            break
        inside = _clean(body[match.end() : closing.start()])
        # An echoed "write it between <START> and <END>" yields a tiny span: look further.
        if len(inside) >= min_chars:
            return inside
        spans.append(inside)
    if unterminated is not None:
        return _clean(_prose(unterminated))
    if spans:
        return next((span for span in spans if span), "")
    for fence in _FENCE.finditer(body):
        info, inside = fence.group(1).strip(), fence.group(2)
        if info and not _LANG_TAG.fullmatch(info):
            # "```Classify the ..." puts text on the fence line itself.
            inside = info + "\n" + inside
        if inside.strip():
            return _clean(inside)
    return _clean(_prose(body))


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _prose(text: str) -> str:
    """Drop leading chatter paragraphs and everything from the first explanation paragraph."""
    paragraphs = _paragraphs(text)
    while len(paragraphs) > 1 and _is_chatter(paragraphs[0]):
        paragraphs.pop(0)
    if paragraphs:
        first_lines = paragraphs[0].split("\n")
        # A chatter or label line heading the first paragraph: "Here is the prompt:\nClassify..."
        while len(first_lines) > 1 and _is_chatter(first_lines[0]):
            first_lines.pop(0)
        paragraphs[0] = "\n".join(first_lines)
    kept = paragraphs[:1]
    for paragraph in paragraphs[1:]:
        if _EXPLANATION.match(paragraph):
            break
        kept.append(paragraph)
    return "\n\n".join(kept)


def _is_chatter(paragraph: str) -> bool:
    if "\n" in paragraph.strip():
        return False
    line = paragraph.strip()
    if _HEADING_LABEL.match(line):
        return True
    if _LABEL.fullmatch(line) or (_CHATTER_LABEL.match(line) and line.endswith(":")):
        return True
    return bool(_CHATTER_LINE.match(line)) and len(line) <= 200


def _clean(text: str) -> str:
    """Strip stray delimiter tags, labels, one layer of quotes/backticks/bold, a blockquote and
    one list marker."""
    text = _STRAY_TAG.sub("", text).strip()
    for _ in range(4):
        before = text
        text = _strip_label(text)
        text = _strip_wrapper(text)
        if text == before:
            break
    lines = text.split("\n")
    if all(line.lstrip().startswith(">") for line in lines if line.strip()):
        # A Markdown blockquote around the whole answer.
        lines = [re.sub(r"^[ \t]*>[ \t]?", "", line) for line in lines]
        text = _strip_wrapper("\n".join(lines).strip())
        lines = text.split("\n")
    if lines and _LIST_MARKER.match(lines[0]) and not any(_LIST_MARKER.match(x) for x in lines[1:]):
        lines[0] = _LIST_MARKER.sub("", lines[0], count=1)
        text = "\n".join(lines).strip()
        text = _strip_wrapper(text)
    return text


def _strip_label(text: str) -> str:
    first, _, rest = text.partition("\n")
    if _HEADING_LABEL.match(first) and rest.strip():
        return rest.strip()
    for pattern in (_LABEL, _CHATTER_LABEL):
        match = pattern.match(first)
        if match:
            remainder = first[match.end() :].strip()
            if remainder:
                return (remainder + ("\n" + rest if rest else "")).strip()
            return rest.strip()
    return text


def _strip_wrapper(text: str) -> str:
    for opener in ("**", "__"):
        inner = text[len(opener) : -len(opener)]
        if (
            len(text) > 2 * len(opener)
            and text.startswith(opener)
            and text.endswith(opener)
            and opener not in inner
        ):
            return inner.strip()
    # '"A" or "B"' starts and ends with a quote but is not wrapped in one.
    closer = _QUOTES.get(text[:1])
    if len(text) >= 2 and closer and text[-1] == closer and closer not in text[1:-1]:
        return text[1:-1].strip()
    return text


def _check(candidate: str, *, max_chars: int, min_chars: int, echo_of: Iterable[str]) -> Extraction:
    if not candidate:
        return Extraction.reject("no_instruction", "nothing remained after removing chatter")
    if _REFUSAL.match(candidate):
        return Extraction.reject("degenerate", "the model refused or apologized")
    problem = _degeneracy(candidate)
    if problem:
        return Extraction.reject("degenerate", problem)
    echoed = _echoed_line(candidate, echo_of)
    if echoed:
        return Extraction.reject("degenerate", f"the reply repeats the meta-prompt: {echoed!r}")
    if len(candidate) > max_chars:
        return Extraction.reject(
            "too_long", f"the instruction has {len(candidate)} characters; the limit is {max_chars}"
        )
    if len(candidate) < min_chars:
        return Extraction.reject(
            "no_instruction",
            f"{candidate!r} is shorter than {min_chars} characters, too short for an instruction",
        )
    return Extraction(candidate)


def _degeneracy(text: str) -> str:
    """Why `text` looks like a broken generation, or "" if it does not."""
    if not _WORD.search(text):
        return "the reply has no letters or digits"
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if len(lines) >= 4:
        top_line, count = Counter(lines).most_common(1)[0]
        if count / len(lines) >= 0.5:
            return f"the line {top_line[:60]!r} makes up {count} of {len(lines)} lines"
    words = [w.lower() for w in _WORD.findall(text)]
    if len(words) >= 8 and len(set(words)) / len(words) < 0.25:
        return f"only {len(set(words))} distinct words among {len(words)}"
    # Loops without line breaks or repeated words ("abcabcabc...", a sentence said 50 times)
    # compress far better than any instruction does.
    if len(text) >= 300:
        raw = text.encode("utf-8")
        if len(zlib.compress(raw)) / len(raw) < 0.12:
            return "the text repeats itself"
    return ""


def _normalize(text: str) -> str:
    return " ".join(text.lower().split())


def _echoed_line(candidate: str, echo_of: Iterable[str]) -> str:
    normal = _normalize(candidate)
    for text in echo_of:
        for line in text.split("\n"):
            key = _normalize(line)
            # Short lines ("Input:", "<PROMPT>") legitimately recur in real instructions.
            if len(key) >= 30 and key in normal:
                return line.strip()
    return ""


def _list_items(text: str) -> list[str]:
    lines = text.split("\n")
    items: list[list[str]] = []
    indent: int | None = None
    blank_pending = False
    for line in lines:
        if not line.strip():
            if items:
                blank_pending = True
            continue
        marker = _LIST_MARKER.match(line)
        line_indent = len(line) - len(line.lstrip())
        if marker and (indent is None or line_indent <= indent):
            indent = line_indent if indent is None else indent
            items.append([_LIST_MARKER.sub("", line, count=1)])
            blank_pending = False
        elif items:
            continuing = line_indent > (indent or 0) or not blank_pending
            if not continuing:
                break
            items[-1].append(line.strip())
            blank_pending = False
    return ["\n".join(item).strip() for item in items]
