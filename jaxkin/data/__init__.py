"""Data at the edges of jaxkin: BIDS-PET files (:mod:`jaxkin.data.bids`), blood recordings (:mod:`jaxkin.data.blood`), the simulated whole-body FDG phantom
(:mod:`jaxkin.data.phantom`), datasets of subjects with their train/val/test split (:mod:`jaxkin.data.dataset`) and
the file primitives they share (:mod:`jaxkin.data.files`: atomic writes, NIfTI/JSON/TSV reading).
"""

from jaxkin.data.blood import Blood, load_blood, write_blood
from jaxkin.data.bids import (
    Labels,
    PetImage,
    finite_voxel_mask,
    image_derived_input,
    input_from_frame_means,
    load_input_function,
    load_labels,
    load_pet,
    map_path,
    nonfinite_message,
    read_volume,
    slabs,
    tracer_half_life,
    write_input_function,
    write_labels,
    write_map,
    write_pet,
)

__all__ = [
    "Blood",
    "load_blood",
    "write_blood",
    "Labels",
    "PetImage",
    "finite_voxel_mask",
    "image_derived_input",
    "input_from_frame_means",
    "load_input_function",
    "load_labels",
    "load_pet",
    "map_path",
    "nonfinite_message",
    "read_volume",
    "slabs",
    "tracer_half_life",
    "write_input_function",
    "write_labels",
    "write_map",
    "write_pet",
]
