"""Tasks join data to a head: datasets, targets, loss, decode, metric, visualisation."""
from scalenas.tasks.base import TASKS, Task, build_task

__all__ = ["TASKS", "Task", "build_task"]
