"""Architectures only: encoding, validation, sampling, variation, profiling. No torch modules."""
from scalenas.space.arch import Arch, ModuleArch
from scalenas.space.heads import HeadSpec
from scalenas.space.space import SearchSpace
from scalenas.space.profile import Profile, profile

__all__ = ["Arch", "ModuleArch", "HeadSpec", "SearchSpace", "Profile", "profile"]
