"""Extraction of instructions and item lists from verbose optimizer replies."""

from __future__ import annotations

import pytest

from promptopt.search.extract import Extraction, extract_all, extract_instruction

TREC = (
    "Classify the question into one of: Description, Entity, Expression, Human, Location, "
    "Number. Answer with the label only."
)

ACCEPTED = [
    pytest.param(
        "Sure! Here's an improved version of the prompt:\n\n```\n"
        f"{TREC}\n```\n\nThis version clarifies the label set and the answer format.",
        TREC,
        id="chatter-fence-explanation",
    ),
    pytest.param(f"<START>{TREC}", TREC, id="start-without-end"),
    pytest.param(f"<START>\n{TREC}\n<END>", TREC, id="start-end"),
    pytest.param(f"<start> {TREC} <end>", TREC, id="lowercase-tags"),
    pytest.param(f"<START>{TREC}</START>", TREC, id="closing-start-tag"),
    pytest.param(f'Instruction: "{TREC}"', TREC, id="label-and-quotes"),
    pytest.param(f"Improved prompt: {TREC}", TREC, id="improved-prompt-label"),
    pytest.param(f"New Prompt 2:\n{TREC}", TREC, id="numbered-label-own-line"),
    pytest.param(f"**Improved prompt:** {TREC}", TREC, id="bold-label"),
    pytest.param(f"**{TREC}**", TREC, id="bold-wrapper"),
    pytest.param(f"`{TREC}`", TREC, id="backticks"),
    pytest.param(f"**New Instruction:**\n\n> {TREC}", TREC, id="blockquote"),
    pytest.param(f"“{TREC}”", TREC, id="curly-quotes"),
    pytest.param(f"1. {TREC}", TREC, id="leading-list-marker"),
    pytest.param(f"- {TREC}", TREC, id="leading-bullet"),
    pytest.param(
        f"Here is the improved prompt:\n\n{TREC}\n\nThis prompt works because it lists the labels.",
        TREC,
        id="here-is-prose-explanation",
    ),
    pytest.param(
        f"Sure! Here's a variation of the instruction: {TREC}", TREC, id="inline-chatter-label"
    ),
    pytest.param(f"```text\n{TREC}\n```", TREC, id="fence-with-language"),
    pytest.param(f"```markdown\n{TREC}", TREC, id="unterminated-fence"),
    pytest.param(
        f"<think>The user wants a prompt. Labels are...</think>\n\n<START>{TREC}<END>",
        TREC,
        id="think-block",
    ),
    pytest.param(f"reasoning without an opening tag</think>{TREC}", TREC, id="dangling-think"),
    pytest.param(
        f"Certainly!\n\n### Revised Prompt\n\n{TREC}\n\n**Explanation:** The labels are listed.",
        TREC,
        id="heading-label-and-bold-explanation",
    ),
    pytest.param(
        f"<START>\nPrompt: {TREC}\n<END>\n\nI added the label list.", TREC, id="label-inside-tags"
    ),
    pytest.param(f"<START><END>\n<START>{TREC}<END>", TREC, id="skips-empty-delimited-span"),
    pytest.param(
        "Okay, here you go:\n\nRead the review.\n\nAnswer positive or negative.\n\n"
        "Let me know if you want changes!",
        "Read the review.\n\nAnswer positive or negative.",
        id="multi-paragraph-instruction",
    ),
    pytest.param(
        'Label each review as "positive" or "negative".',
        'Label each review as "positive" or "negative".',
        id="inner-quotes-kept",
    ),
    pytest.param(
        "Classify the review:\n- positive\n- negative",
        "Classify the review:\n- positive\n- negative",
        id="bulleted-instruction-kept",
    ),
    pytest.param(
        "Answer with **one word**: the sentiment of the review.",
        "Answer with **one word**: the sentiment of the review.",
        id="inner-bold-kept",
    ),
    pytest.param(
        f"Here\u2019s the rewritten instruction:\n{TREC}\n\nHere\u2019s why: it is shorter.",
        TREC,
        id="curly-apostrophe-chatter",
    ),
    pytest.param(f"{TREC}\r\n\r\nNote: labels are case-sensitive.", TREC, id="crlf-and-note"),
    # An EvoPrompt DE reply of the 1.5B optimizer (trec benchmark): its "<" once survived into
    # the winning prompt.
    pytest.param(
        "<DIFFERENCES>\nDonor 1: the format is missing.\n</DIFFERENCES>\n\n<START>\n"
        f"<{TREC}\n</START>\n\n<END>",
        TREC,
        id="unclosed-angle-bracket",
    ),
    pytest.param(f"<START><{TREC}><END>", TREC, id="angle-bracket-wrapper"),
    pytest.param(
        "<b>Bold</b> the label, then answer.",
        "<b>Bold</b> the label, then answer.",
        id="real-html-kept",
    ),
]


