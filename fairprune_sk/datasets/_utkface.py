"""UTKFace-style image folders supplied by the user (never downloaded)."""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from numbers import Integral
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.utils import Bunch, check_random_state

from ._split import DataOptionError, DatasetDefaults, DatasetSplit, _stratified_split, _subsample

__all__ = ["load_utkface", "UTKFACE_GENDERS", "UTKFACE_RACES", "UTKFACE_AGE_BINS"]

UTKFACE_GENDERS = ["Male", "Female"]
UTKFACE_RACES = ["White", "Black", "Asian", "Indian", "Others"]
UTKFACE_AGE_BINS = ["0-19", "20-39", "40-59", "60+"]
_AGE_EDGES = [20, 40, 60]
_TARGETS = ("gender", "race", "age_bin")
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
# age_gender_race_datetime.jpg, also the aligned-and-cropped "...jpg.chip.jpg" variant
_NAME_RE = re.compile(
    r"^(?P<age>\d{1,3})_(?P<gender>[01])_(?P<race>[0-4])_(?P<datetime>\d+)"
    r"(?:\.jpe?g\.chip)?\.(?:jpe?g|png)$",
    re.IGNORECASE,
)

_DESCR = """\
UTKFace-style face images read from a local folder. File names follow the UTKFace
convention age_gender_race_datetime.jpg: age in years, gender 0 = Male / 1 = Female,
race 0 = White, 1 = Black, 2 = Asian, 3 = Indian, 4 = Others (labels as given by the data
set's authors). UTKFace (Zhang, Song & Qi, 2017) is available for non-commercial research only;
it is not shipped with this package.
"""


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, Integral) and not isinstance(size, bool):
        size = (size, size)
    try:
        size = tuple(size)
    except TypeError:
        size = ()
    if len(size) != 2 or not all(
        isinstance(s, Integral) and not isinstance(s, bool) and s > 0 for s in size
    ):
        raise ValueError(
            f"size must be an int or a pair (height, width) of positive ints, got {size!r}."
        )
    return int(size[0]), int(size[1])


