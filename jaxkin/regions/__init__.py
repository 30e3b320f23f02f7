"""Regional analysis on a PET image's grid: regional TACs and map statistics (:mod:`.tacs`), the image-derived
input, its voxels and its curve together (:mod:`.idif`). Files are read and written by :mod:`jaxkin.io`."""

from jaxkin.regions.idif import (
           idif_mask,
           image_derived_input,
           input_from_frame_means,
           label_mean_tac,
)
from jaxkin.regions.tacs import map_statistics, regional_tacs

__all__ = ["regional_tacs", "map_statistics", "idif_mask", "label_mean_tac", "image_derived_input",
           "input_from_frame_means"]