@pytest.mark.parametrize(("reply", "expected"), ACCEPTED)
def test_accepts(reply: str, expected: str) -> None:
    result = extract_instruction(reply)
    assert result == Extraction(expected)
    assert result.accepted


REJECTED = [
    pytest.param("", "empty", id="empty"),
    pytest.param("   \n\t\n", "empty", id="whitespace"),
    pytest.param("I'm sorry, but I can't help with that request.", "degenerate", id="refusal"),
    pytest.param(
        "Sure! Here's the new prompt:\n\n```\nI cannot write a prompt for this task.\n```",
        "degenerate",
        id="refusal-in-fence",
    ),
    pytest.param("I\u2019m unable to rewrite this prompt.", "degenerate", id="curly-refusal"),
    pytest.param("As an AI language model, I do not have opinions.", "degenerate", id="as-an-ai"),
    pytest.param(
        "Classify the question into a category.\n" * 500, "degenerate", id="10k-repeated-line"
    ),
    pytest.param("label " * 40, "degenerate", id="repeated-token"),
    pytest.param("ab" * 400, "degenerate", id="repeated-characters"),
    pytest.param("?!?! ... ---- !!!", "degenerate", id="punctuation-only"),
    pytest.param("<START>   <END>", "no_instruction", id="empty-delimiters"),
    pytest.param("<think>I should think about the labels first", "no_instruction", id="unclosed"),
    pytest.param("Instruction:", "no_instruction", id="label-only"),
    pytest.param("<START>Yes.<END>", "no_instruction", id="too-short"),
    pytest.param(
        "<START>"
        + " ".join(f"Rule {i}: treat keyword{i} as marker{i} in the text." for i in range(300))
        + "<END>",
        "too_long",
        id="too-long",
    ),
]


@pytest.mark.parametrize(("reply", "reason"), REJECTED)
def test_rejects(reply: str, reason: str) -> None:
    result = extract_instruction(reply)
    assert not result.accepted
    assert result.reason == reason
    assert result.text == ""
    assert result.message


def test_limits_are_parameters() -> None:
    assert extract_instruction("Be brief.", min_chars=12).reason == "no_instruction"
    assert extract_instruction("Be brief.", min_chars=4).text == "Be brief."
    assert extract_instruction(TREC, max_chars=20).reason == "too_long"


def test_echo_of_the_meta_prompt_is_degenerate() -> None:
    meta_lines = (
        "A language model was given a single instruction and then run on the inputs below.",
        "Input:",
    )
    echo = "A language  model was given a single instruction and then run on the inputs below."
    result = extract_instruction(f"```\n{echo}\n```", echo_of=meta_lines)
    assert result.reason == "degenerate"
    # Short meta-prompt lines such as "Input:" may legitimately appear in an instruction.
    ok = extract_instruction("Input: a question. Reply with its label.", echo_of=meta_lines)
    assert ok.accepted


def test_echoed_delimiter_sentence_is_skipped() -> None:
    reply = (
        "You asked me to write the instruction between <START> and <END>, so here it is.\n\n"
        f"<START>{TREC}<END>"
    )
    assert extract_instruction(reply).text == TREC


def test_custom_delimiters() -> None:
    reply = f"[[PROMPT]] {TREC} [[/PROMPT]]"
    assert extract_instruction(reply, start="[[PROMPT]]", end="[[/PROMPT]]").text == TREC


