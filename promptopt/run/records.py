"""Typed records of a run folder: config.json, summary.json, candidates.jsonl, events.jsonl and
final_eval.json.

Writers build these records and readers get them back, so no code reaches into a run's JSON
by string keys. Every record keeps fields it does not know (`extra="allow"`): a folder written
by a newer or older promptopt loads, and writing it back loses nothing. `summary.json` and
`config.json` carry `schema_version`; folders written before it existed have none and still
load.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from promptopt.util.prompt import render_system_prompt

SCHEMA_VERSION = 1
"""The version of the run-folder records written by this promptopt."""


class Record(BaseModel):
    """Base of every run-folder record: unknown fields are kept, not refused."""

    model_config = ConfigDict(extra="allow")

    # Fields a file leaves out while they are unset, as it did before records were typed: a
    # reader that asks `"test_comparison" in summary` must keep its answer.
    _omit_when_none: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The record as written to the run folder."""
        data = self.model_dump(mode="json")
        for key in self._omit_when_none:
            if data.get(key) is None:
                data.pop(key, None)
        return data


class UsageRecord(Record):
    """One role's model usage (the `usage` object of the JSON contracts)."""

    requests: int = 0
    cache_hits: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = 0.0
    """Dollars spent; None (null) when the model's price is unknown, never a made-up 0."""
    attempts: int = 0
    errors: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_s: float = 0.0


class SplitScores(Record):
    """A prompt's mean score on dev and test (None where it was not scored)."""

    dev: float | None = None
    test: float | None = None


class ScoresRecord(Record):
    """The initial and the best prompt's scores."""

    initial: SplitScores = Field(default_factory=SplitScores)
    best: SplitScores = Field(default_factory=SplitScores)


class ComparisonRecord(Record):
    """The paired comparison of best vs initial on test."""

    delta: float
    ci95: tuple[float, float]
    mcnemar_p: float | None = None
    sign_p: float | None = None
    """The exact sign test's p-value, for a graded (not 0/1) metric, as McNemar's for 0/1."""
    verdict: str


class PreferenceEvalRecord(Record):
    """Best against initial on held-out inputs, judged pairwise: how often the best prompt's
    answer was preferred, with its interval and the sign test."""

    source: str
    """Who preferred: "judge" (asked in both orders) or "human"."""
    n: int
    wins: int
    losses: int
    ties: int
    win_rate: float
    """Wins plus half the ties, over n."""
    ci95: tuple[float, float]
    sign_p: float
    verdict: str


class PairRecord(Record):
    """One held-out input's preference between the best and the initial prompt's answers."""

    id: str
    preferred: str
    """"best", "initial" or "tie"."""
    detail: str | None = None
    skipped: bool = False

    _omit_when_none = ("detail",)


class ModelUsed(Record):
    """A role's model as configured, and the model names its API reported."""

    model: str
    reported: list[str] = Field(default_factory=list)


