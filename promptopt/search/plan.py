"""A run's settings and its plan: what the final evaluation keeps back, the caps the search runs
under, and the worst case `run --dry-run` shows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from promptopt.errors import UsageError
from promptopt.llm.budget import BudgetCaps
from promptopt.llm.messages import Message
from promptopt.llm.pricing import (
    likely_tokens,
    max_cost_usd,
    max_output_tokens,
    request_max_cost_usd,
    unknown_cost_note,
)
from promptopt.scoring.runtime import model_for_role
from promptopt.scoring.scorer import build_messages
from promptopt.search.context import BudgetedPlanner, Plan, Strategy
from promptopt.search.demos import DemoSizing, demo_step_sizing, size_demo_search, step_spec
from promptopt.task.loader import LoadedTask
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.task.prompt import Demo

# The longest instruction extraction accepts (promptopt.search.extract's default), in characters.
PROPOSAL_MAX_CHARS = 2000
# Tokens assumed for one optimizer request when estimating a plan's cost.
_META_PROMPT_TOKENS = 1500


@dataclass(frozen=True)
class StopRules:
    """When to stop searching, besides budgets and the strategy finishing."""

    max_steps: int | None = None
    patience: int | None = None
    target_score: float | None = None


@dataclass(frozen=True)
class RunSettings:
    """Everything about a run besides the task, as written to config.json."""

    strategy: str
    params: dict[str, Any]
    seed: int
    caps: BudgetCaps = field(default_factory=BudgetCaps)
    stop: StopRules = field(default_factory=StopRules)
    finalists: int = 3
    concurrency: int = 8
    initial_demos: tuple[Demo, ...] = ()
    """The initial prompt's own demonstrations (`run --demos-file`), sent with every candidate
    that has none of its own."""

    def to_json(self) -> dict[str, Any]:
        """As stored in config.json (without `initial_demos` when there are none, as before
        the option existed)."""
        data = asdict(self)
        if not self.initial_demos:
            data.pop("initial_demos")
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunSettings:
        """Inverse of `to_json`."""
        return cls(
            strategy=str(data["strategy"]),
            params=dict(data["params"]),
            seed=int(data["seed"]),
            caps=BudgetCaps(**data.get("caps", {})),
            stop=StopRules(**data.get("stop", {})),
            finalists=int(data.get("finalists", 3)),
            concurrency=int(data.get("concurrency", 8)),
            initial_demos=tuple(
                Demo(str(d["id"]), str(d["input"]), str(d["output"]))
                for d in data.get("initial_demos") or ()
            ),
        )


def final_reserve(dev_n: int, test_n: int, finalists: int) -> int:
    """Target calls kept back from the search for the final evaluation: the finalists and the
    initial prompt on all of dev, then the initial and the best prompt on all of test."""
    return (finalists + 1) * dev_n + 2 * test_n


def judges_final(settings: RunSettings) -> bool:
    """Whether a judge model judges the final win rate (a search with judge feedback)."""
    return settings.params.get("feedback") == "judge"


def final_judge_reserve(dev_n: int, test_n: int, *, labelled: bool) -> int:
    """Judge calls kept back for the final win rate: both orders on every test input, and on
    every dev input too when the task has no metric (the judge picks the best prompt there)."""
    return 2 * test_n + (0 if labelled else 2 * dev_n)


def search_caps(caps: BudgetCaps, reserve: int, judge_reserve: int = 0) -> BudgetCaps:
    """The caps the search itself runs under: the final evaluation's `reserve` of target calls
    (and `judge_reserve` judge calls) set aside."""
    if caps.target_calls is not None:
        left = caps.target_calls - reserve
        if left <= 0:
            raise UsageError(
                f"budget.target_calls ({caps.target_calls}) is too small: the final evaluation "
                f"on dev and test alone needs {reserve} target calls; raise it or use smaller "
                "splits"
            )
        caps = replace(caps, target_calls=left)
    if judge_reserve and caps.judge_calls is not None:
        left = caps.judge_calls - judge_reserve
        if left <= 0:
            raise UsageError(
                f"budget.judge_calls ({caps.judge_calls}) is too small: judging the best prompt "
                f"against the initial one on held-out inputs alone needs {judge_reserve} judge "
                "calls (two per input); raise it or use smaller splits"
            )
        caps = replace(caps, judge_calls=left)
    return caps


def cost_left_for_search(cost_cap_usd: float, final_cost_usd: float) -> float:
    """Dollars the search may spend once the final evaluation's worst case is set aside;
    UsageError when the cap does not even cover that."""
    left = cost_cap_usd - final_cost_usd
    if left <= 0:
        raise UsageError(
            f"the cost cap (${cost_cap_usd}) does not cover the worst case of the final "
            "evaluation on dev and test; raise it, or set the target's max_tokens"
        )
    return left


def search_sizes(task: LoadedTask, settings: RunSettings) -> dict[str, int]:
    """How many examples each split has for the run: train without the examples the initial
    prompt's demonstrations show (`RunSettings.initial_demos`), which the search never
    scores on."""
    sizes = {split: len(examples) for split, examples in task.splits.items()}
    if settings.initial_demos:
        shown = {d.id for d in settings.initial_demos}
        in_train = sum(1 for e in task.splits.get("train", ()) if e.id in shown)
        sizes["train"] = max(0, sizes.get("train", 0) - in_train)
    return sizes


def task_demo_sizing(
    task: LoadedTask, settings: RunSettings, sizes: Mapping[str, int] | None = None
) -> DemoSizing:
    """The demonstration step after the instruction search (`prompt.demos.k` > 0), sized to
    the search's target budget; `NO_SEARCH` when there is none. `sizes` default to
    `search_sizes`."""
    sizes = sizes or search_sizes(task, settings)
    target = None
    if settings.caps.target_calls is not None:
        reserve = final_reserve(sizes.get("dev", 0), sizes.get("test", 0), settings.finalists)
        target = max(0, settings.caps.target_calls - reserve)
    return demo_step_sizing(
        task.spec.prompt_layout().demos, settings.strategy, sizes.get("train", 0), target
    )


def demo_cost_share(
    task: LoadedTask, sizing: DemoSizing, left_usd: float, per_call_usd: float, train: int
) -> tuple[float, DemoSizing]:
    """Dollars kept back for the demonstration step out of the search's `left_usd`, and the
    step those dollars pay for: its calls at their worst case (`per_call_usd`, as
    `target_call_max_cost_usd` counts one), at most half of `left_usd`, as its calls are at
    most half of the search's. A step that half cannot pay for is made smaller to fit (a step
    that runs out of money midway proves nothing), or dropped; `train` is how many training
    examples the search has (`search_sizes`)."""
    if not sizing.target_calls or per_call_usd <= 0:
        return 0.0, sizing
    if sizing.target_calls * per_call_usd <= left_usd / 2:
        return sizing.target_calls * per_call_usd, sizing
    spec = task.spec.prompt_layout().demos
    assert spec is not None  # a sized step comes from the task's prompt.demos
    affordable = min(int(left_usd / 2 // per_call_usd), sizing.target_calls)
    fitted = size_demo_search(step_spec(spec), train, affordable)
    return fitted.target_calls * per_call_usd, fitted


def planned_demo_sizing(
    task: LoadedTask, settings: RunSettings, price: Price | None, sizing: DemoSizing
) -> DemoSizing:
    """The demonstration step as a run will size it before it starts: `sizing`, the step the
    target budget allows (`task_demo_sizing`), fitted under a cost cap to the dollars the run
    sets aside for it (`demo_cost_share`), so that `run --dry-run` shows the step the run
    will take."""
    spec = model_for_role(task, "target")
    cap = settings.caps.cost_usd
    if cap is None or spec is None or price is None or not sizing.target_calls:
        return sizing
    fixed = settings.initial_demos
    final = final_eval_cost(task, spec, price, settings.finalists, fixed)
    left = cost_left_for_search(cap, final.usd(initial_system_prompt(task)))
    per_call = target_call_max_cost_usd(task, spec, price, fixed)
    return demo_cost_share(task, sizing, left, per_call, search_sizes(task, settings)["train"])[1]


def strategy_plan(
    strategy: Strategy,
    sizes: Mapping[str, int],
    settings: RunSettings,
    demo_calls: int = 0,
) -> Plan:
    """The strategy's plan for the budget its search will have: the call caps less the final
    evaluation's reserve and the demonstration step's (`demo_calls`), when the strategy sizes
    itself to them (`BudgetedPlanner`)."""
    if not isinstance(strategy, BudgetedPlanner):
        return strategy.plan(sizes)
    caps = settings.caps
    target = None
    if caps.target_calls is not None:
        reserve = final_reserve(sizes.get("dev", 0), sizes.get("test", 0), settings.finalists)
        target = max(0, caps.target_calls - reserve - demo_calls)
    return strategy.plan_for_budget(sizes, target, caps.optimizer_calls)


@dataclass(frozen=True)
class DryRunPlan:
    """What `run --dry-run` prints: the most calls the run can make and their estimated cost."""

    target_calls: int
    optimizer_calls: int
    final_eval_calls: int
    estimated_cost_usd: float | None
    notes: tuple[str, ...] = ()
    layout: dict[str, Any] = field(default_factory=dict)
    """The sizes the strategy settled on for this budget (rounds, beam, ...)."""
    final_eval_cost_usd: float | None = None
    """Dollars set aside for the final evaluation of the task's own prompt (`FinalEvalCost`);
    None when the target's price is unknown."""
    judge_calls: int = 0
    """Judge-model calls, the final win rate's included."""
    final_judge_calls: int = 0
    """Judge calls kept for judging the best prompt against the initial one."""

    def to_json(self) -> dict[str, Any]:
        """As printed by `run --dry-run --json` (the judge's counts only when there is one)."""
        data = asdict(self)
        if not self.judge_calls:
            del data["judge_calls"], data["final_judge_calls"]
        return data


