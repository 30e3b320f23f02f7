"""Noiseless organ TACs of the phantom's kinetic parameters, for the regional-fit tests (library and command)."""

import jax
import jax.numpy as jnp
import numpy as np

import jaxkin
from jaxkin import kinetics, phantom

#: The 62 Quadra frames and a Feng input delayed by 12 s.
FRAMES = jaxkin.FrameSchedule.quadra()
AIF = jaxkin.feng_input(FRAMES.end[-1], delay=0.2)


def organ_tacs(organs) -> np.ndarray:
    """Noiseless irreversible two-tissue TACs ``[R, F]`` (kBq/ml, float64) of the phantom's ``organs``."""
    params = np.array([phantom.ORGAN_PARAMETERS[o] for o in organs])
    with jax.enable_x64(True):
        kin = jaxkin.prepare(AIF, FRAMES, dtype=jnp.float64)
        return np.asarray(kinetics.two_tissue_irreversible(jnp.asarray(params), kin))
