"""Data at the edges of jaxkin: BIDS-PET files (:mod:`jaxkin.data.bids`), blood recordings (:mod:`jaxkin.data.blood`),
label maps in every form on the PET's grid (:mod:`jaxkin.data.labels`), regional TACs and their tables
(:mod:`jaxkin.data.regions`), where files are in a BIDS dataset and where derivatives go (:mod:`jaxkin.data.layout`),
the simulated whole-body FDG phantom (:mod:`jaxkin.data.phantom`), datasets of subjects with their train/val/test split
(:mod:`jaxkin.data.dataset`) and the file primitives they share (:mod:`jaxkin.data.files`: atomic writes,
NIfTI/JSON/TSV reading).
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
from jaxkin.data.dataset import SubjectFiles, scan_files
from jaxkin.data.labels import DEFAULT_GROUPS, TOTALSEGMENTATOR_TOTAL, parse_groups, read_labels
from jaxkin.data.regions import RegionalTacs, idif_mask, map_statistics, read_tacs, regional_tacs, write_tacs
from jaxkin.data.layout import (
    BidsName,
    PetScan,
    bids_uri,
    check_output_folder,
    derivative_dir,
    find_pet_scans,
    parse_name,
    write_dataset_description,
)

__all__ = [
    "read_labels",
    "parse_groups",
    "DEFAULT_GROUPS",
    "TOTALSEGMENTATOR_TOTAL",
    "RegionalTacs",
    "regional_tacs",
    "read_tacs",
    "write_tacs",
    "idif_mask",
    "map_statistics",
    "Blood",
    "load_blood",
    "write_blood",
    "BidsName",
    "PetScan",
    "SubjectFiles",
    "bids_uri",
    "check_output_folder",
    "derivative_dir",
    "find_pet_scans",
    "parse_name",
    "scan_files",
    "write_dataset_description",
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
