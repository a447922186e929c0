from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from promptopt.errors import BudgetExhausted, FatalProviderError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.client import EndpointGate, ModelClient, RequestFailed, RetryPolicy, RunStopped
from promptopt.llm.journal import ResponseJournal
from promptopt.llm.messages import ChatRequest, Completion, Message, Usage
from promptopt.scoring.scorer import Scorer, build_messages
from promptopt.task.example import Example
from promptopt.task.modelspec import Price
from tests.conftest import CountingProvider, RecordingSleep, make_client

EXAMPLES = [Example(id=f"e{i}", fields={"input": f"w{i}"}, targets=(f"W{i}",)) for i in range(20)]


def exact(output: str, example: Example) -> float:
    return float(output == example.target)


def scorer_for(client: ModelClient) -> Scorer:
    return Scorer(client, exact, lambda e: str(e.fields["input"]))


def msgs(text: str) -> tuple[Message, ...]:
    return build_messages("Uppercase it.", text)


async def test_evaluate_scores_in_order_and_second_run_makes_no_request(
    provider: CountingProvider, tmp_path: Path
) -> None:
    client = make_client(provider, tmp_path)
    first = await scorer_for(client).evaluate("Uppercase it.", EXAMPLES, split="dev")
    assert [e.id for e in first.examples] == [e.id for e in EXAMPLES]
    assert first.score == 1.0 and first.usage.requests == 20 and provider.calls == 20
    client.store.close()

    again = make_client(provider, tmp_path)
    second = await scorer_for(again).evaluate("Uppercase it.", EXAMPLES, split="dev")
    assert provider.calls == 20
    assert second.usage.requests == 0 and second.usage.cache_hits == 20
    assert second.to_json()["examples"] == first.to_json()["examples"]
    assert second.score == first.score and second.ci95() == first.ci95()


async def test_identical_concurrent_requests_are_sent_once(tmp_path: Path) -> None:
    provider = CountingProvider(delay_s=0.05)
    client = make_client(provider, tmp_path, concurrency=16)
    results = await asyncio.gather(*(client.complete(msgs("same")) for _ in range(30)))
    assert provider.calls == 1
    assert {r.text for r in results} == {"SAME"}
    assert client.usage.requests == 1 and client.usage.cache_hits == 29


async def test_concurrency_limit_is_never_exceeded(tmp_path: Path) -> None:
    provider = CountingProvider(delay_s=0.01)
    client = make_client(provider, tmp_path, concurrency=3)
    await asyncio.gather(*(client.complete(msgs(f"x{i}")) for i in range(25)))
    assert provider.max_in_flight == 3
    assert client.gate.max_in_flight == 3


async def test_transient_errors_are_retried_honouring_retry_after(tmp_path: Path) -> None:
    provider = CountingProvider(failures={"a": 2}, retry_after=0.02)
    sleep = RecordingSleep()
    client = make_client(provider, tmp_path, sleep=sleep)
    result = await client.complete(msgs("a"))
    assert result.text == "A"
    assert provider.calls == 3 and client.usage.attempts == 3 and client.usage.requests == 1
    assert sleep.delays == [0.02, 0.02]


async def test_exhausted_retries_become_a_recorded_error(tmp_path: Path) -> None:
    provider = CountingProvider(failures={"w3": 99})
    client = make_client(provider, tmp_path, max_retries=2)
    result = await scorer_for(client).evaluate("p", EXAMPLES[:5], split="dev")
    assert result.errors == 1
    failed = result.examples[3]
    assert failed.score == 0.0 and failed.error and "gave up after 3 attempts" in failed.error
    assert result.score == pytest.approx(4 / 5)
    assert client.usage.errors == 1
    with pytest.raises(RequestFailed):
        await client.complete(msgs("w3"))


async def test_failures_are_not_cached(tmp_path: Path) -> None:
    provider = CountingProvider(failures={"z": 3})
    client = make_client(provider, tmp_path, max_retries=1)
    with pytest.raises(RequestFailed):
        await client.complete(msgs("z"))
    assert (await client.complete(msgs("z"))).text == "Z"


