"""A declared mapping as Dagster assets: ``silver/<entity>`` plus ``quarantine/<entity>``.

The spec is compiled when definitions load, so a broken mapping stops ``dagster definitions
validate`` with the file, line and field. At run time the silver asset writes the rows that
passed the mapping and the canonical model; the quarantine asset keeps the others whole with
the field and the reason; a blocking check fails when the reject ratio passes the spec's
threshold, and ``strict: true`` fails the run on any reject (after quarantining them).
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import BaseModel

from integration_platform.lake.quarantine import QUARANTINE_COLUMNS, quarantine_records
from integration_platform.mapping.compiler import CompiledMapping, compile_mapping, parse_spec
from integration_platform.mapping.locate import SourceMap
from integration_platform.mapping.spec import MappingDeclaration, MappingSpec
from integration_platform.model.validation import table_schema

REJECT_RATIO_CHECK = "reject_ratio_within_limit"


class MappingComponent(dg.Component):
    """Maps a source asset to a canonical entity, declared in YAML (see ``mapping/spec.py``)."""

    def __init__(self, spec: MappingSpec, source_map: SourceMap) -> None:
        self.spec = spec
        self.source_map = source_map

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return MappingDeclaration

    @classmethod
    def load(
        cls, attributes: BaseModel | None, context: dg.ComponentLoadContext
    ) -> "MappingComponent":
        """Merge a built-in the spec ``extends`` and check the shape, naming file and line."""
        source_map = SourceMap.for_component(context.path)
        data = attributes.model_dump(by_alias=True, exclude_unset=True) if attributes else {}
        return cls(parse_spec(data, source_map), source_map)

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        compiled = compile_mapping(self.spec, source_map=self.source_map)
        return dg.Definitions(assets=[build_mapping_asset(compiled)])


def _key(path: str | list[str]) -> dg.AssetKey:
    return dg.AssetKey(path.split("/") if isinstance(path, str) else path)


def column_lineage(compiled: CompiledMapping) -> dg.TableColumnLineage:
    """Per target field, the source columns (and lookup columns) its value comes from."""
    source = _key(compiled.spec.source)
    deps: dict[str, list[dg.TableColumnDep]] = {}
    for field in compiled.fields:
        columns = [
            dg.TableColumnDep(asset_key=source, column_name=column)
            for column in sorted(compiled.source_columns_of(field.name))
        ]
        for name in sorted(compiled.lookups_of(field.name)):
            lookup = compiled.spec.lookups[name]
            columns.append(
                dg.TableColumnDep(asset_key=_key(lookup.asset), column_name=lookup.value)
            )
        if columns:
            deps[field.name] = columns
    return dg.TableColumnLineage(deps_by_column=deps)


def build_mapping_asset(compiled: CompiledMapping) -> dg.AssetsDefinition:
    spec = compiled.spec
    silver_key = _key(spec.key_path("target"))
    quarantine_key = _key(spec.key_path("quarantine"))
    lookup_inputs = {f"lookup_{name}": name for name in spec.lookups}
    ins = {"source": dg.AssetIn(key=_key(spec.source))}
    ins |= {
        argument: dg.AssetIn(key=_key(spec.lookups[name].asset))
        for argument, name in lookup_inputs.items()
    }
    record_key = spec.key[-1] if spec.key else None
    group = spec.group_name or "canonical"
    where = compiled.source_map.where(())

    @dg.multi_asset(
        name=spec.mapping_name,
        group_name=group,
        ins=ins,
        outs={
            "silver": dg.AssetOut(
                key=silver_key,
                description=spec.description
                or f"Canonical {spec.entity} from {spec.source}, validated against "
                f"{compiled.model.__name__}.",
                kinds={"delta", "pandas", "pandera"},
                metadata={
                    "dagster/column_schema": table_schema(compiled.model),
                    "dagster/column_lineage": column_lineage(compiled),
                    "mapping": dg.MetadataValue.md(compiled.mapping_table()),
                    "mapping/spec": dg.MetadataValue.path(where),
                    "mapping/strict": spec.strict,
                    "mapping/max_reject_ratio": spec.max_reject_ratio,
                },
            ),
            "quarantine": dg.AssetOut(
                key=quarantine_key,
                description=f"{spec.entity} records from {spec.source} that could not be "
                "accepted, kept whole with the field and the reason.",
                kinds={"delta", "pandas"},
                metadata={
                    "dagster/column_schema": dg.TableSchema(
                        columns=[
                            dg.TableColumn(name=name, description=text)
                            for name, text in QUARANTINE_COLUMNS.items()
                        ]
                    )
                },
            ),
        },
        check_specs=[
            dg.AssetCheckSpec(
                REJECT_RATIO_CHECK,
                asset=silver_key,
                blocking=True,
                description=f"At most {spec.max_reject_ratio:.0%} of the records are rejected.",
            )
        ],
    )
    def mapping_asset(
        context: dg.AssetExecutionContext, source: pd.DataFrame, **lookups: pd.DataFrame
    ) -> Iterator[Any]:
        tables = {name: lookups[argument] for argument, name in lookup_inputs.items()}
        outcome = compiled.apply(source, tables)
        quarantine = quarantine_records(
            outcome.rejected,
            outcome.rejected[["reject_field", "reject_reason"]],
            entity=spec.entity,
            source_system=spec.system,
            key_column=record_key,
            run_id=context.run.run_id,
        )
        considered = len(outcome.valid) + len(quarantine)
        ratio = len(quarantine) / considered if considered else 0.0
        context.log.info(
            f"{spec.mapping_name}: {outcome.input_rows} input rows, {outcome.superseded} "
            f"superseded by newer versions, {outcome.filtered} filtered out, "
            f"{len(outcome.valid)} valid, {len(quarantine)} quarantined ({ratio:.2%})"
        )
        yield dg.Output(
            quarantine,
            output_name="quarantine",
            metadata={
                "rejects_by_field": dg.MetadataValue.json(
                    quarantine["reject_field"].value_counts().to_dict()
                ),
                "sample": dg.MetadataValue.md(
                    quarantine[["external_id", "source_line", "reject_reason"]]
                    .head(10)
                    .to_markdown(index=False)
                ),
            },
        )
        if spec.strict and len(quarantine):
            raise dg.Failure(
                description=f"{spec.mapping_name} is strict and rejected {len(quarantine)} "
                f"of {considered} records; see {'/'.join(quarantine_key.path)}",
                metadata={"rows_rejected": len(quarantine)},
            )
        yield dg.Output(
            outcome.valid,
            output_name="silver",
            metadata={
                "rows_input": outcome.input_rows,
                "rows_valid": len(outcome.valid),
                "rows_rejected": len(quarantine),
                "rows_filtered": outcome.filtered,
                "rows_superseded": outcome.superseded,
            },
        )
        yield dg.AssetCheckResult(
            check_name=REJECT_RATIO_CHECK,
            asset_key=silver_key,
            passed=ratio <= spec.max_reject_ratio,
            metadata={
                "rows_valid": len(outcome.valid),
                "rows_rejected": len(quarantine),
                "reject_ratio": round(ratio, 4),
                "max_reject_ratio": spec.max_reject_ratio,
            },
        )

    return mapping_asset
