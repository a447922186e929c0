"""The jinja2 environment of the Markdown and HTML reports.

Templates live in promptopt/reporting/templates/ (shipped in the wheel). `*.html.j2` templates are
autoescaped; `*.md.j2` templates are not, and escape table cells with the `md_cell` filter
instead, since Markdown has its own special characters.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from promptopt.reporting import view
from promptopt.reporting.view import shorten

# Long enough for a sentence of model output; a pull-request comment stays readable.
CELL_CHARS = 200


def md_cell(text: Any, limit: int = CELL_CHARS) -> str:
    """Text made safe for one cell of a Markdown table (GitHub-flavoured).

    Args:
        text: The cell's content.
        limit: Longer text is cut, an ellipsis marking the cut.

    Returns:
        The text with Markdown's special characters backslash-escaped and line breaks as <br>;
        one space for empty text, which would otherwise merge the cell with the next.
    """
    value = shorten(str(text), limit)
    for char in "\\`*_[]|<>#":
        value = value.replace(char, "\\" + char)
    value = value.replace("\r", "").replace("\n", "<br>")
    return value or " "


def md_fence(text: str) -> str:
    """A run of backticks long enough to fence `text` as a Markdown code block."""
    ticks = 3
    while "`" * ticks in text:
        ticks += 1
    return "`" * ticks


def md_quote(text: str) -> str:
    """`text`, stripped, as a Markdown block quote."""
    return "\n".join("> " + line if line else ">" for line in text.strip().splitlines())


@cache
def environment() -> Environment:
    """The environment every report is rendered with (built once)."""
    env = Environment(
        loader=PackageLoader("promptopt.reporting", "templates"),
        # The template names end in .j2: "html.j2" is what marks an HTML template.
        autoescape=select_autoescape(
            enabled_extensions=("html.j2",), default_for_string=False, default=False
        ),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=StrictUndefined,
    )
    env.filters["md_cell"] = md_cell
    env.filters["md_fence"] = md_fence
    env.filters["md_quote"] = md_quote
    # Section titles come from the view, so that every format names a section alike.
    env.globals.update({k: v for k, v in vars(view).items() if k.startswith("SECTION_")})
    return env


def render(name: str, **context: Any) -> str:
    """Render the template `name` of promptopt/reporting/templates/ with `context`.

    Args:
        name: A template file name, such as "run.md.j2".
        **context: The template's variables.

    Returns:
        The rendered text.
    """
    return environment().get_template(name).render(**context)
