"""The code location: the YAML and Python definitions under ``defs/`` plus shared resources.

Only global wiring lives here; everything about a system or domain lives in its ``defs/``
folder. Resources read their settings from the environment when a run uses them, not at
import, so loading definitions never touches the lake or the database.
"""

from pathlib import Path

import dagster as dg

from integration_platform.lake import DeltaIOManager, DeltaLake
from integration_platform.state import StateDatabase

PACKAGE_DIR = Path(__file__).resolve().parent


@dg.definitions
def defs() -> dg.Definitions:
    lake = DeltaLake()
    shared = dg.Definitions(
        resources={
            "lake": lake,
            "io_manager": DeltaIOManager(lake=lake),
            "state": StateDatabase(),
        }
    )
    return dg.Definitions.merge(dg.load_from_defs_folder(path_within_project=PACKAGE_DIR), shared)
