"""ScriptedProvider: functions, reply tables, sequences, and loading scripts from files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from promptopt.errors import FatalProviderError, UsageError
from promptopt.llm.messages import ChatRequest, Completion, Usage
from promptopt.llm.providers.scripted import ScriptedProvider
from promptopt.task.modelspec import ModelSpec


def ask(text: str, system: str = "Be brief.") -> ChatRequest:
    return ChatRequest(
        messages=({"role": "system", "content": system}, {"role": "user", "content": text})
    )


def complete(provider: ScriptedProvider, request: ChatRequest) -> Completion:
    return asyncio.run(provider.complete(request))


def test_function_script_and_usage_estimate() -> None:
    provider = ScriptedProvider(lambda r: r.messages[-1]["content"].upper(), name="shout")
    result = complete(provider, ask("hello there"))
    assert result.text == "HELLO THERE"
    assert result.usage == Usage(input=4, output=2)
    assert result.model == "shout"
    assert provider.endpoint == "scripted:shout"
    assert provider.model_id == "scripted:shout"


def test_function_may_return_a_completion() -> None:
    canned = Completion(text="x", usage=Usage(input=9, output=1), model="m")
    assert complete(ScriptedProvider(lambda r: canned), ask("q")) is canned


def test_a_plain_reply_finished_by_itself() -> None:
    assert complete(ScriptedProvider(["done"]), ask("q")).finish_reason == "stop"


def test_a_reply_mapping_can_say_it_was_cut_at_the_token_limit() -> None:
    provider = ScriptedProvider(
        lambda r: {"text": "Classify the review as", "finish_reason": "length"}, name="cut"
    )
    result = complete(provider, ask("q"))
    assert result.text == "Classify the review as"
    assert result.finish_reason == "length" and result.truncated
    assert result.usage == Usage(input=3, output=4)
    # Tables and sequences take the same mappings, and a mapping without a reason is complete.
    table = ScriptedProvider(
        {"q": {"text": "a", "finish_reason": "max_tokens"}, "r": {"text": "b"}}
    )
    assert complete(table, ask("q")).finish_reason == "length"
    assert complete(table, ask("r")).finish_reason == "stop"


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        ({"txt": "a"}, "unknown key"),
        ({"finish_reason": "length"}, "needs 'text'"),
        ({"text": "a", "finish_reason": 3}, "must be a string"),
    ],
)
def test_a_bad_reply_mapping_fails_loudly(reply: dict[str, object], message: str) -> None:
    with pytest.raises(FatalProviderError, match=message):
        complete(ScriptedProvider(lambda r: reply), ask("q"))


def test_table_script_answers_by_last_user_message() -> None:
    provider = ScriptedProvider({"2+2?": "4", "3+3?": "6"})
    assert complete(provider, ask("3+3?")).text == "6"
    assert complete(provider, ask("2+2?")).text == "4"
    with pytest.raises(FatalProviderError, match=r"has no reply for .*'5\+5\?'.*ran out"):
        complete(provider, ask("5+5?"))


def test_sequence_is_consumed_in_order_then_fails() -> None:
    provider = ScriptedProvider(["a", "b"], name="seq")
    assert [complete(provider, ask("q")).text for _ in range(2)] == ["a", "b"]
    with pytest.raises(FatalProviderError, match=r"scripted model seq has no reply .* ran out"):
        complete(provider, ask("q"))


def test_concurrent_calls_consume_each_reply_once() -> None:
    replies = [str(i) for i in range(200)]
    provider = ScriptedProvider(replies)

    async def go() -> list[str]:
        results = await asyncio.gather(*(provider.complete(ask("q")) for _ in replies))
        return [r.text for r in results]

    assert sorted(asyncio.run(go()), key=int) == replies


def test_wrong_reply_type_fails_loudly() -> None:
    provider = ScriptedProvider(lambda r: 42)  # type: ignore[arg-type, return-value]
    with pytest.raises(FatalProviderError, match="returned int"):
        complete(provider, ask("q"))


def test_loads_a_function_relative_to_base_dir(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "fake.py").write_text(
        "def reply(request):\n    return 'len=' + str(len(request.messages))\n"
    )
    spec = ModelSpec(model="scripted:scripts/fake.py:reply")
    provider = ScriptedProvider.from_spec(spec, base_dir=tmp_path)
    assert complete(provider, ask("q")).text == "len=2"
    assert provider.model_id == "scripted:scripts/fake.py:reply"


def test_loads_tables_whose_replies_say_how_they_ended(tmp_path: Path) -> None:
    (tmp_path / "t.yaml").write_text(
        "- {text: 'Classify the', finish_reason: length}\n- 'Classify the review.'\n"
    )
    seq = ScriptedProvider.from_spec(ModelSpec(model="scripted:t.yaml"), base_dir=tmp_path)
    first, second = complete(seq, ask("x")), complete(seq, ask("x"))
    assert (first.text, first.finish_reason) == ("Classify the", "length")
    assert (second.text, second.finish_reason) == ("Classify the review.", "stop")
    (tmp_path / "bad.json").write_text(json.dumps({"q": {"text": 1}}))
    with pytest.raises(UsageError, match="a mapping with 'text'"):
        ScriptedProvider.from_spec(ModelSpec(model="scripted:bad.json"), base_dir=tmp_path)


def test_loads_json_and_yaml_tables(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(json.dumps({"hi": "hello"}))
    (tmp_path / "t.yaml").write_text("- first\n- second\n")
    table = ScriptedProvider.from_spec(ModelSpec(model="scripted:t.json"), base_dir=tmp_path)
    assert complete(table, ask("hi")).text == "hello"
    seq = ScriptedProvider.from_spec(ModelSpec(model="scripted:t.yaml"), base_dir=tmp_path)
    assert [complete(seq, ask("x")).text for _ in range(2)] == ["first", "second"]


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("missing.py:f", {}, "not found"),
        ("s.py:nope", {"s.py": "x = 1\n"}, "has no function 'nope'"),
        ("s.py", {"s.py": "x = 1\n"}, "name the function too"),
        ("t.json", {"t.json": "{bad"}, "does not parse"),
        ("t.json", {"t.json": "[1, 2]"}, "must hold a mapping"),
        ("t.txt", {"t.txt": "x"}, "expected scripted:FILE.py:FUNCTION"),
        ("gone.yaml", {}, "cannot read"),
    ],
)
def test_bad_script_files_are_usage_errors(
    tmp_path: Path, name: str, files: dict[str, str], message: str
) -> None:
    for filename, text in files.items():
        (tmp_path / filename).write_text(text)
    with pytest.raises(UsageError, match=message):
        ScriptedProvider.from_spec(ModelSpec(model=f"scripted:{name}"), base_dir=tmp_path)


def test_embeds_with_an_embedding_function() -> None:
    provider = ScriptedProvider((), name="emb", embedder=lambda text: [float(len(text)), 0.5])
    answer = asyncio.run(provider.embed(["ab", "one two three"]))
    assert answer.vectors == ((2.0, 0.5), (13.0, 0.5))
    assert answer.usage.input == 4
    assert answer.model == "emb"


def test_without_an_embedding_function_embedding_fails_loudly() -> None:
    provider = ScriptedProvider(["ok"], name="chat")
    with pytest.raises(FatalProviderError, match="has no embedding function"):
        asyncio.run(provider.embed(["a"]))
