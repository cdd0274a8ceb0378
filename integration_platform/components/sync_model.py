"""What a ``SyncComponent``'s YAML declares.

The shapes mirror :class:`integration_platform.sync.SyncSpec` (one side per system, canonical
field -> side field with optional code tables, a conflict policy per field) and add what only
the Dagster side needs: where the connections are declared, adapter options, a schedule,
webhook triggers and the dry-run default. Values are kept as plain strings here and checked
in ``sync_resolve.py``, so a wrong strategy or cron string is reported with its file and line
instead of as a bare pydantic error.
"""

from typing import Any

import dagster as dg
from pydantic import Field

DEFAULT_TRIGGER_STATUSES: tuple[str, ...] = ("pending", "processing", "processed", "failed")


class FieldMapDeclaration(dg.Model):
    """A coded field: the side's field name and its code table."""

    field: str = Field(description="The field (column, attribute) in this system.")
    values: dict[str | int, str] | None = Field(
        default=None,
        description="Code in this system -> canonical value, used when reading "
        '(e.g. {"WAPPR": scheduled, "INPRG": in_progress}); numeric codes are read as text.',
    )
    write_values: dict[str, str | int] | None = Field(
        default=None,
        description="Canonical value -> code written to this system; default: the first code "
        "listed in values for each canonical value.",
    )


class SideDeclaration(dg.Model):
    """One of the two systems of a sync."""

    system: str = Field(
        description="Name of the system in this sync: used by policies (owner), triggers, "
        "conflicts and the audit trail."
    )
    connection: str | None = Field(
        default=None,
        description="Connection (declared by a ConnectionComponent) that reaches the system; "
        "default: the system name.",
    )
    key_field: str | list[str] = Field(
        description="Field(s) identifying a record; several are joined with '/' (siteid/wonum)."
    )
    version_field: str | None = Field(
        default=None, description="The system's change token (_rowstamp, @odata.etag)."
    )
    modified_field: str | None = Field(
        default=None, description="Last-change time of a record (last_writer_wins needs it)."
    )
    fields: dict[str, str | FieldMapDeclaration] = Field(
        description="Canonical field -> this system's field name, or {field, values, write_values}."
    )
    mapping: str | None = Field(
        default=None,
        description="Optional mapping defs.yaml reading this system into the canonical model "
        "(relative to this file); checked to be for the same entity.",
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="Options of the system's sync adapter: sql: table (required), schema, "
        "touch_modified; maximo: create_defaults, cancel_values, page_size; dynamics: "
        "create_defaults, cancel_values.",
    )


class PolicyDeclaration(dg.Model):
    """How conflicts on a field are decided."""

    strategy: str | None = Field(
        default=None,
        description="source_priority, last_writer_wins, newest_non_null, min, max, rule or "
        "manual; default: source_priority when owner is given.",
    )
    owner: str | None = Field(default=None, description="For source_priority: the owner system.")
    rule: str | None = Field(default=None, description="For rule: the registered rule name.")


class TriggerDeclaration(dg.Model):
    """Webhook events that start a run: changes of the entity announced by one system."""

    system: str = Field(description="One of the sync's two systems: whose events start a run.")
    webhook_source: str | None = Field(
        default=None,
        description="The webhook source (a WEBHOOK_SOURCES name, the inbox's cmms_system_id) "
        "its events arrive under; default: the system name.",
    )
    statuses: list[str] = Field(
        default_factory=lambda: list(DEFAULT_TRIGGER_STATUSES),
        description="Inbox processing statuses that count (dead letters do not, by default).",
    )


class RetryDeclaration(dg.Model):
    """Retries of a run that failed on a retryable connector error (timeout, 429, 5xx)."""

    max_retries: int = Field(default=3, ge=0, description="Retries after the first attempt.")
    delay_seconds: float = Field(
        default=30.0, ge=0, description="Wait before the first retry; doubles each time."
    )


class ReadsDeclaration(dg.Model):
    """How runs read the two systems (``ReadPolicy``)."""

    incremental: bool = Field(
        default=False,
        description="Read only records changed since the last successful run (both sides need "
        "a modified_field); full reads still run first, periodically and on request.",
    )
    overlap_seconds: float = Field(
        default=300.0, description="Read this far back before the last run's newest change."
    )
    full_every_runs: int | None = Field(
        default=24, description="Every Nth run reads in full (null: never by count)."
    )
    full_every_hours: float | None = Field(
        default=24.0, description="A full read when the last one is this old (null: never)."
    )


class SyncDeclaration(dg.Model):
    """One sync: an entity kept in step between two systems."""

    name: str = Field(description="Sync name: letters, digits, '_' (job sync_<name>_job).")
    description: str | None = Field(default=None, description="What the sync is for.")
    entity: str = Field(description="work_order, asset or maintenance_schedule.")
    left: SideDeclaration = Field(description="The first system.")
    right: SideDeclaration = Field(description="The second system.")
    fields: list[str] = Field(description="Canonical fields kept in step.")
    direction: str = Field(
        default="two_way", description="two_way, left_to_right or right_to_left."
    )
    match_field: str | None = Field(
        default=None,
        description="Canonical field pairing records not yet cross-referenced (e.g. external_id).",
    )
    default_policy: str | PolicyDeclaration = Field(
        default="last_writer_wins", description="Conflict policy of fields without their own."
    )
    policies: dict[str, str | PolicyDeclaration] = Field(
        default_factory=dict,
        description="Per field: a strategy name, or {strategy, owner, rule}; {owner: X} is "
        "field ownership (source_priority).",
    )
    schedule: str | None = Field(default=None, description="Cron schedule of the job.")
    schedule_timezone: str = Field(default="UTC", description="Time zone of the cron schedule.")
    triggers: list[TriggerDeclaration] = Field(
        default_factory=list, description="Webhook events that start a run."
    )
    trigger_interval_seconds: int = Field(
        default=5, ge=5, description="How often the trigger sensor looks at the inbox."
    )
    dry_run: bool = Field(
        default=False,
        description="Runs only plan and report (nothing written) unless run config says otherwise.",
    )
    retry: RetryDeclaration = Field(
        default_factory=RetryDeclaration,
        description="Retries of a run that failed, or was rolled back, on a retryable "
        "connector error.",
    )
    reads: ReadsDeclaration = Field(
        default_factory=ReadsDeclaration,
        description="Full or incremental reads (incremental, overlap_seconds, full_every_runs, "
        "full_every_hours).",
    )


class SyncsDeclaration(dg.Model):
    """The attributes of a ``SyncComponent``."""

    connections_file: str | None = Field(
        default=None,
        description="A ConnectionComponent defs.yaml declaring the connections the syncs use "
        "(relative to this file). Unset: connections declared anywhere under the code "
        "location's defs/ folder.",
    )
    rules_modules: list[str] = Field(
        default_factory=list,
        description="Python modules to import before the syncs are checked: where conflict "
        "rules named by 'rule' policies are registered (@register_rule).",
    )
    syncs: list[SyncDeclaration] = Field(description="The syncs.")