def run_judge_reserve(task: LoadedTask, settings: RunSettings) -> int:
    """Judge calls a run keeps back for its final win rate (0 when no judge judges it)."""
    if not judges_final(settings):
        return 0
    dev_n, test_n = len(task.splits.get("dev", ())), len(task.splits.get("test", ()))
    return final_judge_reserve(dev_n, test_n, labelled=task.spec.metric is not None)


def plan_run(
    task: LoadedTask,
    settings: RunSettings,
    strategy_plan: Plan,
    prices: Mapping[str, Any],
    demos: DemoSizing | None = None,
) -> DryRunPlan:
    """The worst case of a run, without calling any model; `demos` is the demonstration step
    after the instruction search, if the task has one (`planned_demo_sizing`)."""
    dev_n, test_n = len(task.splits.get("dev", ())), len(task.splits.get("test", ()))
    reserve = final_reserve(dev_n, test_n, settings.finalists)
    caps = settings.caps
    demo_calls = demos.target_calls if demos is not None else 0
    search = strategy_plan.target_calls + demo_calls
    if caps.target_calls is not None:
        search = min(search, caps.target_calls - reserve)
    optimizer = strategy_plan.optimizer_calls
    if caps.optimizer_calls is not None:
        optimizer = min(optimizer, caps.optimizer_calls)
    judge_final = run_judge_reserve(task, settings)
    judge = strategy_plan.judge_calls
    if caps.judge_calls is not None:
        judge = min(judge, caps.judge_calls - judge_final)
    notes = list(strategy_plan.notes)
    layout = dict(strategy_plan.layout)
    if demo_calls and demos is not None:
        layout["demos"] = demos.to_json()
        notes.append(
            f"demonstrations: {demos.sets} sets drawn from {demos.pool} training examples, each "
            f"set and the best instruction scored on {demos.eval_examples} others "
            f"({demo_calls} target calls reserved)"
        )
    cost: float | None = 0.0
    final_usd: float | None = None
    roles = (("target", search + reserve), ("optimizer", optimizer), ("judge", judge + judge_final))
    for role, calls in roles:
        spec: ModelSpec | None = model_for_role(task, role)
        if spec is None or calls <= 0:
            continue
        # The judge is the optimizer's model unless the task names its own.
        price = prices.get(role, prices.get("optimizer") if role == "judge" else None)
        if price is None:
            # Never counted as $0: the estimate is unknown as soon as one model's price is.
            if unknown_cost_note(spec) not in notes:
                notes.append(unknown_cost_note(spec))
            cost = None
            continue
        if cost is None:
            continue
        if role == "target":
            # The search's calls at their hard worst case (any proposal, the longest input);
            # the final evaluation's as the run sets them aside.
            fixed = settings.initial_demos
            final_usd = final_eval_cost(task, spec, price, settings.finalists, fixed).usd(
                initial_system_prompt(task)
            )
            cost += search * target_call_max_cost_usd(task, spec, price, fixed) + final_usd
        else:
            cost += calls * optimizer_call_max_cost_usd(spec, price)
    if caps.cost_usd is not None and cost is not None:
        cost = min(cost, caps.cost_usd)
    return DryRunPlan(
        search + reserve,
        optimizer,
        reserve,
        cost,
        tuple(notes),
        layout,
        final_usd,
        judge_calls=judge + judge_final,
        final_judge_calls=judge_final,
    )


