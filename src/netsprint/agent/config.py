"""The agent's YAML config file: `AgentConfig`, validated, with errors that name the key.

    listen: 127.0.0.1:9435      # HOST:PORT of /metrics and /healthz (--listen overrides)
    collect_interval: 0         # seconds between map reads; 0 = read on each scrape
    max_series: 1000            # label sets per metric family; more are dropped and counted
    peer_label: pod             # pod | workload | none
    raw_ips: false              # peers outside pods by IP instead of "external" (unbounded!)
    max_flows: 10240            # BPF flow map entries (FlowKey -> counters)
    max_sockets: 65536          # BPF socket map entries (sockets in flight)
    log_level: INFO
    pods:
      source: none              # none | lab | kubernetes
      file: /run/netsprint/pods-<node>.json   # lab only (required): the lab's pod map

Every key is optional. Errors are `netsprint.config.ConfigError(source, key, reason)`, the
project's one config error (also a ValueError): unknown keys (with a "did you mean"), wrong
types (a bool is never a number), bad ranges, unknown choices.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from netsprint.agent.labels import PeerLabel
from netsprint.config import ConfigError, _did_you_mean

PodSource = Literal["none", "lab", "kubernetes"]
POD_SOURCES: tuple[str, ...] = typing.get_args(PodSource)
DEFAULT_LISTEN = "127.0.0.1:9435"


@dataclasses.dataclass(frozen=True)
class PodsConfig:
    """Where pod identities come from: nowhere, the netns lab's pod map, or Kubernetes."""

    source: PodSource = "none"
    file: str = ""  # the lab's pod map (netsprint.lab.pods writes /run/netsprint/pods-<node>.json)


@dataclasses.dataclass(frozen=True)
class AgentConfig:
    """Everything `netsprint agent` can be told in its config file."""

    listen: str = DEFAULT_LISTEN
    collect_interval: float = 0.0
    max_series: int = 1000
    peer_label: PeerLabel = "pod"
    raw_ips: bool = False
    max_flows: int = 10240
    max_sockets: int = 65536
    log_level: str = "INFO"
    pods: PodsConfig = dataclasses.field(default_factory=PodsConfig)

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)


# Ranges beyond the type: key -> (check, what is allowed).
_RANGES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "collect_interval": (lambda v: math.isfinite(v) and 0 <= v <= 3600,
                         "a number of seconds in 0..3600 (0: read the maps on each scrape)"),
    "max_series": (lambda v: 1 <= v <= 1_000_000, "an integer in 1..1000000"),
    "max_flows": (lambda v: 1 <= v <= 4_194_304, "an integer in 1..4194304 (BPF map entries)"),
    "max_sockets": (lambda v: 1 <= v <= 4_194_304, "an integer in 1..4194304 (BPF map entries)"),
    "log_level": (lambda v: v.upper() in logging.getLevelNamesMapping(),
                  "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
}


def load_agent_config(path: str | Path | None) -> AgentConfig:
    """The config in the YAML file at `path` (None: all defaults); ConfigError if wrong."""
    if path is None:
        return AgentConfig()
    return config_from_mapping(read_yaml(path), str(path))


def read_yaml(path: str | Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (None, None)
        raise ConfigError(str(path), "", f"invalid YAML: {exc.problem}", line=line,
                          column=column) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), "", f"invalid YAML: {exc}") from exc
    if data is None:  # an empty file (or only comments): all defaults
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"the top level must be a mapping of keys, got "
                                         f"{_describe(data)}")
    return data


def config_from_mapping(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    """An AgentConfig from parsed YAML (a test's dict, too); ConfigError if wrong."""
    config = _build(AgentConfig, data, source, ())
    parse_listen(config.listen, source)
    if config.pods.source == "lab" and not config.pods.file.strip():
        raise ConfigError(source, "pods.file", "required when pods.source is lab: the lab's "
                                               "pod map, e.g. /run/netsprint/pods-<node>.json")
    return config


def _build(cls: type, table: Any, source: str, path: tuple[str, ...]) -> Any:
    if not isinstance(table, dict):
        raise ConfigError(source, ".".join(path), f"expected a mapping, got {_describe(table)}")
    hints = typing.get_type_hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    values = {}
    for name, value in table.items():
        key = ".".join((*path, str(name)))
        if name not in names:
            raise ConfigError(source, key, f"unknown key{_did_you_mean(str(name), names)}; "
                                           f"known: {', '.join(sorted(names))}")
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, source, (*path, name))
        else:
            values[name] = _convert(hint, value, source, key)
    return cls(**values)


def _convert(hint: Any, value: Any, source: str, key: str) -> Any:
    converted = _typed(hint, value, source, key)
    check = _RANGES.get(key)
    if check is not None and not check[0](converted):
        raise ConfigError(source, key, f"expected {check[1]}, got {value!r}")
    return converted


def _typed(hint: Any, value: Any, source: str, key: str) -> Any:
    """`value` as the field's type, or ConfigError; YAML's bools are never numbers."""
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if isinstance(value, str) and value in choices:
            return value
        raise ConfigError(source, key, f"expected one of {', '.join(choices)}, got "
                                       f"{_describe(value)}"
                                       f"{_did_you_mean(str(value), choices)}")
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is float and is_number:
        return float(value)
    if hint is int and is_number and isinstance(value, int):
        return value
    if hint is bool and isinstance(value, bool):
        return value
    if hint is str and isinstance(value, str):
        return value
    expected = {float: "a number", int: "an integer", bool: "true or false",
                str: "a string"}[hint]
    raise ConfigError(source, key, f"expected {expected}, got {_describe(value)}")


def parse_listen(text: str, source: str = "--listen") -> tuple[str, int]:
    """'0.0.0.0:9435', '[::]:9435' or 'localhost:9435' -> (host, port); ConfigError if not."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise ConfigError(source, "listen", f"expected HOST:PORT with a port 0..65535, "
                                            f"e.g. {DEFAULT_LISTEN}, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(source, "listen", f"{host!r} is not an IPv6 address") from None
    elif ":" in host:  # an IPv6 address has colons of its own, so it must come in brackets
        raise ConfigError(source, "listen", f"write an IPv6 address in brackets, e.g. "
                                            f"[::]:9435, got {text!r}")
    return host, int(port_text)


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list", dict: "a mapping", type(None): "nothing (null)"}
    kind = kinds.get(type(value), type(value).__name__)
    return kind if isinstance(value, (list, dict, type(None))) else f"{kind} {value!r}"
