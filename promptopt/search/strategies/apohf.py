"""APOHF (Lin et al., 2024): prompt optimization from pairwise preferences, as a dueling bandit.

A pool of candidate instructions is made up front (instructions induced from the task and a
few examples, and rephrasings of the initial one, as APE makes them) and embedded, by the
run's embedding model when there is one, else by a model-free hashed embedding. Each round
asks for one preference: two prompts answer the same training input and a comparator says
which answer is better. A small network trained with the Bradley-Terry loss on every answer so
far predicts each prompt's utility; the next pair is the prompt of highest predicted utility
and the one of highest utility plus a confidence bonus (`promptopt.search.utility`). The first
few pairs are random. The result is the compared prompt of highest predicted utility.

The strategy never needs a score, only preferences; here they come from the task's metric
(the paper's simulation), through the `Comparator` seam that a judge or a person can fill.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Mapping, Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from promptopt.errors import UsageError
from promptopt.scoring.preference import (
    DEFAULT_RUBRIC,
    Comparator,
    JudgeComparator,
    MetricComparator,
)
from promptopt.search.context import (
    Candidate,
    EmbeddingUnavailable,
    Plan,
    SearchContext,
    StepReport,
    StrategyInfo,
)
from promptopt.search.population import gather_all
from promptopt.search.utility import (
    Array,
    Comparison,
    UtilityModel,
    UtilitySettings,
    fit_dimension,
    hashed_embedding,
)
from promptopt.task.example import Example

INDUCE = "apohf/induce"
REPHRASE = "apohf/rephrase"


class APOHFParams(BaseModel):
    """APOHF's parameters: the paper's model and bandit, a pool and a query count that fit a
    few hundred target calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    induced: int = Field(default=8, ge=0, description="pool instructions induced from examples")
    rephrased: int = Field(default=8, ge=0, description="pool rephrasings of the initial prompt")
    comparisons: int = Field(
        default=60, ge=1, description="preference queries; each costs two target calls at most"
    )
    initial_pairs: int = Field(default=5, ge=0, description="random pairs before the model")
    policy: Literal["neural", "linear", "random"] = Field(
        default="neural",
        description="how pairs are chosen: the neural dueling bandit, the linear one, or at "
        "random (the baselines)",
    )
    hidden: int = Field(default=32, ge=1, description="width of the two hidden layers")
    learning_rate: float = Field(default=1e-3, gt=0, description="Adam's step size")
    train_steps: int = Field(default=300, ge=1, description="Adam steps per refit")
    regularization: float = Field(default=0.1, gt=0, description="lambda")
    exploration: float = Field(default=1.0, ge=0, description="nu, the bonus weight")
    report_every: int = Field(
        default=10, ge=1, description="comparisons per step reported to the engine"
    )
    temperature: float | None = Field(
        default=1.0, ge=0, description="optimizer temperature for the pool (null: the model's)"
    )
    feedback: Literal["metric", "judge", "human"] = Field(
        default="metric",
        description="who says which answer is better: the task's metric, the judge model "
        "(models.judge, else the optimizer) asked in both orders, or a person at the terminal "
        "(run --human)",
    )
    embedding: Literal["auto", "provider", "hashed"] = Field(
        default="auto",
        description="how candidates are embedded: the embedding model (models.embedding, else "
        "the optimizer's endpoint) when there is one that answers, else the built-in hashed "
        "embedding (auto); the model or stop (provider); or always the hashed one (hashed)",
    )
    rubric: str | None = Field(
        default=None,
        description="what the judge is told makes an answer better (null: a generic rubric "
        "that asks for the task done correctly, completely and in the form asked)",
    )

    def utility_settings(self) -> UtilitySettings:
        """The utility model these parameters describe."""
        return UtilitySettings(
            hidden=() if self.policy == "linear" else (self.hidden, self.hidden),
            learning_rate=self.learning_rate,
            steps=self.train_steps,
            regularization=self.regularization,
            exploration=self.exploration,
        )


def pool_sizes(params: APOHFParams, optimizer_left: int | None) -> tuple[int, int]:
    """How many induced and rephrased candidates to ask for within the optimizer calls left
    (induction first: it brings the more varied instructions)."""
    induced, rephrased = params.induced, params.rephrased
    if optimizer_left is not None:
        induced = min(induced, max(0, optimizer_left))
        rephrased = min(rephrased, max(0, optimizer_left - induced))
    return induced, rephrased


