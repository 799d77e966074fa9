"""YAML in and out, the same way everywhere: block style, stable key order, unicode kept."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import yaml


class _Dumper(yaml.SafeDumper):
    """Indents lists under their key, as kubectl and Helm write them."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _str_presenter(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_presenter)


def dump(obj: Any) -> str:
    return yaml.dump(obj, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def dump_all(objs: Iterable[Any]) -> str:
    return yaml.dump_all(list(objs), Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120,
                         explicit_start=True)


def load_all(text: str) -> Iterator[Any]:
    """Every non-empty document of a multi-document YAML stream."""
    return (doc for doc in yaml.safe_load_all(text) if doc is not None)
