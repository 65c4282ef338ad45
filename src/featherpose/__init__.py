"""featherpose: fast 2D human pose estimation on ordinary CPUs.

    import featherpose
    est = featherpose.load("movenet-lightning")
    poses = est("photo.jpg")          # Poses: keypoints (N, K, 3) x, y, score in image pixels
    raw = est("photo.jpg", min_score=0)   # every person the model outputs (default: score >= 0.2, as the CLI)
    featherpose.models()              # bundled model names
    for poses in featherpose.track("walk.mp4"):   # a video: people with ids that persist, smoothed keypoints
        print(poses.track_ids)
"""
from . import collector as _collector

# what the imports make is frozen (collector.py); torch is not among them: it is imported where a network is built
with _collector.paused():
    # the subpackage first: loading it later would bind it over the function featherpose.models (below)
    from . import models as _models_package  # noqa: F401
    from .estimator import DEFAULT_MIN_SCORE, Estimator, NonFiniteOutputError
    from .image import ImageError, load_image
    from .poses import Poses
    from .skeletons import SKELETONS, Skeleton
    from .zoo import ModelInfo, UnknownModelError, load, model_info, models

__version__ = "0.1.0"
__all__ = ["DEFAULT_MIN_SCORE", "Estimator", "ImageError", "ModelInfo", "NonFiniteOutputError", "Poses", "SKELETONS", "Skeleton", "UnknownModelError", "load",
           "load_image", "model_info", "models", "track", "__version__"]


def __getattr__(name: str):
    """``featherpose.track`` (predict.track) is imported on first use: ``import featherpose`` stays light."""
    if name == "track":
        from .predict import track
        return track
    raise AttributeError(f"module 'featherpose' has no attribute {name!r}")