def load_utkface(
    folder: str | os.PathLike,
    *,
    size: int | Sequence[int] = (32, 32),
    grayscale: bool = False,
    target: str = "gender",
    max_images: int | None = None,
    random_state: int | np.random.RandomState | None = 0,
) -> Bunch:
    """Load face images named in the UTKFace convention from a local folder.

    Every image file below ``folder`` (searched recursively) whose name is
    ``age_gender_race_datetime.jpg`` (or ``....jpg.chip.jpg``, the aligned-and-cropped
    variant) is read with Pillow, converted to RGB (or grayscale) and resized. Image files
    with malformed names, and files Pillow cannot read, are skipped with one warning each
    kind, counting them.

    Parameters
    ----------
    folder : str or path-like
        Folder holding the images.
    size : int or (height, width), default=(32, 32)
        Size the images are resized to.
    grayscale : bool, default=False
        One channel instead of three.
    target : {"gender", "race", "age_bin"}, default="gender"
        What ``y`` holds: gender (0 Male, 1 Female), race (0 White, 1 Black, 2 Asian,
        3 Indian, 4 Others) or age bin (0: 0-19, 1: 20-39, 2: 40-59, 3: 60+).
    max_images : int, default=None
        Read at most this many images, a random subset drawn with ``random_state``
        (reading every image of the full data set takes a while).
    random_state : int, RandomState instance or None, default=0
        Seed of the ``max_images`` subset.

    Returns
    -------
    data : sklearn.utils.Bunch
        With keys:

        - ``X`` : float32 ndarray of shape (n, C, height, width) in [0, 1], C = 1 or 3.
        - ``y`` : int64 ndarray of shape (n,), the ``target``.
        - ``target_names`` : list of str, the labels of ``y``'s values.
        - ``attributes`` : DataFrame with columns ``age`` (int), ``age_bin``, ``gender``,
          ``race`` (readable labels, categorical) and ``file`` (path relative to
          ``folder``), one row per image, aligned with ``X``.
        - ``DESCR`` : str.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist.
    NotADirectoryError
        If ``folder`` is not a directory.
    ValueError
        For invalid arguments, or when the folder holds no image with a valid UTKFace name.

    Examples
    --------
    Two generated images named ``age_gender_race_datetime.jpg``, as UTKFace names them:

    >>> import tempfile
    >>> from pathlib import Path
    >>> from PIL import Image
    >>> from fairprune_sk.datasets import load_utkface
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ["25_0_2_20170116174525125.jpg", "61_1_0_20170109150557335.jpg"]:
    ...     Image.new("RGB", (48, 48)).save(folder / name)
    >>> data = load_utkface(folder, size=16, target="race")
    >>> data.X.shape, data.y.tolist()
    ((2, 3, 16, 16), [2, 0])
    >>> data.attributes[["age", "age_bin", "gender", "race"]].astype(str).values.tolist()
    [['25', '20-39', 'Male', 'Asian'], ['61', '60+', 'Female', 'White']]
    >>> import shutil
    >>> shutil.rmtree(folder)
    """
    from PIL import Image, UnidentifiedImageError

    root = Path(folder)
    if not root.exists():
        raise FileNotFoundError(
            f"folder {str(root)!r} does not exist; expected a folder of UTKFace images named "
            "age_gender_race_datetime.jpg."
        )
    if not root.is_dir():
        raise NotADirectoryError(f"folder {str(root)!r} is not a directory.")
    height, width = _check_size(size)
    if target not in _TARGETS:
        raise ValueError(f"target must be one of {list(_TARGETS)}, got {target!r}.")
    if max_images is not None and (
        isinstance(max_images, bool) or not isinstance(max_images, Integral) or max_images < 1
    ):
        raise ValueError(f"max_images must be a positive integer or None, got {max_images!r}.")

    records, malformed = [], 0
    for file in sorted(p for p in root.rglob("*") if p.is_file()):
        if file.suffix.lower() not in _IMAGE_SUFFIXES:
            continue
        match = _NAME_RE.match(file.name)
        if match is None:
            malformed += 1
            continue
        records.append((file, int(match["age"]), int(match["gender"]), int(match["race"])))
    if malformed:
        warnings.warn(
            f"Skipped {malformed} image file(s) in {str(root)!r} whose names do not follow "
            "age_gender_race_datetime.jpg (gender 0/1, race 0-4).",
            UserWarning,
            stacklevel=2,
        )
    if not records:
        raise ValueError(
            f"No UTKFace image found in {str(root)!r}: expected image files named "
            "age_gender_race_datetime.jpg (e.g. 25_1_2_20170116174525125.jpg)."
        )
    if max_images is not None and max_images < len(records):
        rng = check_random_state(random_state)
        chosen = np.sort(rng.choice(len(records), size=max_images, replace=False))
        records = [records[i] for i in chosen]

    mode = "L" if grayscale else "RGB"
    images, kept, unreadable = [], [], 0
    for record in records:
        try:
            with Image.open(record[0]) as img:
                resized = img.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
                images.append(np.asarray(resized, dtype=np.uint8))
        except (UnidentifiedImageError, OSError):
            unreadable += 1
            continue
        kept.append(record)
    if unreadable:
        warnings.warn(
            f"Skipped {unreadable} file(s) in {str(root)!r} that Pillow could not read.",
            UserWarning,
            stacklevel=2,
        )
    if not kept:
        raise ValueError(f"No readable UTKFace image found in {str(root)!r}.")

    X = np.stack(images).astype(np.float32) / np.float32(255.0)
    X = X[:, None, :, :] if grayscale else X.transpose(0, 3, 1, 2)
    X = np.ascontiguousarray(X)
    age = np.array([r[1] for r in kept], dtype=np.int64)
    gender = np.array([r[2] for r in kept], dtype=np.int64)
    race = np.array([r[3] for r in kept], dtype=np.int64)
    age_bin = np.digitize(age, _AGE_EDGES).astype(np.int64)
    attributes = pd.DataFrame(
        {
            "age": age,
            "age_bin": pd.Categorical.from_codes(age_bin, UTKFACE_AGE_BINS, ordered=True),
            "gender": pd.Categorical.from_codes(gender, UTKFACE_GENDERS),
            "race": pd.Categorical.from_codes(race, UTKFACE_RACES),
            "file": [r[0].relative_to(root).as_posix() for r in kept],
        }
    )
    y, target_names = {
        "gender": (gender, UTKFACE_GENDERS),
        "race": (race, UTKFACE_RACES),
        "age_bin": (age_bin, UTKFACE_AGE_BINS),
    }[target]
    return Bunch(
        X=X,
        y=y,
        target_names=list(target_names),
        attributes=attributes,
        DESCR=_DESCR,
    )


