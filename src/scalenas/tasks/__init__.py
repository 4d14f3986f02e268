"""Tasks join data to a head: datasets, targets, loss, decode, metric, visualisation."""
from scalenas.tasks.base import TASKS, Task

__all__ = ["TASKS", "Task"]
