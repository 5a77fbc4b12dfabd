"""Data readers and writers: layout 3.1 (A2D-S, A2D-S+, JHMDB-S, synthetic), Ref-YouTube-VOS, Ref-DAVIS17, training
clips.

``locater.data.synthetic`` (the synthetic benchmark) is imported on its own.
"""

from locater.data.augment import AugmentConfig, augment_clip, swap_left_right
from locater.data.frames import DataError, read_rgb
from locater.data.indices import global_frame_numbers, random_global_frame_numbers
from locater.data.layout import (
    ExpressionSample,
    LayoutError,
    LayoutSplit,
    LayoutWriter,
    fix_sentence,
    resolve_split_dir,
)
from locater.data.ref_davis import RefDAVIS, RefDAVISError
from locater.data.training import ReferringClipDataset, collate_clips
from locater.data.ytvos import SubmissionError, SubmissionWriter, YTVOSError, YTVOSSplit

__all__ = [
    "AugmentConfig",
    "DataError",
    "ExpressionSample",
    "LayoutError",
    "LayoutSplit",
    "LayoutWriter",
    "RefDAVIS",
    "RefDAVISError",
    "ReferringClipDataset",
    "SubmissionError",
    "SubmissionWriter",
    "YTVOSError",
    "YTVOSSplit",
    "augment_clip",
    "collate_clips",
    "fix_sentence",
    "global_frame_numbers",
    "random_global_frame_numbers",
    "read_rgb",
    "resolve_split_dir",
    "swap_left_right",
]