async def test_fatal_error_stops_the_evaluation(tmp_path: Path) -> None:
    def answer(request: ChatRequest) -> str:
        raise FatalProviderError("401: set OPENAI_API_KEY")

    client = make_client(CountingProvider(answer=answer), tmp_path)
    with pytest.raises(FatalProviderError, match="OPENAI_API_KEY"):
        await scorer_for(client).evaluate("p", EXAMPLES, split="dev")


async def test_stop_request_sends_nothing_new(provider: CountingProvider, tmp_path: Path) -> None:
    client = make_client(provider, tmp_path)
    client.stop = asyncio.Event()
    client.stop.set()
    with pytest.raises(RunStopped):
        await client.complete(msgs("a"))
    assert provider.calls == 0


async def test_cost_is_computed_and_capped(tmp_path: Path) -> None:
    price = Price(input=1_000_000.0, output=0.0)  # $1 per input token: easy arithmetic
    provider = CountingProvider()
    client = make_client(provider, tmp_path, price=price, caps=BudgetCaps(cost_usd=100.0))
    await client.complete(msgs("a"))
    assert client.usage.cost_usd == pytest.approx(10.0)
    assert client.ledger.spent_usd == pytest.approx(10.0)
    # The next request's worst case (its estimated prompt tokens) no longer fits under the cap.
    client.ledger.spent_usd = 95.0
    with pytest.raises(BudgetExhausted, match="cost budget"):
        await client.complete(msgs("b"))
    assert provider.calls == 1


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    cap=st.integers(min_value=0, max_value=30),
    n=st.integers(min_value=1, max_value=60),
    concurrency=st.integers(min_value=1, max_value=16),
    distinct=st.integers(min_value=1, max_value=60),
)
def test_call_budget_is_never_exceeded_under_concurrency(
    tmp_path_factory: pytest.TempPathFactory, cap: int, n: int, concurrency: int, distinct: int
) -> None:
    tmp = tmp_path_factory.mktemp("budget")
    provider = CountingProvider(delay_s=0.001)
    client = make_client(provider, tmp, caps=BudgetCaps(target_calls=cap), concurrency=concurrency)

    async def one(i: int) -> bool:
        try:
            await client.complete(msgs(f"q{i % distinct}"))
            return True
        except BudgetExhausted:
            return False

    async def main() -> list[bool]:
        return list(await asyncio.gather(*(one(i) for i in range(n))))

    answered = asyncio.run(main())
    client.store.close()
    assert sum(answered) == min(cap, n)
    assert client.ledger.calls.get("target", 0) <= cap
    assert provider.calls <= cap


async def test_journal_replays_without_sending_and_with_the_same_accounting(
    tmp_path: Path,
) -> None:
    price = Price(input=1.0, output=1.0)
    provider = CountingProvider()
    journal = ResponseJournal(tmp_path / "responses.jsonl")
    client = make_client(provider, tmp_path, price=price)
    client.journal = journal
    for text in ("a", "b", "a"):
        await client.complete(msgs(text))
    journal.close()
    usage_before = client.usage.to_json()
    assert provider.calls == 2

    # Resume with an empty cache: only the journal can answer.
    replay_provider = CountingProvider()
    replay = make_client(replay_provider, tmp_path / "other", price=price)
    replay.journal = ResponseJournal(tmp_path / "responses.jsonl")
    for text in ("a", "b", "a"):
        await replay.complete(msgs(text))
    replay.journal.close()
    assert replay_provider.calls == 0
    after = replay.usage.to_json()
    for key in ("requests", "cache_hits", "input_tokens", "output_tokens", "cost_usd"):
        assert after[key] == usage_before[key]
    assert replay.ledger.calls == client.ledger.calls


def test_retry_policy_backoff_is_bounded() -> None:
    import random

    policy = RetryPolicy(max_retries=5, base_delay_s=1.0, max_delay_s=4.0)
    rng = random.Random(0)
    for retry in range(1, 8):
        assert 0 <= policy.delay(retry, None, rng) <= 4.0
    assert policy.delay(1, 2.5, rng) == 2.5
    assert policy.delay(1, 100.0, rng) == 4.0


async def test_rate_limit_cools_down_the_whole_endpoint() -> None:
    now = [0.0]
    gate = EndpointGate(2, clock=lambda: now[0])
    gate.cool_down(5.0)
    gate.cool_down(1.0)  # a shorter wait never shortens the cool-down
    assert gate._resume_at == 5.0


