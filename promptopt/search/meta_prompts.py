"""Meta-prompts: the Markdown templates strategies send to the optimizer model.

Each template is one `.md` file, named by its path without the suffix (`ape/forward`). The file
format (documented for users in `meta_prompts/README.md`):

    ---
    description: One line saying what the prompt asks for.
    placeholders: [demos, prompt]
    ---
    ## system
    Text of the system message (this section is optional).

    ## user
    Text of the user message, with {{demos}} and {{prompt}} placeholders.

Placeholders follow the grammar shared with task input templates (`promptopt.util.template`).
The front matter is optional, but every `{{name}}` used in the text must be listed under
`placeholders` and every listed one must be used. Only the exact headings `## system` and
`## user` (any case) split sections; other headings are part of the text. A file without
either heading is a user message only.

The context placeholders (`CONTEXT_PLACEHOLDERS`: the task description, labels, output format,
a few training examples and the scored history) are filled by the search context for any
template that declares them, and left out for one that does not.

The defaults ship inside the wheel as `promptopt/meta_prompts/`; a source checkout reads the
repository's top-level `meta_prompts/`. A user directory (`--meta-prompts DIR`) overrides files of
the same relative name and must keep each template's other placeholders, so strategies can render
overrides exactly like the defaults.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import yaml

from promptopt.errors import PromptoptError, UsageError
from promptopt.llm.messages import Message
from promptopt.util.template import (
    IDENTIFIER_PLACEHOLDER,
    render_template,
    template_fields,
    template_literals,
)

_SECTION = re.compile(r"^##[ \t]+(system|user)[ \t]*$", re.IGNORECASE | re.MULTILINE)
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?)^---[ \t]*(?:\n|\Z)", re.DOTALL | re.MULTILINE)
_FRONT_MATTER_KEYS = frozenset({"description", "placeholders"})
_SKIPPED_FILES = frozenset({"readme.md"})

CONTEXT_PLACEHOLDERS = frozenset(
    {"task_description", "labels", "output_format", "examples", "history"}
)
"""Optional placeholders any meta-prompt may declare: the search context fills them (see
`SearchContext.task_context` and `scored_history`) when, and only when, a template declares
them, so a template written before they existed, or one that leaves them out, still renders."""


@dataclass(frozen=True)
class MetaPrompt:
    """One meta-prompt template: an optional system message and a user message."""

    name: str
    system: str | None
    user: str
    placeholders: frozenset[str]
    description: str = ""
    source: str = ""
    """Where the template was read from (a path, for error messages and run records)."""

    def render(self, **values: str | int) -> tuple[Message, ...]:
        """Fill every placeholder and return the messages (system first, when present).

        Values are inserted verbatim in a single pass, so a value that itself contains
        `{{...}}` is never expanded. Raises `PromptoptError` naming any placeholder that has no
        value or any value that has no placeholder.
        """
        given = frozenset(values)
        missing = sorted(self.placeholders - given)
        extra = sorted(given - self.placeholders)
        if missing or extra:
            parts = []
            if missing:
                parts.append(f"no value for placeholder(s) {', '.join(missing)}")
            if extra:
                parts.append(f"value(s) for unknown placeholder(s) {', '.join(extra)}")
            raise PromptoptError(
                f"meta-prompt {self.name} ({self.source}): {'; '.join(parts)}; "
                f"it declares: {', '.join(sorted(self.placeholders)) or '(none)'}"
            )
        # str() first: the shared renderer writes non-strings as JSON, but a meta-prompt has
        # always inserted str(value).
        text_values = {key: str(value) for key, value in values.items()}
        messages: list[Message] = []
        if self.system is not None:
            messages.append(
                {
                    "role": "system",
                    "content": render_template(self.system, text_values, IDENTIFIER_PLACEHOLDER),
                }
            )
        messages.append(
            {
                "role": "user",
                "content": render_template(self.user, text_values, IDENTIFIER_PLACEHOLDER),
            }
        )
        return tuple(messages)

    def render_in_context(
        self, context: Mapping[str, str | int], /, **values: str | int
    ) -> tuple[Message, ...]:
        """`render` with optional values: those named in `CONTEXT_PLACEHOLDERS`, whether in
        `context` or in `values` (which win), are passed only if this template declares them;
        every other value must match a placeholder exactly, as for `render`."""
        optional = {**context, **{k: v for k, v in values.items() if k in CONTEXT_PLACEHOLDERS}}
        given = {k: v for k, v in optional.items() if k in self.placeholders}
        given.update({k: v for k, v in values.items() if k not in CONTEXT_PLACEHOLDERS})
        return self.render(**given)

    def literal_lines(self) -> tuple[str, ...]:
        """The template's fixed wording: its non-blank lines, cut at every placeholder.

        Pass these to `extract_instruction(..., echo_of=...)` to reject answers that merely
        repeat the meta-prompt.
        """
        lines: list[str] = []
        for text in (self.system or "", self.user):
            for piece in template_literals(text, IDENTIFIER_PLACEHOLDER):
                lines.extend(line.strip() for line in piece.splitlines() if line.strip())
        return tuple(lines)


@dataclass(frozen=True)
class MetaPromptSet:
    """Every meta-prompt available to a run, by name (`ape/forward`, `protegi/edit`, ...)."""

    prompts: Mapping[str, MetaPrompt]

    def get(self, name: str) -> MetaPrompt:
        """The meta-prompt called `name`; fails with the list of valid names."""
        try:
            return self.prompts[name]
        except KeyError:
            raise PromptoptError(
                f"no meta-prompt named {name!r}; available: {', '.join(sorted(self.prompts))}"
            ) from None

    def names(self) -> list[str]:
        """All names, sorted."""
        return sorted(self.prompts)

    def __contains__(self, name: object) -> bool:
        return name in self.prompts


def parse_meta_prompt(
    name: str, text: str, source: str, error: type[PromptoptError] = PromptoptError
) -> MetaPrompt:
    """Parse one template file's text; problems raise `error` naming `source`."""
    text = text.replace("\r\n", "\n").lstrip("\ufeff")
    declared: frozenset[str] = frozenset()
    description = ""
    front = _FRONT_MATTER.match(text)
    if front:
        declared, description = _parse_front_matter(front.group(1), source, error)
        text = text[front.end() :]
    elif text.startswith("---\n"):
        raise error(f"{source}: front matter opened with '---' is never closed by a '---' line")

    system, user = _split_sections(text, source, error)
    used = frozenset(template_fields(system or "", IDENTIFIER_PLACEHOLDER)) | frozenset(
        template_fields(user, IDENTIFIER_PLACEHOLDER)
    )
    undeclared = sorted(used - declared)
    if undeclared:
        raise error(
            f"{source}: placeholder(s) {', '.join('{{' + n + '}}' for n in undeclared)} "
            "used but not declared; add them to 'placeholders:' in the front matter"
        )
    unused = sorted(declared - used)
    if unused:
        raise error(
            f"{source}: placeholder(s) {', '.join(unused)} declared but never used as "
            f"{{{{name}}}} in the text; use them or remove them from 'placeholders:'"
        )
    return MetaPrompt(name, system, user, declared, description, source)