def utility_ranking(
    model: UtilityModel, arms: Sequence[Candidate], compared: set[int]
) -> list[Candidate]:
    """The compared arms, highest predicted utility first (ties: the older candidate)."""
    util = model.utilities()
    order = sorted(compared, key=lambda i: (-util[i], arms[i].id))
    return [arms[i] for i in order]


class APOHF:
    """The APOHF strategy."""

    def __init__(self, params: APOHFParams, comparator: Comparator | None = None) -> None:
        self.params = params
        self.comparator = comparator

    def comparator_for(self, ctx: SearchContext) -> Comparator:
        """The comparator the parameters ask for (one given to the strategy wins)."""
        if self.comparator is not None:
            return self.comparator
        if ctx.comparator is not None and ctx.comparator.source == self.params.feedback:
            # The run's own (a person at the terminal, or the judge that also decides the
            # final win rate).
            return ctx.comparator
        if self.params.feedback == "metric":
            return MetricComparator()
        if self.params.feedback == "human":
            if ctx.comparator is None or ctx.comparator.source != "human":
                raise UsageError(
                    "apohf: search.params.feedback is human, which needs a person at the "
                    "terminal: run (or resume) with --human"
                )
            return ctx.comparator
        if ctx.judge is None:
            raise UsageError(
                "apohf: search.params.feedback is judge, but there is no judge model; "
                "set models.judge (or models.optimizer)"
            )
        return JudgeComparator(
            ctx.judge, self.params.rubric or DEFAULT_RUBRIC, ctx.task_description
        )

    def plan(self, sizes: Mapping[str, int]) -> Plan:
        """The most calls APOHF makes: two target calls per comparison, one optimizer call per
        pool candidate, and with a judge two judge calls per comparison."""
        p = self.params
        return Plan(
            target_calls=2 * p.comparisons,
            optimizer_calls=p.induced + p.rephrased,
            layout={"pool": 1 + p.induced + p.rephrased, "comparisons": p.comparisons},
            judge_calls=2 * p.comparisons if p.feedback == "judge" else 0,
        )

    async def make_pool(self, ctx: SearchContext, initial: Candidate) -> list[Candidate]:
        """The initial prompt, then induced instructions and rephrasings of it."""
        left = ctx.remaining_optimizer_calls()
        induced, rephrased = pool_sizes(self.params, left)
        sampling = (
            None if self.params.temperature is None else {"temperature": self.params.temperature}
        )
        asked = await gather_all(
            ctx,
            [
                ctx.ask(INDUCE, induced, sampling),
                ctx.ask(REPHRASE, rephrased, sampling, instruction=initial.text),
            ],
        )
        pool = [initial]
        for raw in asked[0]:
            cand = ctx.accept_proposal(raw, operator="apohf-induce")
            if cand is not None:
                pool.append(cand)
        for raw in asked[1]:
            cand = ctx.accept_proposal(raw, operator="apohf-rephrase", parents=[initial.id])
            if cand is not None:
                pool.append(cand)
        return pool

    async def pool_features(
        self, ctx: SearchContext, arms: Sequence[Candidate]
    ) -> tuple[Array, str, str | None]:
        """The pool's embeddings as the utility model's input, how they were made ("provider"
        or "hashed") and by which model; an "embedding" event says which in one line."""
        mode = self.params.embedding
        fallback = "asked for (search.params.embedding: hashed)"
        if mode != "hashed":
            try:
                embedded = await ctx.embed([c.text for c in arms])
                features = fit_dimension(embedded.vectors)
            except (EmbeddingUnavailable, ValueError) as exc:
                if mode == "provider":
                    raise UsageError(
                        f"apohf: search.params.embedding is provider, but the prompts could "
                        f"not be embedded: {exc}; set models.embedding to a model with an "
                        "embeddings endpoint, or use embedding: auto to fall back to the "
                        "hashed embedding"
                    ) from None
                fallback = f"the fallback, since the prompts could not be embedded: {exc}"
            else:
                ctx.event(
                    "embedding",
                    source="provider",
                    model=embedded.model,
                    note=f"candidate prompts embedded by {embedded.model}",
                )
                return features, "provider", embedded.model
        ctx.event(
            "embedding",
            source="hashed",
            model=None,
            note=f"candidate prompts embedded by the built-in hashed embedding, {fallback}",
        )
        return np.stack([hashed_embedding(c.text) for c in arms]), "hashed", None

    def next_pair(
        self,
        ctx: SearchContext,
        model: UtilityModel,
        history: Sequence[Comparison],
    ) -> tuple[int, int]:
        """The next pair to compare: random at first (and always for the random policy), then
        the dueling bandit's choice."""
        n = model.features.shape[0]
        if self.params.policy == "random" or len(history) < self.params.initial_pairs:
            first, second = ctx.rng.sample(range(n), 2)
            return first, second
        return model.choose_pair(history)

    async def compare(
        self,
        ctx: SearchContext,
        comparator: Comparator,
        arms: Sequence[Candidate],
        pair: tuple[int, int],
        example: Example,
    ) -> Comparison | None:
        """Both prompts answer `example`; the comparator says which answer is better (None: the
        pair was skipped; it still counts as a query, since its answers were paid for)."""
        first, second = arms[pair[0]], arms[pair[1]]
        results = await gather_all(ctx, [ctx.score(first, [example]), ctx.score(second, [example])])
        pref = await comparator.compare(example, results[0][0], results[1][0])
        ctx.event(
            "comparison",
            first=first.id,
            second=second.id,
            example=example.id,
            choice=str(pref.choice),
            source=pref.source,
            why=pref.detail,
            skipped=pref.skipped,
        )
        if pref.skipped:
            return None
        return Comparison(pair[0], pair[1], pref.choice.first_wins)

    async def search(
        self, ctx: SearchContext, initial: Candidate
    ) -> AsyncGenerator[StepReport, None]:
        """Build the pool, then ask for preferences pair by pair, refitting the utility model
        after each, and report the compared prompts by predicted utility."""
        p = self.params
        if not ctx.train:
            raise UsageError("apohf needs training inputs: give the task a data.train split")
        comparator = self.comparator_for(ctx)
        queries = p.comparisons
        target_left = ctx.remaining_target_calls()
        if target_left is not None:
            queries = min(queries, target_left // 2)
        arms = await self.make_pool(ctx, initial)
        if len(arms) < 2:
            ctx.event("search_stopped", reason="the pool has no candidate besides the initial")
            return
        judge_left = ctx.remaining_judge_calls()
        if comparator.source == "judge" and judge_left is not None:
            # Two judge calls per comparison, one in each order.
            queries = min(queries, judge_left // 2)
        features, embedding, embedding_model = await self.pool_features(ctx, arms)
        model = UtilityModel(features, p.utility_settings(), seed=ctx.rng.randrange(2**31))
        ctx.event(
            "apohf_plan",
            pool=[c.id for c in arms],
            comparisons=queries,
            policy=p.policy,
            embedding=embedding,
            embedding_model=embedding_model,
            feedback=comparator.source,
        )
        history: list[Comparison] = []
        compared: set[int] = set()
        train = list(ctx.train)
        for k in range(1, queries + 1):
            pair = self.next_pair(ctx, model, history)
            example = train[ctx.rng.randrange(len(train))]
            answered = await self.compare(ctx, comparator, arms, pair, example)
            if answered is not None:
                history.append(answered)
                compared.update(pair)
                model.fit(history)
            if not compared:
                continue
            if k % p.report_every == 0 or k == queries:
                ranking = utility_ranking(model, arms, compared)
                util = model.utilities()
                yield StepReport(
                    f"comparisons-{k}",
                    tuple(c.id for c in ranking),
                    None,
                    {
                        "comparisons": k,
                        "utility": {arms[i].id: round(float(util[i]), 4) for i in compared},
                        "wins": _win_counts(history, arms),
                    },
                )


def _win_counts(history: Sequence[Comparison], arms: Sequence[Candidate]) -> dict[str, float]:
    """Each compared prompt's wins (a tie counts half), for the step's record."""
    wins: dict[str, float] = {}
    for c in history:
        a, b = arms[c.first].id, arms[c.second].id
        wins[a] = wins.get(a, 0.0) + c.first_wins
        wins[b] = wins.get(b, 0.0) + (1.0 - c.first_wins)
    return {k: v for k, v in sorted(wins.items()) if not math.isnan(v)}


INFO = StrategyInfo(
    name="apohf",
    summary="APOHF: a dueling bandit over a pool of instructions, learning a Bradley-Terry "
    "utility from which of two answers is better (Lin et al., 2024); preferences from the "
    "task's metric",
    params=APOHFParams,
    build=lambda params: APOHF(params),
    presets={
        "light": {"induced": 5, "rephrased": 5, "comparisons": 40},
        "paper": {"comparisons": 150},
    },
)
