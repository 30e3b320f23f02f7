"""Evaluation against the measured TACs and the ground truth: pure metric functions (:mod:`.metrics`), the report
of ``jaxkin evaluate`` with its tables (:mod:`.report`) and its figures (:mod:`.plots`)."""

from jaxkin.evaluation.metrics import (
    PARAMS,
    error_statistics,
    mean_sd,
    organ_statistics,
    organ_values,
    tac_metrics,
    tac_summary,
    voxel_cosine,
    voxel_mae,
)
from jaxkin.evaluation.report import (
    Method,
    evaluate,
    evaluate_subject,
    left_out_scans,
    method_files,
    parse_methods,
    summarise,
    write_report,
)

__all__ = [
    "PARAMS", "voxel_mae", "voxel_cosine", "tac_metrics", "tac_summary", "mean_sd", "organ_values", "organ_statistics",
    "error_statistics",
    "Method", "parse_methods", "method_files", "evaluate_subject", "summarise", "write_report",
    "evaluate", "left_out_scans",
]
