"""Experiments on top of training and evaluation: ``compare`` (method x seed runs with resume),
``report`` (results.json, significance, plots, markdown) and ``demo`` (the main job).

The entry points are ``gradremedy.experiments.compare.compare`` and ``gradremedy.experiments.demo.run_demo``
(not re-exported here, so that the submodule names stay modules).
"""

from gradremedy.experiments.compare import RunSpec, run_comparison
from gradremedy.experiments.report import build_results, format_table, write_report

__all__ = ["RunSpec", "build_results", "format_table", "run_comparison", "write_report"]
