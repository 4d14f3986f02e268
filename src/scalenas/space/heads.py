"""Head descriptions as plain data (the torch modules live in ``scalenas.nets.heads``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from scalenas.errors import ScaleNASError

HEAD_KINDS = ("seg", "pose-bottomup", "pose-topdown")
#: the usual input (H, W) of each head, where nothing else gives one: Cityscapes full frames, the
#: top-down person box of HRNet, HigherHRNet's bottom-up crop
DEFAULT_INPUT_HW = {"seg": (1024, 2048), "pose-topdown": (256, 192), "pose-bottomup": (512, 512)}


@dataclass(frozen=True)
class HeadSpec:
    """Which head sits on the backbone, and its output sizes.

    ``seg``: HRNetV2 head (concat of all branches, 1x1 conv + BN + ReLU, 1x1 conv to classes), 1/4 res.
    ``pose-bottomup``: HigherHRNet head: K heatmaps + K tag maps at 1/4, deconv to 1/2 with
    ``num_deconv_blocks`` BasicBlocks, K heatmaps at 1/2.
    ``pose-topdown``: a 1x1 conv to K heatmaps at 1/4.
    """

    kind: str = "seg"
    num_classes: int = 19
    num_joints: int = 17
    num_deconv_blocks: int = 4
    align_corners: bool = False

    def __post_init__(self):
        if self.kind not in HEAD_KINDS:
            raise ScaleNASError(f"head.kind: unknown head {self.kind!r}; choose one of {', '.join(HEAD_KINDS)}")
        if self.num_classes < 1 or self.num_joints < 1:
            raise ScaleNASError("head: num_classes and num_joints must be positive")

    @property
    def is_pose(self) -> bool:
        return self.kind.startswith("pose")

    @property
    def default_input_hw(self) -> tuple[int, int]:
        """The input size costs are given at when neither the task nor the user names one."""
        return DEFAULT_INPUT_HW[self.kind]

    @property
    def pose_rule(self) -> bool:
        """Pose heads read branch 0 only, so the last module obeys the pose rule (method §3.2)."""
        return self.is_pose

    def to_dict(self) -> dict:
        return asdict(self)

    @staticmethod
    def from_dict(d: dict) -> "HeadSpec":
        unknown = set(d) - set(HeadSpec.__dataclass_fields__)
        if unknown:
            raise ScaleNASError(f"head: unknown key(s) {sorted(unknown)}")
        return HeadSpec(**d)

    @staticmethod
    def of(x: "HeadSpec | str | dict") -> "HeadSpec":
        if isinstance(x, HeadSpec):
            return x
        if isinstance(x, str):
            return HeadSpec(kind=x)
        return HeadSpec.from_dict(x)
