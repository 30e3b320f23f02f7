"""Every option of ``jaxkin fit`` in every mode (one scan, a BIDS dataset, a table of regional TACs): it reaches the
fit's request as given, or it is refused with one line and exit 2. The fit itself is replaced by a stand-in that
records the request (the fits are tested in tests/fitting and tests/cli/test_fit.py), so the table runs in seconds;
one regional fit runs for real to show that the bounds and fixed parameters reach the table and its sidecar."""

import json

import numpy as np
import pytest
from _pet_files import FRAMES, write_rows

import jaxkin
from jaxkin import cli, fitting, kinetics
from jaxkin.io.blood import write_blood
from jaxkin.io.pet import write_pet
from jaxkin.io.tables import RegionalTacs, write_tacs

SHAPE = (3, 2, 2)


class _Reached(Exception):
    """Raised by the stand-in fit with the request it was given."""

    def __init__(self, request):
        super().__init__("reached")
        self.request = request


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A scan (and a mask on its grid), its blood, a BIDS dataset of it, and a wide TAC table without units."""
    root = tmp_path_factory.mktemp("options")
    bids = root / "bids"
    pet_dir = bids / "sub-01" / "pet"
    pet_dir.mkdir(parents=True)
    (bids / "dataset_description.json").write_text(json.dumps({"Name": "t", "BIDSVersion": "1.9.0"}))
    inp = jaxkin.feng_input(FRAMES.end[-1] + 1.0, delay=0.1)
    data = np.random.default_rng(0).uniform(1.0, 5.0, SHAPE + (FRAMES.n_frames,))
    pet = write_pet(pet_dir / "sub-01_pet.nii.gz", data, FRAMES, np.eye(4), sidecar={"TracerRadionuclide": "F18"})
    blood = write_blood(pet_dir / "sub-01_recording-AIF_blood.tsv", whole_blood=inp)
    import nibabel as nib

    mask = root / "mask.nii.gz"
    nib.save(nib.Nifti1Image(np.ones(SHAPE, np.uint8), np.eye(4)), str(mask))
    rows = [(s, s + d, v) for s, d, v in zip(FRAMES.start_seconds, FRAMES.duration_seconds, data[0, 0, 0])]
    table = write_rows(root / "tacs.tsv", ["start", "end", "liver"], rows)
    sd_table = write_tacs(root / "sd_tacs.tsv", RegionalTacs(names=("liver",), frames=FRAMES,
                                                             values=data[0, 0, :1], sd=data[0, 0, :1] * 0.1,
                                                             voxels=np.array([4.0])))
    return {"pet": pet, "blood": blood, "bids": bids, "mask": mask, "table": table, "sd_table": sd_table,
            "out": root / "out"}


def _base(mode, f):
    if mode == "voxel":
        return ["--pet", str(f["pet"]), "--input-function", str(f["blood"]), "--out", str(f["out"])]
    if mode == "bids":
        return ["--bids", str(f["bids"]), "--out", str(f["out"])]
    return ["--tacs", str(f["table"]), "--tac-time-unit", "s", "--tac-units", "kBq/mL", "--input-function",
            str(f["blood"]), "--out", str(f["out"].with_suffix(".tsv"))]


def _options(request):
    return request.options if hasattr(request, "options") else request


def _fixed(request, model="2tcmirr"):
    return kinetics.fixed_values(model, _options(request).bounds)


VOXEL, BIDS, TACS = "voxel", "bids", "tacs"
ALL = (VOXEL, BIDS, TACS)
MAPS = (VOXEL, BIDS)

#: (options, modes, what happens): a check of the request the fit is given (works), or what the one line of the
#: refusal says.
TABLE = [
    ([], ALL, lambda r: _options(r).models == ("2tcmirr",) and _fixed(r) == {}),
    (["--model", "2tcm,1tcm"], ALL, lambda r: _options(r).models == ("2tcm", "1tcm")),
    (["--model", "patlak", "--t-star", "2.5"], ALL, lambda r: _options(r).t_star == 2.5),
    (["--model", "5tcm"], ALL, "--model 5tcm: unknown model '5tcm'"),
    (["--model", "patlak,2tcm"], ALL, "--model patlak,2tcm: only compartment models can be compared"),
    (["--t-star", "12"], ALL, "--t-star: only with patlak or logan"),
    (["--method", "curve_fit"], MAPS, lambda r: r.options.method == "curve_fit"),
    (["--method", "curve_fit"], (TACS,), "--method curve_fit: not with --tacs"),
    (["--method", "curve_fit", "--model", "patlak"], MAPS, "--method curve_fit applies to compartment models"),
    (["--weights", "duration"], ALL, lambda r: r.weights == "duration" if not hasattr(r, "options")
     else r.options.weights == "duration"),
    (["--weights", "duration", "--model", "logan"], ALL, "--weights applies to compartment models, not logan"),
    (["--weights", "sd"], MAPS, "--weights sd: only with --tacs"),
    (["--weights", "sd"], (TACS,), "--weights sd: "),  # the unit-less table has no SD (the SD table: below)
    (["--uncertainty"], MAPS, lambda r: r.options.uncertainty),
    (["--uncertainty"], (TACS,), lambda r: True),  # the regional table always has the standard errors
    (["--uncertainty", "--method", "curve_fit"], MAPS, "--uncertainty: standard-error maps come from jaxkin's fit"),
    (["--bounds", "paper"], ALL, lambda r: kinetics.resolve_bounds("2tcmirr", _options(r).bounds)[2] == "paper"),
    (["--bounds", "paper", "k3=0.001,1"], ALL,
     lambda r: kinetics.resolve_bounds("2tcmirr", _options(r).bounds)[0][2] == 0.001),
    (["--bounds", "foo=1,2"], ALL, "--bounds: foo is not a parameter of 2tcmirr"),
    (["--bounds", "tight"], ALL, "--bounds: unknown preset 'tight'"),
    (["--bounds", "K1=2,1"], ALL, "--bounds: 'K1=2,1': need finite LOWER <= UPPER"),
    (["--bounds", "paper", "--model", "patlak"], ALL, "--bounds applies to compartment models, not patlak"),
    (["--bounds", "vB=0.02,0.02"], ALL, lambda r: _fixed(r) == {"vB": 0.02}),
    (["--fix", "vB=0.02"], ALL, lambda r: _fixed(r) == {"vB": 0.02}),
    (["--fix", "vB=0.02", "k3=0.1"], ALL, lambda r: _fixed(r) == {"k3": 0.1, "vB": 0.02}),
    (["--fix", "vB=0.02,k3=0.1"], ALL, lambda r: _fixed(r) == {"k3": 0.1, "vB": 0.02}),
    (["--fix", "vB=0.02", "--fix", "k3=0.1"], ALL, lambda r: _fixed(r) == {"k3": 0.1, "vB": 0.02}),
    (["--fix", "k4=0", "--model", "2tcm,2tcmirr"], ALL, lambda r: _fixed(r, "2tcm") == {"k4": 0.0}),
    (["--fix", "k4=0"], ALL, "--fix: k4 is not a parameter of 2tcmirr"),
    (["--fix", "vB"], ALL, "--fix: 'vB' is not NAME=VALUE"),
    (["--fix", "vB=2"], ALL, "--fix: vB=2: need a finite value >= 0 and <= 1"),
    (["--fix", "vB=0.02", "--bounds", "vB=0,0.1"], ALL, "--fix: vB also has a range in the bounds"),
    (["--fix", "vB=0.02", "--model", "patlak"], ALL, "--fix applies to compartment models, not patlak"),
    (["--fix", "vB=0.02", "--method", "curve_fit"], MAPS, lambda r: _fixed(r) == {"vB": 0.02}),
    (["--fix", "vB=0.02", "--delay", "voxel"], MAPS, lambda r: _fixed(r) == {"vB": 0.02}),
    (["--delay", "global"], MAPS, lambda r: r.options.delay == "global"),
    (["--delay", "voxel", "--delay-range", "-5", "20"], MAPS,
     lambda r: r.options.delay_range == pytest.approx((-5 / 60, 20 / 60))),
    (["--delay", "global"], (TACS,), "--delay: not with --tacs"),
    (["--delay", "global", "--model", "patlak"], MAPS, "--delay applies to compartment models, not patlak"),
    (["--delay", "voxel", "--method", "curve_fit"], MAPS, "--delay voxel: fitted by --method lm only"),
    (["--delay-range", "-5", "20"], ALL, "--delay-range: only with --delay global or voxel"),
    (["--delay", "global", "--delay-range", "5", "-5"], MAPS, "--delay-range 5 -5: expected LO HI"),
    (["--delay", "voxel", "--delay-mask", "MASK"], (VOXEL,), "--delay-mask: only with --delay global"),
    (["--delay", "global", "--delay-mask", "MASK"], (VOXEL,), lambda r: r.delay_mask.all()),
    (["--delay", "global", "--delay-mask", "MASK"], (BIDS,), "--delay-mask: not with --bids"),
    (["--mask", "MASK"], (VOXEL,), lambda r: r.mask.all()),
    (["--mask", "MASK"], (BIDS,), "--mask: not with --bids"),
    (["--mask", "MASK"], (TACS,), "--mask: not with --tacs"),
    (["--min-signal", "0.2"], MAPS, lambda r: r.options.min_signal == 0.2),
    (["--min-signal", "0.2"], (TACS,), "--min-signal: not with --tacs"),
    (["--chunk-size", "256"], MAPS, lambda r: r.options.chunk_size == 256),
    (["--chunk-size", "0"], MAPS, "--chunk-size must be positive"),
    (["--chunk-size", "256"], (TACS,), "--chunk-size: not with --tacs"),
    (["--no-progress"], MAPS, lambda r: not r.options.progress),
    (["--no-progress"], (TACS,), lambda r: True),  # a regional fit has no progress bar
    (["--tac-units", "kBq/mL"], MAPS, "--tac-units: only with --tacs"),
    (["--tac-time-unit", "s"], MAPS, "--tac-time-unit: only with --tacs"),
    (["--injection-start", "0"], MAPS, "--injection-start: only with --tacs"),
    (["--injection-start", "0"], (TACS,), lambda r: True),
    (["--blood-to-plasma", "1.1"], ALL, lambda r: True),
    (["--blood-decay", "none"], MAPS, lambda r: True),
    (["--blood-decay", "none"], (TACS,), "blood decay reference 'none' needs the radionuclide's half-life"),
    (["--participant-label", "01"], (BIDS,), lambda r: True),
    (["--participant-label", "02"], (BIDS,), "participant label '02' matches no subject"),
    (["--participant-label", "01"], (VOXEL,), "--participant-label: only with --bids"),
    (["--participant-label", "01"], (TACS,), "--participant-label: not with --tacs"),
    (["--session", "a"], (VOXEL,), "--session: only with --bids"),
    (["--blood-dataset", "MASK"], (VOXEL,), "--blood-dataset: only with --bids"),
    (["--max-memory", "4"], MAPS, lambda r: r.max_memory == 4e9),
    (["--max-memory", "0"], MAPS, "--max-memory 0: expected a positive number of GB"),
    (["--max-memory", "4"], (TACS,), "--max-memory"),
    (["--skip-existing"], (BIDS,), lambda r: "FitOptions" in r.extra),
    (["--skip-existing"], (VOXEL,), "--skip-existing: only with --bids"),
    (["--skip-existing"], (TACS,), "--skip-existing"),
]


def _cases():
    for i, (argv, modes, expected) in enumerate(TABLE):
        for mode in modes:
            yield pytest.param(mode, argv, expected, id=f"{mode}:{' '.join(argv) or 'defaults'}:{i}")


@pytest.mark.parametrize("mode,argv,expected", list(_cases()))
def test_every_option_works_or_is_refused_in_one_line(files, mode, argv, expected, monkeypatch, capsys):
    def reached(request):
        raise _Reached(request)

    monkeypatch.setattr(fitting, "write_fit_maps", reached)
    monkeypatch.setattr(fitting, "write_regional_fits", reached)
    argv = [str(files["mask"]) if a == "MASK" else a for a in argv]
    try:
        code = cli.main(["fit", *_base(mode, files), *argv])
    except _Reached as got:
        assert not isinstance(expected, str), f"accepted, expected the refusal {expected!r}"
        assert expected(got.request), got.request
        return
    err = capsys.readouterr().err
    assert isinstance(expected, str), f"refused, expected to work: {err}"
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("jaxkin fit: error: ") and expected in lines[0], lines[0]


def test_weights_sd_of_a_table_with_the_regional_sd(files, monkeypatch):
    monkeypatch.setattr(fitting, "write_regional_fits", lambda request: (_ for _ in ()).throw(_Reached(request)))
    with pytest.raises(_Reached) as got:
        cli.main(["fit", "--tacs", str(files["sd_table"]), "--input-function", str(files["blood"]), "--out",
                  str(files["out"].with_suffix(".tsv")), "--weights", "sd"])
    assert got.value.request.weights == "sd"


@pytest.mark.slow
def test_regional_fit_states_its_bounds_and_fixed_parameters(files, capsys):
    out = files["out"].with_name("fixed.tsv")
    code = cli.main(["fit", "--tacs", str(files["table"]), "--tac-time-unit", "s", "--tac-units", "kBq/mL",
                     "--input-function", str(files["blood"]), "--out", str(out), "--bounds", "paper", "--fix",
                     "vB=0.03"])
    assert code == 0, capsys.readouterr().err
    header, row = [line.split("\t") for line in out.read_text().splitlines()]
    got = dict(zip(header, row))
    assert float(got["vB"]) == 0.03 and float(got["vB_se"]) == 0.0 and got["n_params"] == "3"
    assert 0.01 <= float(got["K1"]) <= 2.0  # the paper's bounds
    bounds = json.loads(out.with_suffix(".json").read_text())["Bounds"]
    assert bounds["Preset"] == "paper; fixed vB=0.03" and bounds["Fixed"] == {"vB": 0.03}
    assert bounds["K1"] == [0.01, 2.0] and bounds["vB"] == [0.03, 0.03]


@pytest.mark.slow
def test_voxel_maps_hold_the_fixed_parameter(files, tmp_path, capsys):
    """Voxel maps with vB fixed (lm with a per-voxel delay and the standard errors): the vB map is the value in every
    fitted voxel, its standard error 0, and the sidecars list it."""
    extra = ["--delay", "voxel", "--uncertainty"]
    from jaxkin.io.maps import map_path, read_volume
    from jaxkin.io.pet import load_pet

    out = tmp_path / "maps"
    code = cli.main(["fit", "--pet", str(files["pet"]), "--input-function", str(files["blood"]), "--out", str(out),
                     "--mask", str(files["mask"]), "--fix", "vB=0.04", "--no-progress", *extra])
    assert code == 0, capsys.readouterr().err
    pet = load_pet(files["pet"])
    assert np.all(read_volume(map_path(out, "sub-01", "2tcmirr", "vB"), pet) == np.float32(0.04))
    if "--uncertainty" in extra:
        assert np.all(read_volume(map_path(out, "sub-01", "2tcmirr", "vBSE"), pet) == 0.0)
        assert np.all(read_volume(map_path(out, "sub-01", "2tcmirr", "K1SE"), pet) > 0.0)
    sidecar = json.loads(map_path(out, "sub-01", "2tcmirr", "Ki").with_suffix("").with_suffix(".json").read_text())
    assert sidecar["Bounds"]["Fixed"] == {"vB": 0.04} and sidecar["Bounds"]["vB"] == [0.04, 0.04]
