"""Tasks join data to a head: datasets, targets, loss, decode, metric, visualisation."""
from scalenas.tasks.base import Task, get_task_class, register_task

__all__ = ["Task", "get_task_class", "register_task"]