@dataclass(frozen=True)
class FinalEvalCost:
    """What the final evaluation sets aside under a cost cap, for a given system message.

    Each of its calls is counted with that example's own input and the model's whole output
    limit, in likely tokens (`likely_tokens`), plus one call's hard worst case (what the client
    reserves for its longest call) so that the last request still finds room for its
    reservation. Built once per run: the inputs' token counts do not change, the prompt does.
    """

    calls: int
    input_tokens: int
    output_tokens: int
    longest_input: str
    demos: tuple[Demo, ...]
    params: Mapping[str, Any]
    price: Price | None

    def usd(self, prompt: str) -> float:
        """Dollars set aside when the longest prompt the final evaluation scores is `prompt`."""
        # The prompt and demonstrations are sent with every call; an empty user turn counts the
        # per-message overhead of the input, whose own tokens are in `input_tokens`.
        fixed = likely_tokens(build_messages(prompt, "", self.demos))
        likely = max_cost_usd(
            self.calls * fixed + self.input_tokens, self.output_tokens, self.price
        )
        margin = request_max_cost_usd(
            build_messages(prompt, self.longest_input, self.demos), self.params, self.price
        )
        return likely + margin


def final_eval_cost(
    task: LoadedTask,
    spec: ModelSpec,
    price: Price | None,
    finalists: int,
    initial_demos: Sequence[Demo] = (),
) -> FinalEvalCost:
    """The final evaluation's calls (`final_reserve`) priced by `FinalEvalCost`; with the
    initial prompt's own demonstrations (`RunSettings.initial_demos`) when it has any."""
    dev = [task.render_input(e) for e in task.splits.get("dev", ())]
    test = [task.render_input(e) for e in task.splits.get("test", ())]

    def tokens(text: str) -> int:
        return likely_tokens([{"role": "user", "content": text}]) - likely_tokens(
            [{"role": "user", "content": ""}]
        )

    calls = final_reserve(len(dev), len(test), finalists)
    params = spec.sampling_params()
    longest = max(dev + test, key=lambda s: len(s.encode("utf-8")), default="")
    return FinalEvalCost(
        calls=calls,
        input_tokens=(finalists + 1) * sum(map(tokens, dev)) + 2 * sum(map(tokens, test)),
        output_tokens=calls * max_output_tokens(params),
        longest_input=longest,
        demos=tuple(_worst_demos(task, spec, longest, initial_demos)),
        params=params,
        price=price,
    )