async def test_a_stop_holds_back_requests_queued_behind_the_limit(tmp_path: Path) -> None:
    provider = CountingProvider(delay_s=0.02)
    client = make_client(provider, tmp_path, concurrency=1)
    client.stop = asyncio.Event()
    seen = 0

    def press_stop(output: str, example: Example) -> float:
        nonlocal seen
        seen += 1
        if seen == 2:
            client.stop.set()  # type: ignore[union-attr]
        return 1.0

    scorer = Scorer(client, press_stop, lambda e: str(e.fields["input"]))
    with pytest.raises(RunStopped):
        await scorer.evaluate("p", EXAMPLES, split="dev")
    assert provider.calls <= 3  # the ones already holding the slot, not all 20


async def test_budget_or_stop_inside_a_judge_metric_stops_the_evaluation(
    provider: CountingProvider, tmp_path: Path
) -> None:
    async def judge_out_of_budget(output: str, example: Example) -> float:
        raise BudgetExhausted("the optimizer call budget (3) is spent")

    client = make_client(provider, tmp_path)
    scorer = Scorer(client, judge_out_of_budget, lambda e: str(e.fields["input"]))
    with pytest.raises(BudgetExhausted):
        await scorer.evaluate("p", EXAMPLES[:3], split="dev")


async def test_queued_requests_wait_out_a_cool_down(tmp_path: Path) -> None:
    gate = EndpointGate(1)
    sent: list[float] = []
    loop = asyncio.get_running_loop()

    async def first() -> Completion:
        await asyncio.sleep(0.05)
        gate.cool_down(0.3)  # the answer was a 429 telling everyone to wait
        return Completion("a", Usage())

    async def second() -> Completion:
        sent.append(loop.time())
        return Completion("b", Usage())

    start = loop.time()
    await asyncio.gather(gate.run(first), gate.run(second))
    assert sent[0] - start >= 0.3


async def test_a_request_that_failed_for_a_transient_reason_is_sent_again_on_resume(
    tmp_path: Path,
) -> None:
    journal = ResponseJournal(tmp_path / "responses.jsonl")
    client = make_client(CountingProvider(failures={"z": 99}), tmp_path, max_retries=1)
    client.journal = journal
    results = await asyncio.gather(
        *(client.complete(msgs("z")) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RequestFailed) for r in results)
    journal.close()

    # The endpoint was down, not the request wrong: once it answers, the resume asks again.
    healthy = CountingProvider()
    replay = make_client(healthy, tmp_path / "other")
    replay.journal = ResponseJournal(tmp_path / "responses.jsonl")
    for _ in range(3):
        assert (await replay.complete(msgs("z"))).text == "Z"
    replay.journal.close()
    assert healthy.calls == 1


async def test_a_request_refused_for_its_content_fails_again_on_replay(tmp_path: Path) -> None:
    journal = ResponseJournal(tmp_path / "responses.jsonl")
    refusing = CountingProvider(rejects={"z"})
    client = make_client(refusing, tmp_path, max_retries=3)
    client.journal = journal
    with pytest.raises(RequestFailed, match="context length") as info:
        await client.complete(msgs("z"))
    assert info.value.permanent and refusing.calls == 1  # never retried
    assert client.usage.errors == 1
    journal.close()

    healthy = CountingProvider()
    replay = make_client(healthy, tmp_path / "other")
    replay.journal = ResponseJournal(tmp_path / "responses.jsonl")
    with pytest.raises(RequestFailed, match="context length"):
        await replay.complete(msgs("z"))
    replay.journal.close()
    assert healthy.calls == 0 and replay.usage.errors == 1


