"""featherpose: fast 2D human pose estimation on ordinary CPUs.

    import featherpose
    est = featherpose.load("movenet-lightning")
    poses = est("photo.jpg")          # Poses: keypoints (N, K, 3) x, y, score in image pixels
    raw = est("photo.jpg", min_score=0)   # every person the model outputs (default: score >= 0.2, as the CLI)
    featherpose.models()              # bundled model names
    for poses in featherpose.track("walk.mp4"):   # a video: people with ids that persist, smoothed keypoints
        print(poses.track_ids)
"""
import gc

# Importing torch (through .estimator) makes a few hundred thousand long-lived objects (modules, classes, functions).
# The cyclic collector's passes over them, while they are made and in every full collection after (loading a model
# runs several), took 0.8-1.6 s of a `featherpose predict` start (benchmarks/RESULTS.md, "Start-up ... the
# collector"). So the collector is off while featherpose imports; then one collection frees what is garbage already
# (the caller's included) and what survives is frozen (gc.freeze: left out of later collections, so a cycle among
# those objects that becomes garbage later is not freed).
_collecting = gc.isenabled()
gc.disable()
try:
    from .estimator import DEFAULT_MIN_SCORE, Estimator, NonFiniteOutputError
    from .image import ImageError, load_image
    from .poses import Poses
    from .skeletons import SKELETONS, Skeleton
    from .zoo import ModelInfo, UnknownModelError, load, model_info, models
finally:
    gc.collect()
    gc.freeze()
    if _collecting:
        gc.enable()

__version__ = "0.1.0"
__all__ = ["DEFAULT_MIN_SCORE", "Estimator", "ImageError", "ModelInfo", "NonFiniteOutputError", "Poses", "SKELETONS", "Skeleton", "UnknownModelError", "load",
           "load_image", "model_info", "models", "track", "__version__"]


def __getattr__(name: str):
    """``featherpose.track`` (predict.track) is imported on first use: ``import featherpose`` stays light."""
    if name == "track":
        from .predict import track
        return track
    raise AttributeError(f"module 'featherpose' has no attribute {name!r}")
