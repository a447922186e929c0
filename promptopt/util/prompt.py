"""The one layout of a system prompt: the instruction, then the output format after a blank line.

Everything that sends, stores or shows a task's prompt (the scorer's system message, the final
evaluation, best_prompt.txt, summaries, diffs and reports) builds it with `render_system_prompt`,
so the text a user deploys is exactly the text that was scored. It lives at the bottom layer
because both the task file and the run-folder records need it.
"""

from __future__ import annotations

FORMAT_SEPARATOR = "\n\n"
"""What goes between the instruction and the output format."""


def render_system_prompt(instruction: str, output_format: str = "") -> str:
    """The system message of a prompt made of an instruction and an output format.

    Args:
        instruction: The text a search edits.
        output_format: How the answer must look; kept as written. Empty or blank for a plain
            prompt, which is then sent exactly as given.

    Returns:
        `instruction` alone when there is no output format, else the instruction without its
        trailing whitespace, a blank line and the stripped output format.
    """
    if not output_format.strip():
        # A plain prompt is sent byte for byte as the task file has it.
        return instruction
    return f"{instruction.rstrip()}{FORMAT_SEPARATOR}{output_format.strip()}"


def split_system_prompt(text: str, output_format: str) -> str | None:
    """The instruction of a rendered system prompt that ends with `output_format`, or None.

    The inverse of `render_system_prompt` for a known output format: it lets a prompt file
    written from a run (best_prompt.txt, `--write-if-better`) be read back as an instruction.

    Args:
        text: A full system prompt.
        output_format: The format it is expected to end with.

    Returns:
        The text before the output format, without trailing whitespace; None when the text does
        not end with the format, or when nothing but the format is left.
    """
    fmt = output_format.strip()
    body = text.rstrip()
    if not fmt or not body.endswith(fmt):
        return None
    instruction = body[: -len(fmt)].rstrip()
    return instruction or None
