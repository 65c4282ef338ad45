"""featherpose: fast 2D human pose estimation on ordinary CPUs.

    import featherpose
    est = featherpose.load("movenet-lightning")
    poses = est("photo.jpg")          # Poses: keypoints (N, K, 3) x, y, score in image pixels
    featherpose.models()              # bundled model names
"""
from .estimator import Estimator
from .image import load_image
from .poses import Poses
from .skeletons import SKELETONS, Skeleton
from .zoo import ModelInfo, UnknownModelError, load, model_info, models

__version__ = "0.1.0"
__all__ = ["Estimator", "ModelInfo", "Poses", "SKELETONS", "Skeleton", "UnknownModelError", "load",
           "load_image", "model_info", "models", "__version__"]