def _parse_front_matter(
    block: str, source: str, error: type[PromptoptError]
) -> tuple[frozenset[str], str]:
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        raise error(f"{source}: front matter is not valid YAML: {exc}") from None
    if data is None:
        return frozenset(), ""
    if not isinstance(data, dict):
        raise error(
            f"{source}: front matter must be a mapping with 'description' and 'placeholders'"
        )
    unknown = sorted(str(k) for k in data if k not in _FRONT_MATTER_KEYS)
    if unknown:
        raise error(
            f"{source}: unknown front matter key(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(sorted(_FRONT_MATTER_KEYS))}"
        )
    names = data.get("placeholders") or []
    if not isinstance(names, list) or not all(
        isinstance(n, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", n) for n in names
    ):
        raise error(f"{source}: 'placeholders' must be a list of identifiers, e.g. [demos, prompt]")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise error(f"{source}: 'description' must be a string")
    return frozenset(names), description.strip()


def _split_sections(text: str, source: str, error: type[PromptoptError]) -> tuple[str | None, str]:
    headings = list(_SECTION.finditer(text))
    if not headings:
        user = text.strip()
        if not user:
            raise error(f"{source}: the template has no text")
        return None, user
    if text[: headings[0].start()].strip():
        raise error(f"{source}: text before the first '## system' or '## user' heading")
    sections: dict[str, str] = {}
    for i, heading in enumerate(headings):
        role = heading.group(1).lower()
        if role in sections:
            raise error(f"{source}: more than one '## {role}' section")
        end = headings[i + 1].start() if i + 1 < len(headings) else len(text)
        sections[role] = text[heading.end() : end].strip()
    if not sections.get("user"):
        raise error(f"{source}: missing or empty '## user' section")
    system = sections.get("system")
    if system is not None and not system:
        raise error(f"{source}: the '## system' section is empty; remove the heading or fill it")
    return system, sections["user"]


def _walk(root: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        elif entry.name.endswith(".md") and entry.name.lower() not in _SKIPPED_FILES:
            yield f"{prefix}{entry.name[: -len('.md')]}", entry


def default_meta_prompts_dir() -> Traversable:
    """The packaged defaults, or the repository's `meta_prompts/` in a source checkout."""
    packaged = resources.files("promptopt") / "meta_prompts"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "meta_prompts"
    if checkout.is_dir():
        return checkout
    raise PromptoptError(
        f"the default meta-prompts are missing (looked in {packaged} and {checkout}); "
        "reinstall promptopt"
    )


def load_meta_prompts(override_dir: Path | None = None) -> MetaPromptSet:
    """Load the default meta-prompts, replacing any that `override_dir` has a file for.

    An override is matched by relative path (`DIR/protegi/edit.md` replaces `protegi/edit`) and
    must declare the same placeholders as the default it replaces, except the optional context
    placeholders (`CONTEXT_PLACEHOLDERS`), which it may leave out or add. Unknown file names, bad
    placeholders and a missing directory raise `UsageError` naming the file.
    """
    root = default_meta_prompts_dir()
    prompts: dict[str, MetaPrompt] = {}
    for name, entry in _walk(root):
        prompts[name] = parse_meta_prompt(name, entry.read_text(encoding="utf-8"), str(entry))
    if not prompts:
        raise PromptoptError(f"no meta-prompt files found in {root}; reinstall promptopt")
    if override_dir is None:
        return MetaPromptSet(prompts)

    if not override_dir.is_dir():
        raise UsageError(f"--meta-prompts {override_dir}: not a directory")
    for name, entry in _walk(override_dir):
        source = str(entry)
        default = prompts.get(name)
        if default is None:
            raise UsageError(
                f"{source}: no default meta-prompt called {name!r} to override; "
                f"valid names: {', '.join(sorted(prompts))}"
            )
        override = parse_meta_prompt(name, entry.read_text(encoding="utf-8"), source, UsageError)
        _check_same_placeholders(default, override)
        prompts[name] = override
    return MetaPromptSet(prompts)


def _check_same_placeholders(default: MetaPrompt, override: MetaPrompt) -> None:
    # Strategies fill exactly the default's placeholders; a mismatch would only surface mid-run.
    # The context placeholders are filled for whichever template declares them.
    required = sorted(default.placeholders - CONTEXT_PLACEHOLDERS)
    missing = sorted(set(required) - override.placeholders)
    if missing:
        raise UsageError(
            f"{override.source}: placeholder(s) {', '.join(missing)} of {default.name} are not "
            f"used; an override must use all of: {', '.join(required)} (and may use any of: "
            f"{', '.join(sorted(CONTEXT_PLACEHOLDERS))})"
        )
    extra = sorted(override.placeholders - default.placeholders - CONTEXT_PLACEHOLDERS)
    if extra:
        provided = sorted(default.placeholders | CONTEXT_PLACEHOLDERS)
        raise UsageError(
            f"{override.source}: placeholder(s) {', '.join(extra)} are unknown to {default.name}; "
            f"it provides only: {', '.join(provided)}"
        )
