"""Frame schedules (jaxkin.frames): the paper's schedule, seconds to minutes, and the one frame check with its one
tolerance, shared by FrameSchedule and the readers of PET sidecars and TAC tables."""

import numpy as np
import pytest

from _pet_files import random_pet_data, sidecar, write_raw_pet
from jaxkin import FrameSchedule, InputError
from jaxkin.frames import FRAME_OVERLAP_TOLERANCE, FrameProblem, frame_problem
from jaxkin.io.pet import load_pet
from jaxkin.io.tables import read_tacs


def test_quadra_schedule_matches_the_paper():
    frames = FrameSchedule.quadra()
    assert frames.n_frames == 62
    counts = {}
    for d in frames.duration_seconds:
        counts[round(d)] = counts.get(round(d), 0) + 1
    assert counts == {10: 6, 2: 30, 30: 8, 60: 4, 120: 5, 300: 9}
    np.testing.assert_allclose(frames.end[-1], 65.0)
    np.testing.assert_allclose(frames.start[1:], frames.end[:-1])  # back to back
    np.testing.assert_allclose(frames.duration[:2] * 60, [10, 10])
    np.testing.assert_allclose(frames.mid, frames.start + frames.duration / 2)


def test_frames_from_seconds_convert_to_minutes():
    frames = FrameSchedule.from_seconds([0, 30, 90], [30, 60, 120])
    np.testing.assert_allclose(frames.start, [0, 0.5, 1.5])
    np.testing.assert_allclose(frames.duration, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(frames.start_seconds, [0, 30, 90])
    assert frames == FrameSchedule.from_minutes([0, 0.5, 1.5], [0.5, 1, 2])


@pytest.mark.parametrize(
    "start, duration, message",
    [
        ([0, 1, 2], [1, 1], "differ in length"),
        ([0, 2, 1], [1, 1, 1], "strictly increasing"),
        ([0, 1, 1], [1, 1, 1], "strictly increasing"),
        ([0, 1, 2], [1, 0, 1], "durations must be positive; frame 1"),
        ([0, 1, 2], [1, -1, 1], "durations must be positive"),
        ([0, 1, 2], [1, 1.5, 1], "frames overlap: frame 2"),
        ([0, np.nan], [1, 1], "finite"),
        ([], [], "at least one frame"),
    ],
)
def test_bad_frames_raise(start, duration, message):
    with pytest.raises(ValueError, match=message):
        FrameSchedule.from_minutes(start, duration)


def test_one_frame_check_with_one_tolerance(tmp_path):
    """1 ms of overlap (rounding in files) passes everywhere; 2 ms is refused everywhere, each in its own words."""
    ms = 1e-3 / 60.0
    assert FRAME_OVERLAP_TOLERANCE == pytest.approx(ms)
    assert frame_problem([0, 1 - 0.9 * ms], [1, 1]) is None
    assert frame_problem([0, 1 - 2 * ms], [1, 1]) == FrameProblem("overlap", 1)
    assert frame_problem([0, 1], [1, 0]) == FrameProblem("duration", 1)
    assert frame_problem([0, 0], [1, 1]) == FrameProblem("order", 1)
    FrameSchedule.from_seconds([0, 9.9991], [10, 10])
    with pytest.raises(ValueError, match="frames overlap: frame 1"):
        FrameSchedule.from_seconds([0, 9.998], [10, 10])
    data = random_pet_data()[..., :2]
    for start, ok in (([0, 9.9991], True), ([0, 9.998], False)):
        pet_path = write_raw_pet(tmp_path, data, sidecar(FrameTimesStart=start, FrameDuration=[10, 10]))
        table = tmp_path / "t.tsv"
        table.write_text(f"start[s]\tend[s]\tliver[kBq/mL]\n{start[0]}\t10\t1\n{start[1]}\t20\t2\n")
        if ok:
            assert load_pet(pet_path).frames.n_frames == read_tacs(table).frames.n_frames == 2
            continue
        with pytest.raises(InputError, match=r"sub-01_pet\.json: frames overlap \('FrameTimesStart' \+ 'FrameDuration'\)"):
            load_pet(pet_path)
        with pytest.raises(InputError, match=r"t\.tsv: frames overlap: frame 1 \(line 3\)"):
            read_tacs(table)
