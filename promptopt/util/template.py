"""The one `{{field}}` template grammar, shared by task input templates and meta-prompts.

A placeholder is `{{` and the nearest following `}}`; the text between them, stripped of
surrounding whitespace, is the field name. Any text is allowed there (it may span lines), because
a task names fields after whatever keys its JSONL or CSV rows have. Meta-prompts pass
`IDENTIFIER_PLACEHOLDER` instead: their names are identifiers, and any other `{{...}}` in their
text (a JSON example, say) stays literal, as users' own meta-prompts have always relied on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from promptopt.errors import PromptoptError

# Non-greedy and DOTALL: a placeholder ends at the first `}}`, even on a later line.
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
# Only identifiers, with optional surrounding spaces: the rule of meta-prompt templates.
IDENTIFIER_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


class TemplateFieldError(PromptoptError):
    """A template names a field the values do not have."""

    def __init__(self, name: str, available: Sequence[str]) -> None:
        self.field = name
        listed = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"the template uses {{{{{name}}}}} but there is no field {name!r} ({listed})"
        )


def template_fields(template: str, pattern: re.Pattern[str] = PLACEHOLDER) -> tuple[str, ...]:
    """The field names a `{{field}}` template uses, in order of first use."""
    names: dict[str, None] = {}
    for match in pattern.finditer(template):
        names.setdefault(match.group(1).strip(), None)
    return tuple(names)


def template_literals(template: str, pattern: re.Pattern[str] = PLACEHOLDER) -> tuple[str, ...]:
    """The fixed text of a template: the pieces before, between and after its placeholders."""
    return tuple(pattern.split(template)[::2])


def as_text(value: Any) -> str:
    """A field value as text: a string as it is, anything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def render_template(
    template: str, values: Mapping[str, Any], pattern: re.Pattern[str] = PLACEHOLDER
) -> str:
    """Replace each `{{ name }}` with the field's value (non-strings as JSON).

    Substitution is a single pass, so a value that itself contains `{{...}}` is inserted as it
    is, never expanded. Raises `TemplateFieldError` for a field that is missing or null.
    """

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1).strip()
        value = values.get(name)
        if value is None:
            raise TemplateFieldError(name, list(values))
        return as_text(value)

    return pattern.sub(substitute, template)