#: UTKFace attributes usable as the label (``target``) and as groups (``sensitive``).
UTKFACE_ATTRIBUTES = ("race", "gender", "age_bin")
#: What ``data_path`` must be, for a missing, empty or unreadable UTKFace folder.
UTKFACE_FOLDER_HELP = (
    "must be a folder holding UTKFace face images (searched recursively) named "
    "[age]_[gender]_[race]_[date&time].jpg, e.g. 25_1_2_20170116174525125.jpg (gender 0/1, "
    "race 0-4; the aligned-and-cropped *.jpg.chip.jpg names work too); {problem}"
)


def _utkface_split(*, data_path: str | os.PathLike | None, target: str,
                   sensitive: Sequence[str], images: bool, image_size: int,
                   n_train: int | None, random_state: int, defaults: DatasetDefaults,
                   test_size: float = 0.25) -> DatasetSplit:
    """A train/test split of the user's UTKFace images, groups by UTKFace attributes.

    The images are read with :func:`load_utkface` (RGB, resized to ``image_size``), then split
    at random (``test_size``), stratified by label × group where every combination has at
    least two images, else by label, else not at all. ``y`` holds int labels (``race``: 0
    White, 1 Black, 2 Asian, 3 Indian, 4 Others; ``gender``: 0 Male, 1 Female; ``age_bin``:
    0-19, 20-39, 40-59, 60+), the groups the readable labels; ``X`` is flat unless ``images``.
    """
    def folder_error(problem: str) -> DataOptionError:
        return DataOptionError("data_path", UTKFACE_FOLDER_HELP.format(problem=problem))

    if data_path is None:
        raise folder_error("none was given")
    root = Path(data_path)
    if not root.is_dir():
        raise folder_error(f"{str(root)!r}: "
                           f"{'it does not exist' if not root.exists() else 'it is not a folder'}")
    try:
        data = load_utkface(root, size=image_size, target=target)
    except ValueError as exc:  # the arguments are checked: no (readable) image
        raise folder_error(f"{str(root)!r} holds none that can be read ({exc})") from None
    y = np.asarray(data.y)
    groups = data.attributes[list(sensitive)].astype(str).reset_index(drop=True)
    if len(y) < 4:
        raise folder_error(f"{str(root)!r} holds {len(y)} image(s); a train/test split needs "
                           "at least 4")
    train, test, stratified = _stratified_split(y, groups, test_size, random_state)
    notes = [f"UTKFace: {len(y)} images from {root}, resized to {image_size}x{image_size}; "
             f"label {target}, groups by {' & '.join(sensitive)}; random "
             f"{1 - test_size:.0%}/{test_size:.0%} train/test split (stratified by "
             f"{stratified}, seed {random_state})"]
    if target in sensitive:
        notes.append(f"the label {target} is also the group (as in the paper's Fig. 1 and 5): "
                     "a group's accuracy is that class's recall")
    if n_train is not None and n_train < len(train):
        train = _subsample(train, y, n_train, random_state)
        notes.append(f"subsampled the UTKFace training set to {n_train} images "
                     f"(seed {random_state})")
    X = data.X if images else data.X.reshape(len(data.X), -1)
    return DatasetSplit(
        "utkface", X[train], y[train], groups.iloc[train].reset_index(drop=True),
        X[test], y[test], groups.iloc[test].reset_index(drop=True), defaults=defaults,
        notes=tuple(notes),
    )
