"""COCO-format keypoint data and training augmentation."""
from .coco import CocoKeypoints, ImageRecord, Problem, Sample, ignore_mask
from .transforms import (ColorJitter, Compose, Geometry, RandomAffine, RandomFlip, ZoomSmallPeople, apply_affine,
                         build_transforms, letterbox_matrix, transform_boxes, transform_sample)

__all__ = ["CocoKeypoints", "ImageRecord", "Problem", "Sample", "ignore_mask", "ColorJitter", "Compose", "Geometry",
           "RandomAffine", "RandomFlip", "ZoomSmallPeople", "apply_affine", "build_transforms", "letterbox_matrix",
           "transform_boxes", "transform_sample"]
