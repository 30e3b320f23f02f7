"""Files at the edges of jaxkin: what users bring and what jaxkin writes. Units are converted here (seconds and the
files' activity units outside, minutes and kBq/ml inside).

* :mod:`.pet`: a dynamic BIDS-PET scan (lazy 4D image, timing, decay, units); :mod:`.maps`: parametric maps;
* :mod:`.blood`: blood recordings (plasma, whole blood, metabolites) as the input function;
* :mod:`.labels`: label maps in every form on the PET's grid (BIDS dseg, TotalSegmentator, mask folders);
* :mod:`.tables`: tables of regional TACs; :mod:`.units`: activity and time units;
* :mod:`.layout`: where files are in a BIDS dataset and where derivatives go; :mod:`.dataset`: datasets of subjects
  with their train/val/test split and ground truth;
* :mod:`.files`: the primitives they share (atomic writes, NIfTI/JSON/TSV reading).
"""

from jaxkin.io.blood import Blood, load_blood, write_blood
from jaxkin.io.dataset import SubjectFiles, scan_files
from jaxkin.io.labels import (
    DEFAULT_GROUPS,
    TOTALSEGMENTATOR_TOTAL,
    Labels,
    parse_groups,
    read_labels,
    write_labels,
)
from jaxkin.io.layout import (
    BidsName,
    PetScan,
    bids_uri,
    check_output_folder,
    derivative_dir,
    find_pet_scans,
    parse_name,
    write_dataset_description,
)
from jaxkin.io.maps import map_path, read_volume, write_map
from jaxkin.io.pet import (
    PetImage,
    finite_voxel_mask,
    load_pet,
    nonfinite_message,
    slabs,
    tracer_half_life,
    write_pet,
)
from jaxkin.io.tables import RegionalTacs, read_tacs, write_tacs

__all__ = [
    "PetImage", "load_pet", "write_pet", "slabs", "tracer_half_life", "finite_voxel_mask", "nonfinite_message",
    "map_path", "read_volume", "write_map",
    "Blood", "load_blood", "write_blood",
    "Labels", "read_labels", "write_labels", "parse_groups", "DEFAULT_GROUPS", "TOTALSEGMENTATOR_TOTAL",
    "RegionalTacs", "read_tacs", "write_tacs",
    "BidsName", "PetScan", "bids_uri", "check_output_folder", "derivative_dir", "find_pet_scans", "parse_name",
    "write_dataset_description",
    "SubjectFiles", "scan_files",
]
