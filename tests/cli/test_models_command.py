"""``jaxkin models``: every model ``jaxkin fit --model`` takes, the graphical methods marked as such."""

from jaxkin import cli
from jaxkin.fitting import FIT_MODELS, GRAPHICAL_METHODS


def test_models_lists_every_fit_model(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    listed = [line.split(":")[0] for line in out.splitlines() if not line.startswith(" ")]
    assert sorted(listed) == sorted(FIT_MODELS)
    for name in GRAPHICAL_METHODS:
        assert f"{name}: graphical method" in out
