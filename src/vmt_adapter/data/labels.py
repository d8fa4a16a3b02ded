"""Class-name lists that datasets declare in their ``CLASS_NAMES`` (legends of ``vmt predict``); ids are list
positions."""

from __future__ import annotations

from ..tasks import TaskSpec
from .registry import dataset_class

# PASCAL VOC 2012 (the 21-class semseg of the PASCAL-Context multi-task benchmark; person is 15).
VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "dining table", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa", "train",
               "tv monitor"]
# NYUD-v2's 40 classes (Gupta et al., CVPR 2013), file ids 1..40 read as 0..39.
NYUD_CLASSES = ["wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "bookshelf", "picture",
                "counter", "blinds", "desk", "shelves", "curtain", "dresser", "pillow", "mirror", "floor mat",
                "clothes", "ceiling", "books", "refrigerator", "television", "paper", "towel", "shower curtain",
                "box", "whiteboard", "person", "night stand", "toilet", "sink", "lamp", "bathtub", "bag",
                "other structure", "other furniture", "other prop"]
# The 6 PASCAL-Part person parts of ``data.pascal.HUMAN_PARTS_6``, 0 = not a person part.
HUMAN_PARTS = ["background", "head", "torso", "upper arm", "lower arm", "upper leg", "lower leg"]

def class_names(dataset: str, spec: TaskSpec) -> list[str]:
    """The names of ``spec``'s classes on ``dataset``; numbered ones when unknown or of another count."""
    names = dataset_class(dataset).CLASS_NAMES.get(spec.name, [])
    return list(names) if len(names) == spec.channels else [f"class {i}" for i in range(spec.channels)]
