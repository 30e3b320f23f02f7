"""Frame schedules of a dynamic PET acquisition.

Times are in **minutes** inside jaxkin. Files (BIDS sidecars) carry seconds; convert with
:meth:`FrameSchedule.from_seconds` at the boundary.
"""

from __future__ import annotations

import dataclasses

import numpy as np

__all__ = ["FrameSchedule", "FrameProblem", "frame_problem", "FRAME_OVERLAP_TOLERANCE", "QUADRA_FRAMES_SECONDS",
           "QUADRA_69_FRAMES_SECONDS", "FRAME_SCHEDULES"]

#: The 62-frame schedule of the paper (Biograph Vision Quadra, 65 min), as (count, duration in s).
QUADRA_FRAMES_SECONDS: tuple[tuple[int, float], ...] = (
    (2, 10.0),
    (30, 2.0),
    (4, 10.0),
    (8, 30.0),
    (4, 60.0),
    (5, 120.0),
    (9, 300.0),
)

#: The 69-frame, 70-minute Biograph Vision Quadra schedule of public whole-body FDG datasets (e.g. hedyPET), as
#: (count, duration in s): 20x2 s, 10x5 s, 15x10 s, 6x60 s, 10x120 s, 8x300 s.
QUADRA_69_FRAMES_SECONDS: tuple[tuple[int, float], ...] = (
    (20, 2.0),
    (10, 5.0),
    (15, 10.0),
    (6, 60.0),
    (10, 120.0),
    (8, 300.0),
)

#: Named schedules (``FrameSchedule.named``, the phantom's ``frames``): ``{name: (count, duration in s) groups}``.
FRAME_SCHEDULES: dict[str, tuple[tuple[int, float], ...]] = {
    "quadra62": QUADRA_FRAMES_SECONDS,
    "quadra69": QUADRA_69_FRAMES_SECONDS,
}


@dataclasses.dataclass(frozen=True, eq=False)
class FrameSchedule:
    """Start times and durations of the frames, in minutes.

    Frames are sorted by start time, have positive durations and do not overlap (gaps are allowed; see
    :func:`frame_problem`).
    The arrays are read-only float64 NumPy arrays of shape ``[F]``; build one with
    :meth:`from_seconds`, :meth:`from_minutes` or :meth:`quadra`.
    """

    start: np.ndarray
    duration: np.ndarray

    def __post_init__(self):
        start = np.array(self.start, dtype=np.float64).reshape(-1)
        duration = np.array(self.duration, dtype=np.float64).reshape(-1)
        _check_frames(start, duration)
        start.flags.writeable = False
        duration.flags.writeable = False
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "duration", duration)

    @classmethod
    def from_minutes(cls, start, duration) -> "FrameSchedule":
        """Frames from start times and durations in minutes."""
        return cls(start, duration)

    @classmethod
    def from_seconds(cls, start, duration) -> "FrameSchedule":
        """Frames from start times and durations in seconds (as in a BIDS ``*_pet.json``)."""
        return cls(np.asarray(start, dtype=np.float64) / 60.0, np.asarray(duration, dtype=np.float64) / 60.0)

    @classmethod
    def from_durations(cls, durations_s, start_s: float = 0.0) -> "FrameSchedule":
        """Back-to-back frames from durations in seconds, the first starting at ``start_s`` seconds."""
        durations_s = np.asarray(durations_s, dtype=np.float64).reshape(-1)
        starts = start_s + np.concatenate([[0.0], np.cumsum(durations_s)[:-1]])
        return cls.from_seconds(starts, durations_s)

    @classmethod
    def quadra(cls) -> "FrameSchedule":
        """The paper's 62-frame, 65-minute Biograph Vision Quadra schedule.

        2x10 s, 30x2 s, 4x10 s, 8x30 s, 4x60 s, 5x120 s, 9x300 s, starting at injection (t = 0).
        """
        return cls.named("quadra62")

    @classmethod
    def quadra_69(cls) -> "FrameSchedule":
        """The 69-frame, 70-minute Biograph Vision Quadra schedule of public whole-body datasets (hedyPET).

        20x2 s, 10x5 s, 15x10 s, 6x60 s, 10x120 s, 8x300 s, starting at injection (t = 0).
        """
        return cls.named("quadra69")

    @classmethod
    def named(cls, name: str) -> "FrameSchedule":
        """The back-to-back schedule ``name`` of :data:`FRAME_SCHEDULES` (``quadra62``, ``quadra69``), from t = 0;
        ValueError naming the choices for an unknown name."""
        if name not in FRAME_SCHEDULES:
            raise ValueError(f"unknown frame schedule {name!r}; choose one of {', '.join(FRAME_SCHEDULES)}")
        return cls.from_durations(np.concatenate([np.full(n, d) for n, d in FRAME_SCHEDULES[name]]))

    def first_difference(self, other: "FrameSchedule", tolerance_min: float = 1.0 / 60.0) -> int | None:
        """The index of the first frame whose start or duration differs from ``other``'s by more than
        ``tolerance_min`` (minutes; default 1 s), ``min(len)`` when only the counts differ, None when they agree."""
        n = min(self.n_frames, other.n_frames)
        off = (np.abs(self.start[:n] - other.start[:n]) > tolerance_min) | (
            np.abs(self.duration[:n] - other.duration[:n]) > tolerance_min)
        if off.any():
            return int(np.argmax(off))
        return None if self.n_frames == other.n_frames else n

    @property
    def n_frames(self) -> int:
        return int(self.start.shape[0])

    @property
    def end(self) -> np.ndarray:
        """Frame end times in minutes, ``[F]``."""
        return self.start + self.duration

    @property
    def mid(self) -> np.ndarray:
        """Frame mid times in minutes, ``[F]``."""
        return self.start + 0.5 * self.duration

    @property
    def start_seconds(self) -> np.ndarray:
        return self.start * 60.0

    @property
    def duration_seconds(self) -> np.ndarray:
        return self.duration * 60.0

    def __len__(self) -> int:
        return self.n_frames

    def __eq__(self, other) -> bool:
        return (
            isinstance(other, FrameSchedule)
            and self.start.shape == other.start.shape
            and bool(np.all(self.start == other.start) and np.all(self.duration == other.duration))
        )

    def __hash__(self) -> int:
        return hash((self.start.tobytes(), self.duration.tobytes()))

    def __repr__(self) -> str:
        return (
            f"FrameSchedule({self.n_frames} frames, {self.start[0]:.4g}-{self.end[-1]:.4g} min)"
            if self.n_frames
            else "FrameSchedule(0 frames)"
        )


