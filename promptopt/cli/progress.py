"""A run's progress on stderr: rich progress bars on a terminal; in a log (CI, a pipe), a plain
line at every tenth of a phase, so that a long final evaluation is not a silent one."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from promptopt.app.run import RunProgress

_LABELS = {"search": "search", "final": "final evaluation"}
# Without a cap there is no tenth to report at: a line every this many calls instead.
_UNCAPPED_EVERY = 100


class RunProgressDisplay:
    """Receives a run's progress (`execute_run(on_progress=...)`) and shows it on `console`."""

    def __init__(self, console: Console, *, live: bool = True) -> None:
        self.console = console
        self.live = live and console.is_terminal
        self._bars: Progress | None = None
        self._rows: dict[str, TaskID] = {}
        self._shown: dict[str, int] = {}

    def __enter__(self) -> RunProgressDisplay:
        if self.live:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bars = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("target calls"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._bars.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._bars is not None:
            self._bars.stop()

    def __call__(self, progress: RunProgress) -> None:
        """Show one report of the run's progress."""
        if self._bars is not None:
            self._draw(self._bars, progress)
        else:
            self._log(progress)

    def _draw(self, bars: Progress, progress: RunProgress) -> None:
        row = self._rows.get(progress.phase)
        if row is None:
            for other in self._rows.values():
                # The search may stop before its cap: its bar is done all the same.
                task = bars.tasks[other]
                bars.update(other, total=task.completed)
            row = bars.add_task(_LABELS.get(progress.phase, progress.phase), total=progress.total)
            self._rows[progress.phase] = row
        bars.update(row, completed=progress.done, total=progress.total)

    def _log(self, progress: RunProgress) -> None:
        label = _LABELS.get(progress.phase, progress.phase)
        if progress.total:
            mark = progress.done * 10 // progress.total
            detail = f"{progress.done}/{progress.total} target calls ({mark * 10}%)"
        else:
            mark = progress.done // _UNCAPPED_EVERY
            detail = f"{progress.done} target calls"
        if self._shown.get(progress.phase) == mark:
            return
        self._shown[progress.phase] = mark
        self.console.print(f"{label}: {detail}", highlight=False)