async def test_a_refusal_shared_by_identical_requests_is_counted_once_on_replay(
    tmp_path: Path,
) -> None:
    journal = ResponseJournal(tmp_path / "responses.jsonl")
    client = make_client(CountingProvider(rejects={"z"}, delay_s=0.01), tmp_path)
    client.journal = journal
    results = await asyncio.gather(
        *(client.complete(msgs("z")) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(r, RequestFailed) for r in results)
    assert client.usage.errors == 1
    journal.close()

    replay = make_client(CountingProvider(), tmp_path / "other")
    replay.journal = ResponseJournal(tmp_path / "responses.jsonl")
    for _ in range(3):
        with pytest.raises(RequestFailed):
            await replay.complete(msgs("z"))
    replay.journal.close()
    assert replay.usage.errors == 1 and replay.errors.failed == 1


async def test_examples_are_scheduled_in_a_bounded_window(tmp_path: Path) -> None:
    from promptopt.scoring.scorer import MIN_WINDOW, WINDOW_PER_SLOT

    provider = CountingProvider(delay_s=0.001)
    client = make_client(provider, tmp_path, concurrency=2)
    many = [Example(id=f"m{i}", fields={"input": f"w{i}"}, targets=(f"W{i}",)) for i in range(600)]
    peak = 0

    def watch(result: object) -> None:
        nonlocal peak
        peak = max(peak, len(asyncio.all_tasks()))

    result = await scorer_for(client).evaluate("Uppercase it.", many, split="dev", on_result=watch)
    assert [e.id for e in result.examples] == [e.id for e in many] and result.score == 1.0
    # Before: a task per example, all 600 alive at once.
    window = max(MIN_WINDOW, WINDOW_PER_SLOT * 2)
    assert peak <= 2 * window + 2  # the workers, their in-flight requests, this test


async def test_answers_that_never_wait_are_taken_by_one_worker() -> None:
    # Cached answers return without waiting: before, a full window of workers was made anyway
    # (1,024 at a concurrency of 256, longer to make than 2,000 cached answers to score).
    from promptopt.scoring.scorer import ExampleResult, in_windows

    tasks: set[int] = set()

    async def run(example: Example) -> ExampleResult:
        tasks.add(len(asyncio.all_tasks()))
        return ExampleResult(example.id, "", 1.0)

    many = [Example(id=f"m{i}", fields={"input": "x"}, targets=("x",)) for i in range(300)]
    results = await in_windows(run, many, 64)
    assert [r.id for r in results] == [e.id for e in many]
    assert tasks == {2}  # this test's task and one worker


async def test_answers_that_wait_fill_the_whole_window_in_order() -> None:
    from promptopt.scoring.scorer import ExampleResult, in_windows

    running = peak = 0
    started: list[str] = []

    async def run(example: Example) -> ExampleResult:
        nonlocal running, peak
        started.append(example.id)
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return ExampleResult(example.id, "", 1.0)

    many = [Example(id=f"m{i}", fields={"input": "x"}, targets=("x",)) for i in range(300)]
    results = await in_windows(run, many, 64)
    assert [r.id for r in results] == [e.id for e in many]
    assert started == [e.id for e in many] and peak == 64


async def test_the_first_failure_in_a_window_cancels_the_rest(tmp_path: Path) -> None:
    from promptopt.scoring.scorer import ExampleResult, in_windows

    started: list[str] = []

    async def run(example: Example) -> ExampleResult:
        started.append(example.id)
        await asyncio.sleep(0.001)
        if example.id == "e3":
            raise FatalProviderError("boom")
        await asyncio.sleep(1)
        return ExampleResult(example.id, "", 1.0)

    with pytest.raises(FatalProviderError):
        await in_windows(run, EXAMPLES, 4)
    assert started == ["e0", "e1", "e2", "e3"]  # nothing after the failure was started


def test_every_example_of_a_prompt_shares_one_stable_prefix() -> None:
    # Providers cache a prompt's prefix (OpenAI from 1,024 tokens on its own; Anthropic where
    # a breakpoint marks it): the instruction, its output format and the demonstrations come
    # first and are byte-identical for every example; only the last message differs.
    from promptopt.task.prompt import Demo
    from promptopt.util.prompt import render_system_prompt

    system = render_system_prompt("Classify the question.", "Answer with one label.")
    demos = (Demo(id="d1", input="Who wrote Hamlet?", output="HUM"),)
    first = build_messages(system, "How far is the moon?", demos)
    second = build_messages(system, "When did Rome fall?", demos)
    assert first[:-1] == second[:-1]
    assert first[0] == {"role": "system", "content": system}
    assert system.index("Classify") < system.index("Answer with one label.")
    assert [m["role"] for m in first] == ["system", "user", "assistant", "user"]