#: Frames may overlap by this much (minutes; 1 ms): the rounding of frame times in files.
FRAME_OVERLAP_TOLERANCE = 1e-3 / 60.0


@dataclasses.dataclass(frozen=True)
class FrameProblem:
    """What is wrong with a frame schedule: ``kind`` is one of ``"length"`` (start times and durations differ in
    count), ``"empty"``, ``"not finite"``, ``"duration"`` (not positive), ``"order"`` (a start not after the one
    before) or ``"overlap"`` (a frame starts more than :data:`FRAME_OVERLAP_TOLERANCE` before the one before ends);
    ``frame`` is the index of the offending frame (0 for the kinds that concern the whole schedule)."""

    kind: str
    frame: int = 0


def frame_problem(start, duration) -> FrameProblem | None:
    """The first problem of the frames ``start [F]`` and ``duration [F]`` (minutes), or None when they are valid:
    sorted by start, positive durations, no overlap beyond :data:`FRAME_OVERLAP_TOLERANCE` (gaps are allowed).

    The one check of a frame schedule: :class:`FrameSchedule` raises ValueError on it, and the readers of files
    (PET sidecars, TAC tables) word it with their file's fields."""
    start = np.asarray(start, dtype=np.float64).reshape(-1)
    duration = np.asarray(duration, dtype=np.float64).reshape(-1)
    if start.shape != duration.shape:
        return FrameProblem("length")
    if start.shape[0] == 0:
        return FrameProblem("empty")
    if not (np.all(np.isfinite(start)) and np.all(np.isfinite(duration))):
        return FrameProblem("not finite")
    if np.any(duration <= 0):
        return FrameProblem("duration", int(np.argmax(duration <= 0)))
    if np.any(np.diff(start) <= 0):
        return FrameProblem("order", int(np.argmax(np.diff(start) <= 0)) + 1)
    overlap = start[1:] < (start + duration)[:-1] - FRAME_OVERLAP_TOLERANCE
    if np.any(overlap):
        return FrameProblem("overlap", int(np.argmax(overlap)) + 1)
    return None


def _check_frames(start: np.ndarray, duration: np.ndarray) -> None:
    """ValueError describing :func:`frame_problem`'s finding, if any."""
    problem = frame_problem(start, duration)
    if problem is None:
        return
    i = problem.frame
    if problem.kind == "length":
        message = f"frame start times ({start.shape[0]}) and durations ({duration.shape[0]}) differ in length"
    elif problem.kind == "empty":
        message = "a frame schedule needs at least one frame"
    elif problem.kind == "not finite":
        message = "frame start times and durations must be finite numbers"
    elif problem.kind == "duration":
        message = f"frame durations must be positive; frame {i} has duration {duration[i]:g}"
    elif problem.kind == "order":
        message = f"frame start times must be strictly increasing; frame {i} starts at or before frame {i - 1}"
    else:
        message = f"frames overlap: frame {i} starts before frame {i - 1} ends"
    raise ValueError(message)
