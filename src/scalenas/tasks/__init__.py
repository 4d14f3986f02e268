"""Tasks join data to a head: datasets, targets, loss, decode, metric, visualisation."""
from scalenas.tasks.base import Task, build_task, get_task_class, register_task

__all__ = ["Task", "build_task", "get_task_class", "register_task"]
