"""Bidirectional syncs declared in YAML: a job per sync, its schedule, its webhook trigger
and its conflict queue as an asset.

Each declared sync becomes

- ``sync_<name>_job``: one op running :class:`integration_platform.sync.SyncEngine` between
  the two connections, with the run's counts as metadata (``sync_job.py``);
- ``sync_<name>_job_schedule`` when ``schedule`` (cron) is given;
- ``sync_<name>_webhook_sensor`` when ``triggers`` are given: it starts the job when the
  webhook inbox receives events of the entity from those systems (``sync_triggers.py``);
- the asset ``sync/<name>/conflicts`` (group ``sync``): the conflict queue with its counts.

The audit asset ``audit/sync_changes`` is shared by all syncs and lives in ``defs/sync/``.
A declaration is checked completely when definitions load; every problem is reported with
the file, line and field (``sync_resolve.py``), so ``dg check defs`` catches it first.

Example (``sync/examples/maximo_plant_db/defs.yaml``)::

    type: integration_platform.components.SyncComponent
    attributes:
      connections_file: connections.yaml
      syncs:
        - name: maximo_plant_work_orders
          entity: work_order
          left:
            system: maximo
            key_field: [siteid, wonum]
            version_field: _rowstamp
            modified_field: changedate
            fields: {external_id: wonum, title: description, ...}
          right:
            system: plant_db
            key_field: id
            modified_field: updated_at
            fields: {external_id: wonum, title: title, ...}
            options: {table: plant_work_orders}
          fields: [title, status, priority]
          match_field: external_id
          policies:
            status: {owner: maximo}
          schedule: "*/15 * * * *"
          triggers: [{system: maximo}]
"""

from pathlib import Path

import dagster as dg
import yaml
from pydantic import BaseModel, ValidationError

from integration_platform.components.sync_job import (
    build_conflicts_asset,
    build_schedule,
    build_sync_job,
)
from integration_platform.components.sync_model import SyncsDeclaration
from integration_platform.components.sync_resolve import (
    PACKAGE_DEFS,
    ResolvedSync,
    SyncDeclarationError,
    provided_resources,
    resolve_syncs,
)
from integration_platform.components.sync_triggers import build_trigger_sensor
from integration_platform.mapping.locate import SourceMap

SYNC_COMPONENT = "integration_platform.components.SyncComponent"

__all__ = ["SYNC_COMPONENT", "SyncComponent", "SyncDeclarationError"]


class SyncComponent(dg.Component):
    """Syncs between two systems: jobs, schedules, webhook sensors and conflict assets."""

    def __init__(self, syncs: list[ResolvedSync]) -> None:
        self.syncs = syncs
        self.resources = provided_resources(syncs)

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return SyncsDeclaration

    @classmethod
    def load(
        cls, attributes: BaseModel | None, context: dg.ComponentLoadContext
    ) -> "SyncComponent":
        source_map = SourceMap.for_component(context.path)
        if not isinstance(attributes, SyncsDeclaration):
            data = attributes.model_dump() if attributes is not None else {}
            attributes = SyncsDeclaration.model_validate(data)
        return cls(resolve_syncs(attributes, source_map, defs_root=context.defs_module_path))

    @classmethod
    def from_yaml(cls, path: Path, *, defs_root: Path | None = PACKAGE_DEFS) -> "SyncComponent":
        """The component of a ``defs.yaml`` without a Dagster project (CLI, scripts, tests).
        Connections without ``connections_file`` are looked up under ``defs_root``."""
        source_map = SourceMap.from_file(path, prefix=("attributes",))
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise SyncDeclarationError([f"  {path}: not valid YAML: {exc}"]) from None
        if not isinstance(document, dict) or document.get("type") != SYNC_COMPONENT:
            found = document.get("type") if isinstance(document, dict) else None
            raise SyncDeclarationError(
                [f"  {path}: not a sync declaration (type: {found!r}; expected {SYNC_COMPONENT})"]
            )
        try:
            declaration = SyncsDeclaration.model_validate(document.get("attributes") or {})
        except ValidationError as exc:
            raise SyncDeclarationError(
                [
                    f"  {source_map.where(tuple(error['loc']))}: "
                    f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"
                    for error in exc.errors()
                ]
            ) from None
        return cls(resolve_syncs(declaration, source_map, defs_root=defs_root))

    def sync(self, name: str) -> ResolvedSync:
        """The declared sync called ``name``; ``KeyError`` naming the ones there are."""
        for sync in self.syncs:
            if sync.name == name:
                return sync
        known = ", ".join(s.name for s in self.syncs) or "none"
        raise KeyError(f"no sync named {name!r} here; declared: {known}")

    def build_defs(self, context: dg.ComponentLoadContext | None) -> dg.Definitions:
        jobs, schedules, sensors, assets = [], [], [], []
        for sync in self.syncs:
            job = build_sync_job(sync)
            jobs.append(job)
            assets.append(build_conflicts_asset(sync))
            if sync.declaration.schedule:
                schedules.append(build_schedule(sync, job))
            if sync.declaration.triggers:
                sensors.append(build_trigger_sensor(sync, job))
        return dg.Definitions(
            assets=assets,
            jobs=jobs,
            schedules=schedules,
            sensors=sensors,
            resources=self.resources,
        )
