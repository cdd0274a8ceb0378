"""Line numbers of the keys in a YAML file, so spec errors can name file, line and field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

SpecPath = tuple[str | int, ...]


@dataclass(frozen=True)
class SourceMap:
    """Where each key of a YAML document sits; ``line_of`` falls back to the nearest parent."""

    file: Path | None
    lines: dict[SpecPath, int] = field(default_factory=dict)
    prefix: SpecPath = ()

    @classmethod
    def from_text(cls, text: str, file: Path | None = None, prefix: SpecPath = ()) -> SourceMap:
        lines: dict[SpecPath, int] = {}
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return cls(file=file, lines={}, prefix=prefix)
        if root is not None:
            _walk(root, (), lines)
        return cls(file=file, lines=lines, prefix=prefix)

    @classmethod
    def from_file(cls, file: Path, prefix: SpecPath = ()) -> SourceMap:
        return cls.from_text(file.read_text(encoding="utf-8"), file=file, prefix=prefix)

    @classmethod
    def for_component(cls, component_path: Path) -> SourceMap:
        """Lines of a component's ``attributes:`` in its ``defs.yaml`` (the folder or the file
        Dagster hands a component's load context)."""
        yaml_path = component_path / "defs.yaml" if component_path.is_dir() else component_path
        if yaml_path.is_file():
            return cls.from_file(yaml_path, prefix=("attributes",))
        return cls(file=yaml_path)

    def line_of(self, path: SpecPath) -> int | None:
        full = (*self.prefix, *path)
        while full:
            if full in self.lines:
                return self.lines[full]
            full = full[:-1]
        return None

    def where(self, path: SpecPath) -> str:
        """``file, line N`` (or what is known of it) for messages."""
        line = self.line_of(path)
        place = str(self.file) if self.file else "<spec>"
        return f"{place}, line {line}" if line else place


def _walk(node: yaml.Node, path: SpecPath, lines: dict[SpecPath, int]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*path, key)
            lines[child] = key_node.start_mark.line + 1
            _walk(value_node, child, lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            lines[child] = item.start_mark.line + 1
            _walk(item, child, lines)
