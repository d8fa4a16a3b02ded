"""Trainable-parameter counts the papers publish (Swin-T, PASCAL-Context, 4 tasks), with their scope.

Only numbers that DESIGN.md or the papers' public text give; a method without one is absent.
``field`` names the ``MultiTaskModel.parameter_counts`` entry with the same scope as the published
figure, so that ``vmt params`` can set ours beside it (DESIGN.md 1.3: never compare scopes blindly).
"""

from __future__ import annotations

from typing import NamedTuple


PUBLISHED_BACKBONE = "swin_tiny"  # every published count below is for Swin-T


class Published(NamedTuple):
    params: int  # as printed, in millions to two decimals
    scope: str
    source: str
    field: str  # our count of the same scope


PUBLISHED_COUNTS: dict[str, Published] = {
    "vmt": Published(1_130_000, "adapter only", "Xin et al., AAAI 2024 (arXiv 2312.08733)", "adapter"),
    "vmt-lite": Published(400_000, "adapter only", "Xin et al., AAAI 2024 (arXiv 2312.08733)", "adapter"),
    "mtlora": Published(8_340_000, "incl. decoders, patch embedding, LayerNorms, rel.-pos. tables, patch merging",
                        "Agiza et al., CVPR 2024 (arXiv 2403.20320), r=64", "trainable"),
    "st-full": Published(112_620_000, "4 single-task models incl. decoders",
                         "Xin et al., AAAI 2024; MTLoRA line (DESIGN.md 2)", "trainable"),
}


# Published multi-task scores on PASCAL-Context with Swin-T (dm %, against single-task full
# fine-tuning), as commonly reprinted in the VMT-Adapter / MTLoRA line of tables (issue 10 lists
# them). The embedded benchmark's ranking is compared with this one (Kendall tau), never tuned to it.
PUBLISHED_DM: dict[str, float] = {
    "vmt": 3.96, "mtlora": 2.55, "mt-full": 2.23, "vmt-lite": 1.34, "st-full": 0.0, "lora": -2.17,
    "adapter": -2.71, "bitfit": -4.60, "vpt-deep": -10.85, "decoder-only": -11.02,
}  # fmt: skip