class SummaryRecord(Record):
    """summary.json, also printed by `run --json`."""

    schema_version: int | None = None
    run_dir: str
    task: str
    strategy: str
    seed: int
    initial_prompt: str
    best_prompt: str
    initial_instruction: str | None = None
    """A structured prompt's instruction (what the search edited); absent for a plain one."""
    best_instruction: str | None = None
    best_id: str | None = None
    scores: ScoresRecord = Field(default_factory=ScoresRecord)
    usage: dict[str, UsageRecord] = Field(default_factory=dict)
    wall_s: float = 0.0
    status: str | None = None
    stop_reason: str | None = None
    steps: int | None = None
    candidates: int | None = None
    models: dict[str, ModelUsed] = Field(default_factory=dict)
    promptopt_version: str | None = None
    n: dict[str, int] | None = None
    ci95: dict[str, tuple[float, float]] | None = None
    test_comparison: ComparisonRecord | None = None
    test_preference: PreferenceEvalRecord | None = None
    """The best prompt against the initial one on test, judged pairwise (a run whose search
    asked a judge or a person which answer is better)."""
    dev_preference: PreferenceEvalRecord | None = None
    """The same on dev, where it chose the best prompt (a task without a metric)."""
    rejected: dict[str, int] | None = None
    """Optimizer answers (or items of them) the search rejected, by reason ("truncated",
    "degenerate", ...); None in folders written before it was recorded."""
    best_demos: list[str] | None = None
    """The training-example ids of the best prompt's few-shot demonstrations, in order (their
    text is in best_demos.json); absent when the run searched no demonstrations."""
    initial_demos: list[str] | None = None
    """The training-example ids of the initial prompt's own demonstrations (`run
    --demos-file`), in order; absent when it had none."""
    metric_errors: int | None = None
    """Examples whose metric raised or returned a value outside [0, 1] (each scored 0)."""
    test_errors: int | None = None
    """Examples of the final test evaluation (initial and best prompt) that failed: scored 0,
    so a comparison with any is not evidence either way."""

    dev_errors: int | None = None
    """Examples of the final dev evaluation (the initial prompt and the finalists) that failed;
    they can decide which prompt is "best"."""

    _omit_when_none = (
        "metric_errors",
        "test_errors",
        "dev_errors",
        "initial_instruction",
        "best_instruction",
        "n",
        "ci95",
        "test_comparison",
        "test_preference",
        "dev_preference",
        "rejected",
        "best_demos",
        "initial_demos",
    )

    def model_of(self, role: str) -> ModelUsed | None:
        """A role's model as configured and the names its API reported, or None."""
        return self.models.get(role)


class CapsRecord(Record):
    """Hard caps of a run."""

    target_calls: int | None = None
    optimizer_calls: int | None = None
    cost_usd: float | None = None
    judge_calls: int | None = None


class StopRecord(Record):
    """Stopping rules of a run."""

    max_steps: int | None = None
    patience: int | None = None
    target_score: float | None = None


class SettingsRecord(Record):
    """Everything about a run besides the task.

    A run started with `--demos-file` also has `initial_demos` (a list of demonstrations, as
    best_demos.json holds them); it is kept as an extra field so that other runs' config.json
    stays as it was.
    """

    strategy: str
    params: dict[str, Any] = Field(default_factory=dict)
    seed: int = 0
    caps: CapsRecord = Field(default_factory=CapsRecord)
    stop: StopRecord = Field(default_factory=StopRecord)
    finalists: int = 3
    concurrency: int = 8


class ConfigRecord(Record):
    """config.json: the resolved task (never a key), the settings, hashes and versions."""

    schema_version: int | None = None
    task_path: str
    task: dict[str, Any]
    task_hash: str = ""
    data_hash: str = ""
    settings: SettingsRecord
    promptopt_version: str | None = None
    versions: dict[str, str | None] = Field(default_factory=dict)

    @property
    def models(self) -> dict[str, Any]:
        """The task's models section as the run resolved it (role -> spec mapping or None)."""
        models = self.task.get("models") or {}
        return dict(models) if isinstance(models, dict) else {}

    def model_id(self, role: str) -> str | None:
        """The `provider:name` of a role's model, or None."""
        spec = self.models.get(role)
        if spec is None:
            return None
        return str(spec.get("model")) if isinstance(spec, dict) else str(spec)

    @property
    def task_name(self) -> str | None:
        """The task's name, or None when the resolved task has none."""
        name = self.task.get("name")
        return None if name is None else str(name)

    @property
    def task_prompt(self) -> str | None:
        """The task's own prompt as its system message (the run's starting point unless a
        baseline replaced it); a structured prompt's instruction and output format together."""
        prompt = self.task.get("prompt")
        if isinstance(prompt, dict):
            return render_system_prompt(
                str(prompt.get("instruction") or ""), str(prompt.get("output_format") or "")
            )
        return None if prompt is None else str(prompt)

    @property
    def metric_type(self) -> str | None:
        """The type of the task's metric (exact, judge, ...), or None."""
        metric = self.task.get("metric")
        kind = metric.get("type") if isinstance(metric, dict) else None
        return None if kind is None else str(kind)


