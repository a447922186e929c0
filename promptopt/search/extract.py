"""Pull a proposed instruction (or a list of items) out of an optimizer model's verbose reply.

Small and local models wrap their answer in chatter: "Sure! Here's the improved prompt:", code
fences, quotes, bold, and an explanation afterwards. The rules here are deliberately simple and
applied in a fixed order so that the result is predictable:

1. Reasoning blocks (`<think>...</think>`) are removed; if one is never closed, only text after
   it would count, so the reply has no answer. Chat-template tokens that leaked into the text
   (`<|im_start|>assistant`, `<|im_end|>`, `</s>`) are removed, and the reply ends at the first
   end-of-turn token: what follows is a turn the model made up.
2. The first `<START>...<END>` span of at least `min_chars` wins (tags in any case; `</START>`
   also closes). Shorter spans, such as an echoed "between <START> and <END>", are skipped; if
   every span is short, the first non-empty one is kept (and rejected as too short). A START
   with no END runs to the end of the reply and is then treated as prose (rule 5).
3. Otherwise the last `<INSTRUCTION>...</INSTRUCTION>`, `<PROMPT>...</PROMPT>` or
   `<INS>...</INS>` span of at least `min_chars` wins: the meta-prompts show the given text in
   these tags, so small models copy them; an earlier span is most likely the echoed input.
4. Otherwise the first non-empty fenced code block wins (an unterminated fence runs to the end).
5. Otherwise the prose rules apply: leading chatter paragraphs are dropped, and the answer ends at
   the first later paragraph that starts like an explanation ("This prompt ...", "Explanation:",
   "Note:", "Let me know ...").
6. The chosen text is cleaned: every template tag left (`<START>`, `</END>`, `<INSTRUCTION>`,
   `<prompt>`, ...) is removed; a role label ("assistant:", "System:") at its start is removed
   and a later line opening a new turn ("user: ...") ends it; a last line "Score: 72" copied
   from a scored trajectory is removed; a label such as "Instruction:" or
   "Here is the improved prompt:" is removed from its start, then one layer of surrounding
   quotes, backticks or Markdown bold, a Markdown blockquote (`> `) around the whole text, and a
   single leading list marker.
7. A reply cut at the token limit (`truncated=True`) is rejected as "truncated" unless its
   instruction was closed before the cut: by an end tag, a closing fence, an end-of-turn token
   or a following explanation paragraph. Text that merely runs to the cut may have lost its
   last words (often the answer-format line), so it is never taken as complete.
8. The result is checked, in this order: empty → refusal, degenerate text or an echo of the
   meta-prompt → too long → too short.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

RejectReason = Literal["empty", "too_long", "degenerate", "no_instruction", "truncated"]


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
    r"^[ \t]*```+([^\n`]*)\n(.*?)(?:(?P<close>^[ \t]*```+[ \t]*$)|\Z)", re.DOTALL | re.MULTILINE
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


_TRUNCATED = (
    "the reply was cut at the token limit (finish_reason 'length') before the instruction "
    "ended; raise the optimizer's max_tokens if this is frequent"
)


def extract_instruction(
    text: str,
    *,
    max_chars: int = 2000,
    min_chars: int = 8,
    start: str = "<START>",
    end: str = "<END>",
    echo_of: Iterable[str] = (),
    truncated: bool = False,
) -> Extraction:
    """Extract one instruction from a model's reply, or say why there is none.

    Follows the module's numbered rules. Reason codes: "empty" (the reply is blank), "degenerate"
    (a refusal, only punctuation, heavy repetition of lines or words, or a repeat of a line or
    sentence of `echo_of`, normally `MetaPrompt.literal_lines()`), "too_long" (more than
    `max_chars`), "no_instruction" (nothing left after removing chatter, or shorter than
    `min_chars`), "truncated" (`truncated` is set, i.e. the reply was cut at the token limit,
    and the instruction was not closed before the cut).
    """
    if not text.strip():
        if truncated:
            # Typically a reasoning model that spent the whole limit thinking.
            return Extraction.reject("truncated", "the token limit was reached before any answer")
        return Extraction.reject("empty", "the reply is empty")
    body = _strip_thinking(text.replace("\r\n", "\n"))
    if body is None:
        if truncated:
            return Extraction.reject(
                "truncated", "the token limit was reached inside a <think> block"
            )
        return Extraction.reject(
            "no_instruction", "the reply is an unfinished <think> block with no answer after it"
        )
    body, turn_ended = _strip_turns(body)
    candidate, closed = _candidate(body, start, end, min_chars)
    if truncated and not (closed or turn_ended):
        return Extraction.reject("truncated", _TRUNCATED)
    return _check(candidate, max_chars=max_chars, min_chars=min_chars, echo_of=echo_of)


def extract_all(
    text: str, start: str = "<START>", end: str = "<END>", *, truncated: bool = False
) -> list[str]:
    """Extract several delimited items, e.g. the reasons of a ProTeGi gradient.

    With delimiters: every non-empty span from a `start` tag to the next `end` tag (or the next
    `start`, or the end of the reply), in order. Without: the items of the first numbered or
    bulleted list (a line with a marker starts an item; indented or continuing lines join it; a
    blank line followed by unmarked text ends the list). With neither: the reply as a single item
    if `extract_instruction` accepts it, else nothing. Items are cleaned like instructions but not
    validated: run `extract_instruction` on an item to apply the checks.

    When `truncated` (the reply was cut at the token limit), an item that runs to the cut is
    dropped: its end may be missing.
    """
    body = _strip_thinking(text.replace("\r\n", "\n"))
    if body is None or not body.strip():
        return []
    body, turn_ended = _strip_turns(body)
    cut = truncated and not turn_ended
    start_re, end_re = _tag_patterns(start, end)
    starts = list(start_re.finditer(body))
    if starts:
        items = []
        for i, match in enumerate(starts):
            limit = starts[i + 1].start() if i + 1 < len(starts) else len(body)
            closing = end_re.search(body, match.end(), limit)
            if closing is None and limit == len(body) and cut:
                break
            items.append(body[match.end() : closing.start() if closing else limit])
        return [item for item in (_clean(i) for i in items) if item]
    listed, list_ended = _list_items(body)
    if listed:
        if cut and not list_ended:
            listed = listed[:-1]
        return [item for item in (_clean(i) for i in listed) if item]
    single = extract_instruction(body, start=start, end=end, truncated=cut)
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


# A template tag left behind (an unmatched or misspelt delimiter, or the tags the meta-prompts
# wrap given text in) is never part of an instruction. Other tags ("<answer>") may well be.
_TEMPLATE_TAG_NAMES = r"(?:START|END|INS|INSTRUCTIONS?|PROMPT)"
_STRAY_TAG = re.compile(rf"</?\s*{_TEMPLATE_TAG_NAMES}\s*/?>", re.IGNORECASE)
# "<" opening prose: a word, then a space before any ">".
_ANGLE_OPENED = re.compile(r"<[A-Za-z][\w'-]*\s[^>]")
# Spans in the tags the meta-prompts show given text in (rule 3).
_WRAPPER_SPAN = re.compile(
    r"<\s*(INS|INSTRUCTIONS?|PROMPT)\s*>(.*?)<\s*/\s*\1\s*>", re.IGNORECASE | re.DOTALL
)
# Chat-template special tokens (ChatML, Llama 3, Phi, Mistral) a local model may print as text.
_TURN_END = re.compile(
    r"<\|(?:im_end|eot_id|endoftext|end|eom_id)\|>|</s>|<\|im_start\|>[ \t]*(?:user|system)\b",
    re.IGNORECASE,
)
_SPECIAL_TOKEN = re.compile(
    r"<\|im_start\|>[ \t]*(?:assistant\b)?|<\|start_header_id\|>[ \t]*\w*[ \t]*<\|end_header_id\|>"
    r"|<\|(?:assistant|begin_of_text)\|>|<s>|\[/?INST\]",
    re.IGNORECASE,
)
_ROLE_NAMES = r"(?:assistant|system|user|human|ai|bot|model|gpt|chatgpt)"
# "assistant:", "**System:**", "### Assistant:" at the start of the answer.
_ROLE_LABEL = re.compile(
    rf"\A[ \t]*(?:#{{1,6}}[ \t]*)?(?:\*\*|__)?[ \t]*{_ROLE_NAMES}[ \t]*(?:\*\*|__)?[ \t]*:"
    r"(?:[ \t]*(?:\*\*|__))?[ \t]*\n?",
    re.IGNORECASE,
)
# A later line that opens a new turn: the model went on to play the other side.
_NEW_TURN = re.compile(
    r"^[ \t]*(?:#{1,6}[ \t]*)?(?:\*\*|__)?[ \t]*(?:assistant|system|user|human)[ \t]*(?:\*\*|__)?"
    r"[ \t]*:",
    re.IGNORECASE | re.MULTILINE,
)


def _strip_turns(text: str) -> tuple[str, bool]:
    """The reply up to the first end-of-turn token, without chat-template tokens, and whether
    such a token ended it (the model finished its turn, whatever it printed afterwards)."""
    ended = False
    for match in _TURN_END.finditer(text):
        if text[: match.start()].strip():
            text, ended = text[: match.start()], True
            break
        text = text[match.end() :]  # a turn marker before any answer: skip it
    return _SPECIAL_TOKEN.sub("", text), ended


# A score copied from a scored trajectory ("Instruction: ...\nScore: 72", OPRO's meta-prompt).
_SCORE_LINE = re.compile(
    r"\n[ \t]*(?:\*\*)?score(?:\*\*)?[ \t]*:[ \t]*[\d.]+[ \t%]*\Z", re.IGNORECASE
)


def _strip_roles(text: str) -> str:
    """Drop a leading role label and everything from a later line that opens a new turn."""
    text = _ROLE_LABEL.sub("", text, count=1).strip()
    later = _NEW_TURN.search(text, 1)
    if later is not None and text[: later.start()].strip():
        text = text[: later.start()].strip()
    return text


def _tag_patterns(start: str, end: str) -> tuple[re.Pattern[str], re.Pattern[str]]:
    start_re = re.compile(re.escape(start), re.IGNORECASE)
    closers = [re.escape(end)]
    # Small models also close with "</START>" or "</END>".
    for tag in (start, end):
        if tag.startswith("<") and tag.endswith(">"):
            closers.append(re.escape("</" + tag[1:]))
    return start_re, re.compile("|".join(closers), re.IGNORECASE)


def _candidate(body: str, start: str, end: str, min_chars: int) -> tuple[str, bool]:
    """The instruction's text by rules 2 to 6, and whether something closed it (an end tag, a
    closing fence or an explanation after it), so that a cut at the token limit missed none
    of it."""
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
            return inside, True
        spans.append(inside)
    if unterminated is not None:
        text, closed = _prose(unterminated)
        return _clean(text), closed
    if spans:
        return next((span for span in spans if span), ""), True
    wrapped = [_clean(m.group(2)) for m in _WRAPPER_SPAN.finditer(body)]
    if any(len(w) >= min_chars for w in wrapped):
        return [w for w in wrapped if len(w) >= min_chars][-1], True
    for fence in _FENCE.finditer(body):
        info, inside = fence.group(1).strip(), fence.group(2)
        if info and not _LANG_TAG.fullmatch(info):
            # "```Classify the ..." puts text on the fence line itself.
            inside = info + "\n" + inside
        if inside.strip():
            return _clean(inside), fence.group("close") is not None
    text, closed = _prose(body)
    return _clean(text), closed


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n") for p in re.split(r"\n[ \t]*\n", text) if p.strip()]


def _prose(text: str) -> tuple[str, bool]:
    """Drop leading chatter paragraphs and everything from the first explanation paragraph;
    also say whether such an explanation followed the kept text."""
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
    explained = False
    for paragraph in paragraphs[1:]:
        if _EXPLANATION.match(paragraph):
            explained = True
            break
        kept.append(paragraph)
    return "\n\n".join(kept), explained


def _is_chatter(paragraph: str) -> bool:
    if "\n" in paragraph.strip():
        return False
    line = paragraph.strip()
    if _HEADING_LABEL.match(line):
        return True
    if _LABEL.fullmatch(line) or (_CHATTER_LABEL.match(line) and line.endswith(":")):
        return True
    label = _CHATTER_LABEL.match(line)
    if label and line[label.end() :].strip():
        # "Sure! Here is the instruction: Classify ..." holds the answer after its colon;
        # cleaning removes the label.
        return False
    return bool(_CHATTER_LINE.match(line)) and len(line) <= 200


def _clean(text: str) -> str:
    """Strip template tags, chat-template tokens and role turns, labels, one layer of
    quotes/backticks/bold, a blockquote and one list marker."""
    text = _SPECIAL_TOKEN.sub("", _STRAY_TAG.sub("", text)).strip()
    for _ in range(4):
        before = text
        text = _strip_roles(text)
        text = _SCORE_LINE.sub("", text).strip()
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
    if _ANGLE_OPENED.match(text):
        # A small model sometimes opens a copied instruction with "<" as if it were a tag
        # ("<Classify the question ..."), and may close it with ">": a bracket around prose,
        # not part of it. Tag names were stripped before, so this is never a real tag.
        if ">" not in text:
            return text[1:].strip()
        if text.endswith(">") and text.count("<") == 1 and text.count(">") == 1:
            return text[1:-1].strip()
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


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_ECHO_MIN_CHARS = 30


def echo_pieces(texts: Iterable[str], *, keep: Iterable[str] = ()) -> list[str]:
    """The sentences of `texts` that count as an echo when an instruction repeats one.

    A sentence is enough: small models repeat one sentence of a long meta-prompt line. Short
    ones ("Input:", "<PROMPT>") legitimately recur in real instructions and are left out, and
    so is any sentence one of `keep` (e.g. the parent prompt) already contains, since keeping
    the parent's wording is not an echo.

    Args:
        texts: The fixed wording, normally `MetaPrompt.literal_lines()`.
        keep: Texts whose wording a proposal may repeat.

    Returns:
        The sentences, as written in `texts`.
    """
    kept = [_normalize(k) for k in keep]
    pieces: list[str] = []
    for text in texts:
        for line in text.split("\n"):
            for piece in _SENTENCE_END.split(line.strip()):
                key = _echo_key(piece)
                if len(key) >= _ECHO_MIN_CHARS and not any(key in k for k in kept):
                    pieces.append(piece.strip())
    return pieces


def _echo_key(piece: str) -> str:
    return _normalize(piece).rstrip(".!?:;, ")


def _echoed_line(candidate: str, echo_of: Iterable[str]) -> str:
    """A sentence of `echo_of` that the candidate repeats, or ""."""
    normal = _normalize(candidate)
    for piece in echo_pieces(echo_of):
        if _echo_key(piece) in normal:
            return piece
    return ""


def _list_items(text: str) -> tuple[list[str], bool]:
    """The items of the first list, and whether unmarked text after it ended the list."""
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
                return ["\n".join(item).strip() for item in items], True
            items[-1].append(line.strip())
            blank_pending = False
    return ["\n".join(item).strip() for item in items], False
