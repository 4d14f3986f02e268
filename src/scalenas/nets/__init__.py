"""Torch modules built from (space, arch, head): the static ScaleNet and the weight-sharing supernet."""
from scalenas.nets.scalenet import ScaleNet
from scalenas.nets.registry import create_model, get_preset, list_presets

__all__ = ["ScaleNet", "create_model", "get_preset", "list_presets"]