def initial_system_prompt(task: LoadedTask) -> str:
    """The system message of the task's own prompt, as the run scores it."""
    layout = task.spec.prompt_layout()
    return layout.render(layout.initial)


def _worst_demos(
    task: LoadedTask, spec: ModelSpec, longest: str, initial_demos: Sequence[Demo] = ()
) -> list[Demo]:
    """The longest demonstrations a call may send: the initial prompt's own, or k of the
    longest input, each answered at length (a bootstrapped answer is cut at the output limit,
    assumed 4 bytes a token; a labelled one is a target), whichever is longer."""
    layout = task.spec.prompt_layout()
    fixed = list(initial_demos)
    if layout.demos is None:
        return fixed
    answer_bytes = max(
        [len(t.encode("utf-8")) for split in task.splits.values() for e in split for t in e.targets]
        + [4 * (spec.max_tokens or 1024)]
    )
    drawn = [Demo("x", longest, "x" * answer_bytes)] * layout.demos.k

    # By the tokens an estimate counts (messages carry their own overhead), as the client
    # reserves them: more, shorter demonstrations can cost more than fewer, longer ones.
    return max(drawn, fixed, key=lambda demos: likely_tokens(build_messages("", "", demos)))


def target_call_max_cost_usd(
    task: LoadedTask, spec: ModelSpec, price: Price | None, initial_demos: Sequence[Demo] = ()
) -> float:
    """The worst case of one target call of a run: a prompt as long as an accepted proposal may
    be, the longest input of the task, the longest demonstrations it may send (the initial
    prompt's own among them), and the model's whole output limit. The final evaluation's
    reserve and `run --dry-run` both count this per call, and it is never less than what the
    client reserves for any such call."""
    examples = [e for split in task.splits.values() for e in split]
    # By UTF-8 bytes, as the client counts them: a shorter multibyte input can cost more.
    longest = max(
        (task.render_input(e) for e in examples), key=lambda s: len(s.encode("utf-8")), default=""
    )
    layout = task.spec.prompt_layout()
    # A proposal replaces the editable part only; a fixed output format is sent with it.
    proposal = PROPOSAL_MAX_CHARS * 4
    if layout.output_format:
        proposal += len(layout.render("").encode("utf-8"))
    prompt = "x" * max(len(task.spec.system_prompt.encode("utf-8")), proposal)
    return request_max_cost_usd(
        build_messages(prompt, longest, _worst_demos(task, spec, longest, initial_demos)),
        spec.sampling_params(),
        price,
    )


def optimizer_call_max_cost_usd(spec: ModelSpec, price: Price | None) -> float:
    """An estimate of one optimizer call (meta-prompts vary; their length is assumed)."""
    message: Message = {"role": "user", "content": "x" * _META_PROMPT_TOKENS}
    return request_max_cost_usd([message], spec.sampling_params(), price)
