"""Single-person video the way Google runs MoveNet: each frame's crop comes from the previous frame's keypoints.

A single-pose MoveNet sees the whole frame squeezed into 192x192 (Lightning) or 256x256 (Thunder); a person
filling a fifth of a 1920x1080 frame then spans a few dozen network pixels. Google's MoveNet tutorial
("Pose estimation with MoveNet", https://www.tensorflow.org/hub/tutorials/movenet, section "Cropping
Algorithm" of the video part: "intelligent cropping based on detections from the previous frame") runs each
frame on a square region around where the person was, so the model spends its input on the person. The rules,
as the tutorial describes them (no code of it is used here):

- the first frame, and any frame after the person was lost, use the whole-frame square: side = the frame's
  longer side, centred (the frame letterboxed into the square input);
- the torso is visible when a hip and a shoulder (either side) score above ``MIN_CROP_KEYPOINT_SCORE`` = 0.2;
- if so, the next region is a square centred on the mid-point of the hips whose half side is the largest of
  1.9 x the largest x or y distance of the four torso joints (shoulders, hips) from that centre and
  1.2 x the largest x or y distance of every joint scoring at least the threshold, capped by the largest
  distance from the centre to an image border;
- if that half side is over half the frame's longer side, or the torso is not visible, the next frame uses
  the whole-frame square again. (Added here: keypoints that are not finite, or a square under 8 px, collapsed
  keypoints, fall back too.)

The region may reach past the image: outside is black padding (as the letterbox pads), through
:func:`featherpose.image.crop_square`. Keypoints come back in crop pixels and move to image pixels by the crop's
corner, as :meth:`featherpose.topdown.TopDown.on_boxes` does.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..estimator import DEFAULT_MIN_SCORE, Estimator, check_min_score
from ..image import crop_square, load_image
from ..poses import Poses
from ..skeletons import Skeleton

f32 = np.float32

#: A hip and a shoulder must score above this for the torso to count as visible; body joints scoring at
#: least this set the body's extent (the tutorial's MIN_CROP_KEYPOINT_SCORE).
MIN_CROP_KEYPOINT_SCORE = 0.2
#: The region's half side is at least this times the torso joints' largest x / y distance from the mid-hips.
TORSO_EXPAND = 1.9
#: ... and at least this times the largest x / y distance of the body joints scoring at least the threshold.
BODY_EXPAND = 1.2
#: A region whose half side is under this many pixels (collapsed keypoints) falls back to the whole frame.
MIN_HALF_SIDE = 4.0

SHOULDERS = ("left_shoulder", "right_shoulder")
HIPS = ("left_hip", "right_hip")


@dataclass(frozen=True)
class CropRegion:
    """A square region of a frame, in that frame's pixels (it may reach past the image borders).

    Attributes:
        x, y: its top-left corner.
        side: its side length.
        whole: True for the whole-frame square (first frame, or the person lost): the frame is letterboxed
            into the network input as a single image would be.
    """

    x: float
    y: float
    side: float
    whole: bool = False

    @property
    def xyxy(self) -> np.ndarray:
        """(4,) x1, y1, x2, y2 (for drawing)."""
        return np.array([self.x, self.y, self.x + self.side, self.y + self.side], f32)

    @property
    def centre(self) -> np.ndarray:
        """(2,) x, y of its centre."""
        return np.array([self.x + self.side / 2, self.y + self.side / 2], f32)


def whole_frame_region(image_hw: tuple[int, int]) -> CropRegion:
    """The square of side max(H, W) centred on the frame: what the first frame and a lost person use."""
    h, w = image_hw
    side = float(max(h, w))
    return CropRegion((w - side) / 2, (h - side) / 2, side, whole=True)


def torso_indices(skeleton: Skeleton) -> np.ndarray:
    """(4,) indices of left/right shoulder, left/right hip in ``skeleton``.

    Raises:
        ValueError: the skeleton lacks one of them (cropping needs the torso).
    """
    missing = [n for n in SHOULDERS + HIPS if n not in skeleton.keypoints]
    if missing:
        raise ValueError(f"crop tracking needs shoulders and hips; skeleton {skeleton.name} lacks "
                         f"{', '.join(missing)} (run without cropping)")
    return np.array([skeleton.index(n) for n in SHOULDERS + HIPS])


def crop_region(keypoints: np.ndarray, image_hw: tuple[int, int], skeleton: Skeleton,
                min_score: float = MIN_CROP_KEYPOINT_SCORE) -> CropRegion:
    """The region for the next frame from one person's keypoints on this one (the tutorial's rule, see the module
    docstring).

    Args:
        keypoints: (K, 3) x, y, score in image pixels.
        image_hw: (H, W) of the frame.
        skeleton: names the shoulders and hips.
        min_score: the visibility threshold (``MIN_CROP_KEYPOINT_SCORE``).

    Returns:
        A square :class:`CropRegion` around the person, or :func:`whole_frame_region` when the torso is not
        visible, the square would exceed half the longer side, or the keypoints are not finite.
    """
    kp = np.asarray(keypoints, np.float64)
    h, w = image_hw
    ls, rs, lh, rh = torso_indices(skeleton)
    score, min_score = kp[:, 2].astype(f32), f32(min_score)  # compared as the model's float32 scores
    torso_visible = max(score[lh], score[rh]) > min_score and max(score[ls], score[rs]) > min_score
    if not torso_visible or not np.isfinite(kp).all():
        return whole_frame_region(image_hw)
    centre = (kp[lh, :2] + kp[rh, :2]) / 2  # x, y of the mid-hips
    torso = np.abs(kp[[ls, rs, lh, rh], :2] - centre).max()  # the largest x or y distance of the 4 torso joints
    body = kp[score >= min_score, :2]
    body_range = np.abs(body - centre).max() if len(body) else 0.0
    half = max(TORSO_EXPAND * torso, BODY_EXPAND * body_range)
    half = min(half, max(centre[0], w - centre[0], centre[1], h - centre[1]))  # capped by the farthest border
    if half > max(h, w) / 2 or half < MIN_HALF_SIDE:
        return whole_frame_region(image_hw)
    return CropRegion(float(centre[0] - half), float(centre[1] - half), float(2 * half))


class SinglePoseCropper:
    """A single-person estimator run on video frames the way Google runs MoveNet: each frame on the square the
    previous frame's keypoints give (:func:`crop_region`), the whole frame when the person is lost.

    ``cropper(frame)`` is called like the estimator (same arguments, :class:`Poses` in the frame's pixels) but
    keeps state between calls: feed it the frames of one video in order, and :meth:`reset` before another (a
    frame of another size resets it by itself). :attr:`region` is the square this frame used and
    :attr:`next_region` the one the next will use (for drawing and debugging). Other attributes (``name``,
    ``backend``, ``skeleton``...) are the estimator's.

    Args:
        estimator: a single-person, not top-down :class:`~featherpose.estimator.Estimator` whose skeleton has
            shoulders and hips (the MoveNet single-pose models).
        min_crop_score: the visibility threshold of :func:`crop_region`.

    Raises:
        ValueError: the estimator is multi-person or top-down, or its skeleton lacks the torso joints.
    """

    def __init__(self, estimator: Estimator, min_crop_score: float = MIN_CROP_KEYPOINT_SCORE):
        if not self.supports(estimator):
            torso_indices(estimator.skeleton)  # the skeleton's own message, when that is the reason
            raise ValueError(f"crop tracking is for single-person models; {estimator.name} is "
                             f"{'top-down' if estimator.top_down else 'multi-person'} (run without cropping)")
        self.estimator = estimator
        self.min_crop_score = check_min_score(min_crop_score)
        self.region: CropRegion | None = None
        self.next_region: CropRegion | None = None
        self._hw: tuple[int, int] | None = None  # the frame size the regions belong to

    @staticmethod
    def supports(estimator) -> bool:
        """Whether ``estimator`` can be cropped: single-person, not top-down, a skeleton with shoulders and hips."""
        skeleton = getattr(estimator, "skeleton", None)
        return (not getattr(estimator, "multi_person", True) and not getattr(estimator, "top_down", True)
                and skeleton is not None and all(n in skeleton.keypoints for n in SHOULDERS + HIPS))

    def __getattr__(self, name: str):
        """The wrapped estimator's attributes (``name``, ``backend``, ``skeleton``, ``keypoint_threshold``...)."""
        if name == "estimator":  # not set yet (a failed __init__): no recursion
            raise AttributeError(name)
        return getattr(self.estimator, name)

    def __repr__(self) -> str:
        return f"SinglePoseCropper({self.estimator!r})"

    def reset(self) -> None:
        """Forget the person: the next frame starts from the whole frame."""
        self.region = self.next_region = self._hw = None

    def __call__(self, image: str | Path | np.ndarray, min_score: float = DEFAULT_MIN_SCORE, *,
                 name: str | None = None) -> Poses:
        """The person in this frame, run on the region the previous frame chose, in the frame's pixels;
        ``min_score`` filters the returned Poses only (the region always follows the raw output)."""
        min_score = check_min_score(min_score)
        frame = load_image(image)
        hw = frame.shape[:2]
        region = self.next_region
        if region is None or hw != self._hw:  # the first frame, or another video / camera size
            region = whole_frame_region(hw)
        self._hw = hw
        est = self.estimator
        if region.whole:
            poses = est(frame, min_score=0)
        else:
            crop, corner = crop_square(frame, (region.x, region.y, region.side, region.side), expand=1.0)
            x, letterbox = est.preprocess(crop)
            found = est.postprocess(est.infer(x), letterbox)
            kpts = found.keypoints.copy()
            missing = (kpts == 0).all(axis=-1, keepdims=True)  # a codec's missing keypoint stays (0, 0, 0)
            kpts[..., :2] = np.where(missing, kpts[..., :2], kpts[..., :2] + corner)
            poses = Poses.create(kpts, found.scores, None, hw, found.skeleton)
        self.region = region
        self.next_region = crop_region(poses.keypoints[0], hw, poses.skeleton, self.min_crop_score) \
            if len(poses) else whole_frame_region(hw)
        return poses.filter(min_score) if min_score > 0 else poses
