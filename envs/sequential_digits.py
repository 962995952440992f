"""Sequential digit classification: scikit-learn's 8×8 digits read row by row or pixel by pixel.

A small, download-free version of sequential MNIST (Le, Jaitly & Hinton 2015).
Le QV, Jaitly N, Hinton GE (2015). A simple way to initialize recurrent
networks of rectified linear units. arXiv:1504.00941.
The images: the UCI "Optical Recognition of Handwritten Digits" set (Alpaydin &
Kaynak 1998), 1797 images of 8×8 pixels with values 0-16, as bundled with
scikit-learn (``sklearn.datasets.load_digits``).
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
from neurogym.utils import spaces

from .classic import SequenceTask
from .options import check_integer

__all__ = ["MODES", "SPLITS", "SequentialDigits", "digit_images", "split_indices"]

MODES = ("rows", "pixels")
SPLITS = ("train", "test")
SPLIT_SEED = 0
N_TEST = 359  # 20 % of the 1797 images, rounded


@functools.cache
def digit_images() -> tuple[np.ndarray, np.ndarray]:
    """(image, 8, 8) float32 pixels scaled to [0, 1], and (image,) int64 digit labels 0-9 (read-only)."""
    from sklearn.datasets import load_digits  # imported here: scikit-learn is slow to import

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    labels = digits.target.astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


@functools.cache
def split_indices(split: str) -> np.ndarray:
    """Sorted indices (into :func:`digit_images`) of the images in ``split``.

    The partition is fixed: a permutation of the 1797 images drawn with
    ``np.random.RandomState(0)``; its last 359 images (20 %) are ``"test"``,
    the other 1438 ``"train"``.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    order = np.random.RandomState(SPLIT_SEED).permutation(len(digit_images()[1]))
    indices = np.sort(order[-N_TEST:] if split == "test" else order[:-N_TEST])
    indices.setflags(write=False)
    return indices


class SequentialDigits(SequenceTask):
    """Classify a handwritten digit shown one row (or one pixel) per step.

    Epochs: ``stimulus`` (the image: 8 steps in ``mode="rows"``, 64 in
    ``mode="pixels"``, top row first, each row left to right) → ``decision``
    (``decision_steps`` steps).

    Inputs: ``pixel_0`` … ``pixel_7`` (the 8 pixels of the current row,
    columns left to right) in ``"rows"`` mode, or ``pixel`` (the current
    pixel) in ``"pixels"`` mode, scaled from 0-16 to [0, 1]; then ``go``, 1
    during the decision epoch, 0 before.

    Outputs and targets (``target_kind = "class"``, 11 classes): class 0
    ``blank`` (no answer yet) during the image; digit d is class d + 1
    (``digit_0`` … ``digit_9``) during the decision epoch. Scoring
    ``"choice"``: the trial's choice is the majority vote of the argmax over
    the decision epoch; chance is 10 %.

    Each trial shows an image drawn uniformly (with replacement) from
    ``split``: a fixed partition of the 1797 images into 1438 ``"train"`` and
    359 ``"test"`` images (:func:`split_indices`), so held-out evaluation uses
    digits never trained on.

    Args:
        dt: time step in ms (a whole number; it only labels the time axis).
        mode: ``"rows"`` (8 steps × 8 inputs) or ``"pixels"`` (64 steps × 1).
        split: ``"train"`` or ``"test"``.
        decision_steps: steps of the decision epoch, >= 1.

    Trial conditions (keys of the dict returned by ``new_trial``):
    ``image_index`` (into :func:`digit_images`), ``digit`` (0-9, the
    scikit-learn label), ``ground_truth`` (its class, ``digit + 1``). Pin one
    with ``new_trial(image_index=i)`` (i must be in this split) or
    ``new_trial(digit=d)`` (a random image of d from this split).
    """

    metadata = {  # noqa: RUF012
        "paper_link": "https://arxiv.org/abs/1504.00941",
        "paper_name": "A simple way to initialize recurrent networks of rectified linear units",
        "tags": ["perceptual", "n-alternative", "supervised"],
        "render_modes": [],
    }
    epoch_names = ("stimulus", "decision")
    canonical_epochs = {"stimulus": "stimulus", "decision": "decision"}  # noqa: RUF012
    condition_names = ("image_index", "digit", "ground_truth")
    target_kind = "class"
    scoring = "choice"

    def __init__(self, dt: int = 10, mode: str = "rows", split: str = "train", decision_steps: int = 3) -> None:
        super().__init__(dt=dt)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.mode = mode
        self.split = split
        self.image_indices = split_indices(split)
        self.decision_steps = check_integer("decision_steps", decision_steps, 1)
        width = 8 if mode == "rows" else 1
        self._set_steps(stimulus=64 // width, decision=self.decision_steps)
        self.observation_space = spaces.Box(
            0.0, 1.0, shape=(width + 1,), dtype=np.float32, name={"pixels": list(range(width)), "go": width}
        )
        self.action_space = spaces.Discrete(11, name={"blank": 0, "digits": list(range(1, 11))})
        pixels = tuple(f"pixel_{c}" for c in range(8)) if mode == "rows" else ("pixel",)
        self.input_names = (*pixels, "go")
        self.output_names = ("blank", *(f"digit_{d}" for d in range(10)))

    def _new_trial(self, **kwargs):
        images, labels = digit_images()
        unknown = set(kwargs) - {"image_index", "digit"}
        if unknown or len(kwargs) > 1:
            raise ValueError(f"pin at most one of ['image_index', 'digit'], got {sorted(kwargs)}")
        if "image_index" in kwargs:
            index = kwargs["image_index"]
            if isinstance(index, bool) or not isinstance(index, numbers.Integral) or index not in self.image_indices:
                raise ValueError(f"image_index {index!r} is not an image of split {self.split!r}")
        elif "digit" in kwargs:
            digit = kwargs["digit"]
            if isinstance(digit, bool) or not isinstance(digit, numbers.Integral) or not 0 <= digit <= 9:
                raise ValueError(f"digit must be an integer in 0..9, got {digit!r}")
            candidates = self.image_indices[labels[self.image_indices] == digit]
            index = candidates[self.rng.randint(len(candidates))]
        else:
            index = self.image_indices[self.rng.randint(len(self.image_indices))]
        index = int(index)
        trial = {"image_index": index, "digit": int(labels[index]), "ground_truth": int(labels[index]) + 1}

        self.add_period(list(self.epoch_names))
        width = len(self.input_names) - 1
        image = images[index].reshape(64 // width, width)  # one row of the input per step
        self.add_ob(image, period="stimulus", where="pixels")
        self.add_ob(1.0, period="decision", where="go")
        self.set_groundtruth(trial["ground_truth"], period="decision")
        return trial