def test_extract_all_delimited_reasons() -> None:
    reply = (
        "Here are the reasons:\n"
        "<START>The prompt never lists the labels.<END>\n"
        "<START>It does not say to answer with the label only.<END>\n"
        "<start>It confuses Entity with Description.</start>\n"
        "<START>Reason 4: It gives no examples."
    )
    assert extract_all(reply) == [
        "The prompt never lists the labels.",
        "It does not say to answer with the label only.",
        "It confuses Entity with Description.",
        "It gives no examples.",
    ]


def test_extract_all_numbered_list_fallback() -> None:
    reply = (
        "Sure, here are 4 reasons why the prompt got these wrong:\n\n"
        "1. **Missing labels:** the prompt never lists\n"
        "   the allowed categories.\n"
        "2. The answer format is not specified, so the model writes sentences.\n"
        "3) Questions about people are ambiguous between Human and Entity.\n"
        "4. No examples are given.\n\n"
        "Addressing these should improve accuracy."
    )
    assert extract_all(reply) == [
        "**Missing labels:** the prompt never lists\nthe allowed categories.",
        "The answer format is not specified, so the model writes sentences.",
        "Questions about people are ambiguous between Human and Entity.",
        "No examples are given.",
    ]


def test_extract_all_bullets_with_sub_bullets() -> None:
    reply = "- First reason\n  - detail a\n  - detail b\n- Second reason\n\nThat is all."
    assert extract_all(reply) == ["First reason\n- detail a\n- detail b", "Second reason"]


def test_extract_all_prose_fallback_and_nothing() -> None:
    prose = "The prompt fails because it never names the allowed labels."
    assert extract_all(prose) == [prose]
    assert extract_all("I'm sorry, I cannot help with that.") == []
    assert extract_all("") == []
    assert extract_all("<START> <END><START>\n<END>") == []


def test_a_closing_tag_written_as_slash_end_is_not_kept() -> None:
    # Seen with Qwen2.5-Coder-1.5B on trec: the answer ended with "</END>" and that became
    # part of the best prompt.
    raw = (
        "Please classify the question into one of: Description, Entity, Number. "
        "Answer with the label only.\n</END>"
    )
    for text in (raw, "<START>" + raw):
        extraction = extract_instruction(text)
        assert extraction.accepted
        assert extraction.text.endswith("label only.")


SST2 = (
    'Classify the sentiment of the movie review.\nAnswer with the label: "positive" or "negative".'
)

TEMPLATE_TAGS = [
    pytest.param(f"<INSTRUCTION>{SST2}</INSTRUCTION>", id="instruction-tags"),
    # Seen with Qwen2.5-Coder-1.5B on sst2 (APE resample): the tag became part of the best prompt.
    pytest.param(f"<INSTRUCTION>\n{SST2}", id="unclosed-instruction-tag"),
    pytest.param(f"<START>\n<INSTRUCTION>\n{SST2}\n</INSTRUCTION>\n<END>", id="tags-inside-start"),
    pytest.param(f"<prompt>{SST2}</prompt>", id="lowercase-prompt-tags"),
    pytest.param(f"<PROMPT>\n{SST2}\n</PROMPT>\n\nThis version is clearer.", id="prompt-tags"),
    pytest.param(f"<INS>{SST2}</INS>", id="ins-tags"),
    pytest.param(
        f"Here is the new instruction:\n<INSTRUCTION>{SST2}</INSTRUCTION>\nIt names the labels.",
        id="tagged-answer-between-chatter",
    ),
    pytest.param(
        f"<INSTRUCTION>\nClassify the review.\n</INSTRUCTION>\n\n<INSTRUCTION>{SST2}</INSTRUCTION>",
        id="echoed-input-then-answer",
    ),
    pytest.param(f"Sure! Here is the instruction: {SST2}", id="sure-here-is"),
    pytest.param(f"Instruction: {SST2}", id="instruction-prefix"),
    pytest.param(f"assistant: {SST2}", id="role-label"),
    pytest.param(f"Assistant:\n{SST2}", id="role-label-own-line"),
    pytest.param(f"**System:** {SST2}", id="bold-system-label"),
    pytest.param(f"assistant:\nSure! Here is the instruction:\n\n{SST2}", id="role-then-chatter"),
    pytest.param(f"{SST2}\nuser: Thanks, that works!", id="made-up-user-turn"),
    pytest.param(f"{SST2}\n\nHuman: Can you make it shorter?", id="made-up-human-turn"),
    pytest.param(
        f"<|im_start|>assistant\n{SST2}<|im_end|>\n<|im_start|>user\nthanks<|im_end|>",
        id="chatml-tokens",
    ),
    pytest.param(f"{SST2}</s>", id="eos-token"),
    pytest.param(f"Instruction: {SST2}\nScore: 97", id="opro-trajectory-entry"),
]