class CandidateScore(Record):
    """A candidate's mean on one split and how many examples it rests on."""

    mean: float | None = None
    n: int = 0


class DemoRecord(Record):
    """One few-shot demonstration: the training example's id, its input as the target sees it
    and the answer shown for it (best_demos.json holds a list of these)."""

    id: str
    input: str
    output: str


class BestDemosRecord(Record):
    """best_demos.json: the best prompt's candidate id and the demonstrations sent with it."""

    id: str | None = None
    demos: list[DemoRecord] = Field(default_factory=list)


class CandidateRecord(Record):
    """One line of candidates.jsonl; a later line for the same id supersedes an earlier one."""

    id: str
    text: str
    parents: list[str] = Field(default_factory=list)
    operator: str = ""
    step: int = 0
    feedback: dict[str, Any] | None = None
    scores: dict[str, CandidateScore] = Field(default_factory=dict)
    demos: list[DemoRecord] | None = None
    """The few-shot demonstrations sent with the text, in order; absent when there are none."""

    _omit_when_none = ("demos",)

    def score(self, split: str) -> float | None:
        """The candidate's mean on `split` (train, dev), or None when it was not scored there."""
        scored = self.scores.get(split)
        return None if scored is None else scored.mean

    def note(self, key: str) -> str | None:
        """One entry of the optimizer's feedback (errors, gradient, edit) as text, a list one
        item per line; None when the candidate has no such entry or it is empty."""
        value = (self.feedback or {}).get(key)
        if not value:
            return None
        return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)


class EventRecord(Record):
    """One line of events.jsonl. Fields besides `event` and `step` depend on the event; the
    common ones are typed here."""

    step: int | None = None
    event: str
    # "step" events
    name: str | None = None
    ranking: list[str] | None = None
    best_score: float | None = None
    detail: dict[str, Any] | None = None
    calls: dict[str, int] | None = None
    cost_usd: float | None = None
    """Dollars spent so far; null when a model's price is unknown."""
    # "rejected" events
    reason: str | None = None

    def calls_to(self, role: str) -> int:
        """Calls to `role`'s model so far ("step" events); 0 when not recorded."""
        return (self.calls or {}).get(role, 0)

    def to_json(self) -> dict[str, Any]:
        """Only the fields the event has: events differ in what they record."""
        return self.model_dump(mode="json", exclude_unset=True)


class ExampleRecord(Record):
    """An example as the final evaluation showed it to the model."""

    id: str
    input: str = ""
    targets: list[str] = Field(default_factory=list)


class ResultRecord(Record):
    """One example's outcome for one prompt."""

    id: str
    output: str = ""
    score: float
    latency_s: float | None = None
    error: str | None = None

    _omit_when_none = ("error",)


class SideRecord(Record):
    """One prompt's per-example results on dev and test."""

    id: str = "?"
    dev: list[ResultRecord] = Field(default_factory=list)
    test: list[ResultRecord] = Field(default_factory=list)

    def split(self, name: str) -> list[ResultRecord]:
        """The results on `name` (dev or test)."""
        return self.test if name == "test" else self.dev if name == "dev" else []


class FinalEvalRecord(Record):
    """final_eval.json: per-example outputs of the initial and the best prompt."""

    examples: dict[str, list[ExampleRecord]] = Field(default_factory=dict)
    initial: SideRecord = Field(default_factory=SideRecord)
    best: SideRecord = Field(default_factory=SideRecord)
    preferences: dict[str, list[PairRecord]] | None = None
    """By split: which answer was preferred on each input (runs judged pairwise)."""

    _omit_when_none = ("preferences",)
