"""Tasks: the task file's schema, its examples and the loader that checks both.

`schema` holds the pydantic models of the file, `data` reads and splits the examples, `locate`
points each problem at a file line and field, and `loader` ties them into `load_task`.
"""

from promptopt.task.example import Example
from promptopt.task.loader import LoadedTask, load_task, validate_task
from promptopt.task.metricspec import MetricSpec, MetricType
from promptopt.task.modelspec import ModelSpec, Price
from promptopt.task.schema import (
    SPLITS,
    BudgetSpec,
    DataSpec,
    ModelsSpec,
    SearchSpec,
    SplitSpec,
    TaskFile,
)

__all__ = [
    "SPLITS",
    "BudgetSpec",
    "DataSpec",
    "Example",
    "LoadedTask",
    "MetricSpec",
    "MetricType",
    "ModelSpec",
    "ModelsSpec",
    "Price",
    "SearchSpec",
    "SplitSpec",
    "TaskFile",
    "load_task",
    "validate_task",
]