@pytest.mark.parametrize("reply", TEMPLATE_TAGS)
def test_template_tags_role_labels_and_turns_are_stripped(reply: str) -> None:
    assert extract_instruction(reply) == Extraction(SST2)


def test_other_tags_in_an_instruction_are_kept() -> None:
    tagged = "Think step by step, then give the label inside <answer></answer> tags."
    assert extract_instruction(f"<START>{tagged}<END>").text == tagged


TRUNCATED = [
    pytest.param("<START>Classify the sentiment of the movie review. Answer with", id="in-tags"),
    # Seen with Qwen2.5-Coder-1.5B on sst2: cut mid-sentence, the format line lost.
    pytest.param(
        "<INSTRUCTION>\nDesign instructions for language models to take in a single "
        'instruction and produce the output "positive" or "negative". The model should be '
        'able to handle a variety of inputs, including but not limited to: "trademark',
        id="cut-after-opening-tag",
    ),
    pytest.param(SST2, id="prose-running-to-the-cut"),
    pytest.param(f"```\n{SST2}", id="unclosed-fence"),
    pytest.param("", id="nothing-before-the-limit"),
    pytest.param("<think>The labels are positive and negative, so", id="cut-while-thinking"),
]


@pytest.mark.parametrize("reply", TRUNCATED)
def test_a_reply_cut_at_the_token_limit_is_rejected(reply: str) -> None:
    result = extract_instruction(reply, truncated=True)
    assert result.reason == "truncated"
    assert result.text == "" and result.message


COMPLETE_BEFORE_THE_CUT = [
    pytest.param(f"<START>{SST2}<END>\n\nThis prompt works because it", id="end-tag"),
    pytest.param(f"<INSTRUCTION>{SST2}</INSTRUCTION>\nIt is", id="closing-template-tag"),
    pytest.param(f"```\n{SST2}\n```\nThe", id="closed-fence"),
    pytest.param(f"{SST2}\n\nThis version names the labels, so the", id="explanation-after"),
    pytest.param(f"{SST2}<|im_end|>\n<|im_start|>user\nCan you", id="end-of-turn-token"),
]


@pytest.mark.parametrize("reply", COMPLETE_BEFORE_THE_CUT)
def test_a_cut_reply_whose_instruction_was_closed_is_kept(reply: str) -> None:
    assert extract_instruction(reply, truncated=True) == Extraction(SST2)


def test_extract_all_drops_the_item_a_cut_ran_into() -> None:
    tagged = "<START>The labels are missing.<END>\n<START>The format is vague.<END>\n<START>It"
    assert extract_all(tagged, truncated=True) == [
        "The labels are missing.",
        "The format is vague.",
    ]
    assert extract_all(tagged)[-1] == "It"
    listed = "1. The labels are missing.\n2. The format is vague.\n3. It never"
    assert extract_all(listed, truncated=True) == [
        "The labels are missing.",
        "The format is vague.",
    ]
    ended = "1. The labels are missing.\n2. The format is vague.\n\nFixing these will"
    assert len(extract_all(ended, truncated=True)) == 2
    assert extract_all("The prompt never names the labels and", truncated=True) == []


def test_echo_of_one_sentence_of_a_meta_prompt_line_is_degenerate() -> None:
    line = (
        "Write a new version of it that uses different wording but asks for the same thing. "
        "Do not add requirements and do not drop any."
    )
    reply = f"<START>{SST2} Do not add requirements and do not drop any.<END>"
    result = extract_instruction(reply, echo_of=[line])
    assert result.reason == "degenerate"
    assert "do not drop any" in result.message


def test_chatter_with_the_answer_after_its_colon_keeps_the_answer() -> None:
    reply = "Sure! Here is the instruction: Classify the review.\n\nAnswer with the label only."
    assert extract_instruction(reply).text == "Classify the review.\n\nAnswer with the label only."
