"""The config file: one JSON or TOML file, validated, with environment overrides.

Each top-level section maps onto a frozen dataclass that the module using it defines
(`SECTIONS`, imported lazily so loading a config never drags in what it does not need):

    [p2p]      netsprint.p2p.session.SessionConfig   (nests [p2p.punch], [p2p.heartbeat])
    [channel]  netsprint.p2p.channel.ChannelConfig
    [relay]    netsprint.p2p.relay.RelayLimits
    [log]      netsprint.log.LogConfig

Values come from, last one winning: the dataclass defaults, the file, then environment
variables `NETSPRINT_<SECTION>_<KEY>` (nested: `NETSPRINT_P2P_PUNCH_PUNCH_TIMEOUT=2.5`),
parsed by the field's type. `NETSPRINT_CONFIG` names the file when no path is given.

The loader knows nothing about particular sections: it walks dataclass fields (their type
hints and defaults), so a new section is one line in `SECTIONS`. What it checks:
unknown sections and keys (with a "did you mean"), types (an int is accepted for a float, a
bool never for a number), positive finite numbers (every number here is a duration, size,
count or rate), and the cross-field rules in `CHECKS` that keep the timers consistent.
Every failure is a `ConfigError` naming the file (or variable), the key path and the reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import json
import logging
import math
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from netsprint.errors import NetsprintError
from netsprint.p2p.packet import HEADER_BYTES, MAX_PACKET_BYTES

if TYPE_CHECKING:
    from netsprint.log import LogConfig
    from netsprint.p2p.channel import ChannelConfig
    from netsprint.p2p.relay import RelayLimits
    from netsprint.p2p.session import SessionConfig

# section name -> "module:Class" of the frozen dataclass it fills
SECTIONS: dict[str, str] = {
    "p2p": "netsprint.p2p.session:SessionConfig",
    "channel": "netsprint.p2p.channel:ChannelConfig",
    "relay": "netsprint.p2p.relay:RelayLimits",
    "log": "netsprint.log:LogConfig",
}
ENV_PREFIX = "NETSPRINT_"
CONFIG_ENV = "NETSPRINT_CONFIG"
FORMATS = ("toml", "json")
DEFAULTS = "defaults"  # the "source" of a value nobody set

# Linux conntrack forgets an idle UDP flow (and with it the NAT mapping) after
# nf_conntrack_udp_timeout = 30 s; a keepalive must come before that.
CONNTRACK_UDP_TIMEOUT = 30.0

_TRUE_WORDS = frozenset({"1", "true", "yes"})
_FALSE_WORDS = frozenset({"0", "false", "no"})
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


class ConfigError(NetsprintError, ValueError):
    """A config that cannot be used: `source` (file, `$VARIABLE` or "defaults"), `key`
    (dotted path, "" for the whole file), `reason`; `line`/`column` for a parse error."""

    def __init__(self, source: str, key: str, reason: str, *, line: int | None = None,
                 column: int | None = None) -> None:
        where = f"{source}:{line}:{column}" if line is not None else source
        super().__init__(f"{where}: {key}: {reason}" if key else f"{where}: {reason}")
        self.source, self.key, self.reason = source, key, reason
        self.line, self.column = line, column


def section_type(section: str) -> type:
    """The dataclass of `section`, imported on first use."""
    module_name, _, class_name = SECTIONS[section].partition(":")
    return getattr(importlib.import_module(module_name), class_name)


def section_types() -> dict[str, type]:
    return {section: section_type(section) for section in SECTIONS}


def _section_default(section: str) -> Callable[[], Any]:
    return lambda: section_type(section)()


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything the config file can set: one attribute per section of `SECTIONS`."""

    p2p: SessionConfig = dataclasses.field(default_factory=_section_default("p2p"))
    channel: ChannelConfig = dataclasses.field(default_factory=_section_default("channel"))
    relay: RelayLimits = dataclasses.field(default_factory=_section_default("relay"))
    log: LogConfig = dataclasses.field(default_factory=_section_default("log"))


# --- the schema: what a dataclass's fields accept ------------------------------------------------

def _hints(cls: type) -> dict[str, Any]:
    # The modules use `from __future__ import annotations`: field types are strings until
    # resolved against the defining module.
    return typing.get_type_hints(cls)


def _is_optional(hint: Any) -> tuple[bool, Any]:
    """(True, X) for `X | None` / `Optional[X]`, else (False, hint)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def _is_section(hint: Any) -> bool:
    return isinstance(hint, type) and dataclasses.is_dataclass(hint)


def _leaves(cls: type, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every (key path, type hint) of a scalar field, nested dataclasses walked into."""
    hints = _hints(cls)
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if _is_section(hint):
            yield from _leaves(hint, (*path, field.name))
        else:
            yield (*path, field.name), hint


def env_name(path: Iterable[str]) -> str:
    """`("p2p", "punch", "punch_timeout")` -> `NETSPRINT_P2P_PUNCH_PUNCH_TIMEOUT`."""
    return ENV_PREFIX + "_".join(path).upper()


def env_names(sections: Mapping[str, type]) -> dict[str, tuple[str, ...]]:
    """Every environment variable the sections accept -> the key path it sets."""
    names: dict[str, tuple[str, ...]] = {}
    for section, cls in sections.items():
        for path, _ in _leaves(cls, (section,)):
            name = env_name(path)
            if name in names:  # e.g. p2p.punch_timeout next to p2p.punch.timeout
                raise TypeError(f"{name} would set both {'.'.join(names[name])} "
                                f"and {'.'.join(path)}: rename one field")
            names[name] = path
    return names


# --- converting one value ------------------------------------------------------------------------

def _describe(value: Any) -> str:
    kind = {bool: "a boolean", int: "an integer", float: "a float", str: "a string",
            list: "an array", dict: "a table"}.get(type(value), type(value).__name__)
    return f"{kind} {value!r}" if not isinstance(value, (list, dict)) else kind


def _expected(hint: Any) -> str:
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(repr(arg) for arg in typing.get_args(hint))
    if typing.get_origin(hint) is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"an array of {_expected(args[0])}"
        return f"an array of {len(args)} items (" + ", ".join(map(_expected, args)) + ")"
    return {bool: "true or false", int: "an integer", float: "a number",
            str: "a string"}.get(hint, getattr(hint, "__name__", str(hint)))


def _check_number(value: float, source: str, key: str) -> None:
    # Every number in these sections is a duration, a size, a count or a rate.
    if not math.isfinite(value):
        raise ConfigError(source, key, f"must be a finite number, got {value!r}")
    if value <= 0:
        raise ConfigError(source, key, f"must be > 0, got {value!r}")


def _convert_file_value(hint: Any, value: Any, source: str, key: str) -> Any:
    """A value as JSON/TOML gave it -> the field's type, or ConfigError."""
    optional, hint = _is_optional(hint)
    if value is None and optional:
        return None
    if typing.get_origin(hint) is typing.Literal:
        if value in typing.get_args(hint) and type(value) is type(typing.get_args(hint)[0]):
            return value
    elif hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            _check_number(value, source, key)
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_number(value, source, key)
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif typing.get_origin(hint) is tuple:
        if isinstance(value, list):
            return _convert_items(hint, value, source, key, _convert_file_value)
    else:
        raise TypeError(f"config field {key}: unsupported type {hint!r}")
    raise ConfigError(source, key, f"expected {_expected(hint)}, got {_describe(value)}")


def _item_types(hint: Any, count: int, source: str, key: str) -> tuple[Any, ...]:
    """The element types of a `tuple[X, ...]` or `tuple[X, Y]` field holding `count` items."""
    args = typing.get_args(hint)
    if len(args) == 2 and args[1] is Ellipsis:
        return (args[0],) * count
    if count != len(args):
        raise ConfigError(source, key, f"expected {_expected(hint)}, got {count} items")
    return args


def _convert_items(hint: Any, items: list[Any], source: str, key: str,
                   convert: Callable[[Any, Any, str, str], Any]) -> tuple[Any, ...]:
    kinds = _item_types(hint, len(items), source, key)
    return tuple(convert(kind, item, source, f"{key}[{index}]")
                 for index, (kind, item) in enumerate(zip(kinds, items)))


def _convert_env_value(hint: Any, text: str, source: str, key: str) -> Any:
    """A string from the environment -> the field's type, or ConfigError."""
    optional, hint = _is_optional(hint)
    word = text.strip()
    if optional and word.lower() in ("", "none", "null"):
        return None
    if hint is bool:
        if word.lower() in _TRUE_WORDS | _FALSE_WORDS:
            return word.lower() in _TRUE_WORDS
        raise ConfigError(source, key, f"expected 1/0/true/false/yes/no, got {text!r}")
    if hint in (int, float):
        try:
            number = hint(word)
        except ValueError:
            raise ConfigError(source, key, f"expected {_expected(hint)}, got {text!r}") from None
        _check_number(number, source, key)
        return number
    if typing.get_origin(hint) is tuple:  # "1024,65535"
        items = [item.strip() for item in word.split(",")] if word else []
        return _convert_items(hint, items, source, key, _convert_env_value)
    return _convert_file_value(hint, text, source, key)


# --- reading the file ----------------------------------------------------------------------------

def read_file(path: str | Path) -> dict[str, Any]:
    """The file's top-level table, parsed by its suffix (`.toml` or `.json`)."""
    path = Path(path)
    suffix = path.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ConfigError(str(path), "", f"unknown config format {path.suffix!r}: "
                                         "use a .toml or .json file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), "", f"cannot read: {exc.strerror or exc}") from exc
    data = _parse_toml(text, path) if suffix == "toml" else _parse_json(text, path)
    if not isinstance(data, dict):
        raise ConfigError(str(path), "", f"the top level must be a table/object, "
                                         f"got {_describe(data)}")
    return data


def _parse_toml(text: str, path: Path) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # tomllib puts the position into the message only: "... (at line 3, column 9)".
        found = _TOML_POSITION.search(str(exc))
        line, column = (int(found[1]), int(found[2])) if found else (None, None)
        reason = _TOML_POSITION.sub("", str(exc)).strip()
        raise ConfigError(str(path), "", f"invalid TOML: {reason}", line=line,
                          column=column) from exc


def _parse_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(str(path), "", f"invalid JSON: {exc.msg}", line=exc.lineno,
                          column=exc.colno) from exc


# --- merging file, environment and defaults ------------------------------------------------------

Changes = dict[str, Any]  # field name -> converted value, or a nested Changes for a dataclass


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _unknown(source: str, path: tuple[str, ...], choices: Iterable[str], what: str) -> ConfigError:
    choices = sorted(choices)
    return ConfigError(source, ".".join(path),
                       f"unknown {what}{_did_you_mean(path[-1], choices)}; "
                       f"known: {', '.join(choices)}")


def _table_changes(cls: type, table: Any, source: str, path: tuple[str, ...],
                   origins: dict[str, str]) -> Changes:
    """The changes one file table makes to dataclass `cls`, converted and checked."""
    if not isinstance(table, dict):
        raise ConfigError(source, ".".join(path), f"expected a table, got {_describe(table)}")
    hints = _hints(cls)
    names = [field.name for field in dataclasses.fields(cls)]
    changes: Changes = {}
    for name, value in table.items():
        key_path = (*path, name)
        if name not in names:
            raise _unknown(source, key_path, names, "key")
        if _is_section(hints[name]):
            changes[name] = _table_changes(hints[name], value, source, key_path, origins)
        else:
            changes[name] = _convert_file_value(hints[name], value, source, ".".join(key_path))
            origins[".".join(key_path)] = source
    return changes


def _file_changes(data: Mapping[str, Any], sections: Mapping[str, type], source: str,
                  origins: dict[str, str]) -> dict[str, Changes]:
    changes = {}
    for section, table in data.items():
        if section not in sections:
            raise _unknown(source, (section,), sections, "section")
        changes[section] = _table_changes(sections[section], table, source, (section,), origins)
    return changes


def _env_changes(env: Mapping[str, str], sections: Mapping[str, type],
                 changes: dict[str, Changes], origins: dict[str, str]) -> None:
    """Apply `NETSPRINT_<SECTION>_<KEY>` variables on top of `changes` (in place)."""
    known = env_names(sections)
    leaf_types = {path: hint for section, cls in sections.items()
                  for path, hint in _leaves(cls, (section,))}
    section_prefixes = tuple(env_name((section, "")) for section in sections)
    for name in sorted(env):
        if name == CONFIG_ENV or not name.startswith(ENV_PREFIX):
            continue
        if name not in known:
            # Other NETSPRINT_* variables (NETSPRINT_REQUIRE_ALL, ...) are not ours to judge;
            # one that starts like a section is a misspelt setting.
            if name.startswith(section_prefixes):
                raise ConfigError(f"${name}", "", "unknown setting" + _did_you_mean(name, known))
            continue
        path = known[name]
        value = _convert_env_value(leaf_types[path], env[name], f"${name}", ".".join(path))
        target = changes.setdefault(path[0], {})
        for part in path[1:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value
        origins[".".join(path)] = f"${name}"


def _apply(instance: Any, changes: Changes, origins: Mapping[str, str],
           path: tuple[str, ...], file_source: str) -> Any:
    """`instance` with `changes` replaced in (nested dataclasses first), checked by its
    cross-field rules before the dataclass itself is built."""
    updates = {}
    for name, change in changes.items():
        if isinstance(change, dict):
            updates[name] = _apply(getattr(instance, name), change, origins, (*path, name),
                                   file_source)
        else:
            updates[name] = change
    merged = {field.name: getattr(instance, field.name) for field in dataclasses.fields(instance)}
    # Our rules run on the merged values first: they name the exact key, while the
    # dataclass's own __post_init__ (the backstop below) can only refuse the whole section.
    _run_rules(type(instance), types.SimpleNamespace(**{**merged, **updates}), path, origins)
    try:
        return dataclasses.replace(instance, **updates)
    except (TypeError, ValueError, NetsprintError) as exc:
        key = ".".join(path)
        raise ConfigError(_origin(origins, key, file_source), key, str(exc)) from exc


# --- cross-field checks --------------------------------------------------------------------------

# "module.Class" -> functions returning (field, reason) for each broken rule of an instance.
Check = Callable[[Any], Iterable[tuple[str, str]]]
CHECKS: dict[str, list[Check]] = {}


def check(qualified_name: str) -> Callable[[Check], Check]:
    """Register a cross-field rule for the dataclass `module.Class`."""
    def register(rule: Check) -> Check:
        CHECKS.setdefault(qualified_name, []).append(rule)
        return rule
    return register


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


@check("netsprint.p2p.heartbeat.HeartbeatConfig")
def _heartbeat_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    if cfg.keepalive_interval >= CONNTRACK_UDP_TIMEOUT:
        yield ("keepalive_interval",
               f"must be well under {CONNTRACK_UDP_TIMEOUT:g} s, got {cfg.keepalive_interval:g}: "
               "Linux conntrack (nf_conntrack_udp_timeout) forgets an idle UDP flow after "
               f"{CONNTRACK_UDP_TIMEOUT:g} s, and with it the NAT mapping the path uses")
    if cfg.dead_after <= cfg.keepalive_interval:
        yield ("dead_after",
               f"must be greater than keepalive_interval ({cfg.keepalive_interval:g} s), got "
               f"{cfg.dead_after:g}: an idle but healthy path hears only one keepalive "
               "per interval")


@check("netsprint.p2p.punch.PunchConfig")
def _punch_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    if cfg.probe_interval > cfg.probe_interval_max:
        yield ("probe_interval", f"must be <= probe_interval_max ({cfg.probe_interval_max:g} s),"
                                 f" got {cfg.probe_interval:g}")
    if cfg.probe_interval_max >= cfg.punch_timeout:
        yield ("probe_interval_max", f"must be < punch_timeout ({cfg.punch_timeout:g} s), got "
                                     f"{cfg.probe_interval_max:g}: punching would give up "
                                     "before its last retry")
    if cfg.probe_backoff < 1.0:
        yield ("probe_backoff", f"must be >= 1 (a factor the interval grows by), "
                                f"got {cfg.probe_backoff:g}")
    low, high = cfg.birthday_ports
    if not 1 <= low <= high <= 65535:
        yield ("birthday_ports", f"must be a port range [low, high] within 1..65535, "
                                 f"got [{low}, {high}]")
    elif cfg.birthday_probes > high - low + 1:
        yield ("birthday_probes", f"must be <= {high - low + 1} (the ports {low}..{high} "
                                  f"probed at random), got {cfg.birthday_probes}")


@check("netsprint.p2p.session.SessionConfig")
def _session_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    if cfg.relay_bind_interval >= cfg.relay_timeout:
        yield ("relay_bind_interval", f"must be < relay_timeout ({cfg.relay_timeout:g} s), "
                                      f"got {cfg.relay_bind_interval:g}: no RELAY_BIND "
                                      "would ever be retransmitted")


@check("netsprint.p2p.channel.ChannelConfig")
def _channel_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    # Only runs while a ChannelConfig is loaded, so the channel module is there already.
    from netsprint.p2p.channel import (MAX_SEGMENT_PAYLOAD_BYTES, MAX_WINDOW_SEGMENTS,
                                       SEGMENT_HEADER_BYTES)
    if cfg.segment_bytes > MAX_SEGMENT_PAYLOAD_BYTES:
        yield ("segment_bytes", f"must be <= {MAX_SEGMENT_PAYLOAD_BYTES}, got "
                                f"{cfg.segment_bytes}: a DATA packet is at most "
                                f"{MAX_PACKET_BYTES} bytes with the {HEADER_BYTES}-byte "
                                f"packet and {SEGMENT_HEADER_BYTES}-byte segment headers")
    if cfg.receive_window_segments > MAX_WINDOW_SEGMENTS:
        yield ("receive_window_segments", f"must be <= {MAX_WINDOW_SEGMENTS} (the window field "
                                          f"on the wire), got {cfg.receive_window_segments}")
    if not cfg.rto_min <= cfg.rto_initial <= cfg.rto_max:
        yield ("rto_initial", f"must lie in rto_min..rto_max ({cfg.rto_min:g}..{cfg.rto_max:g}"
                              f" s), got {cfg.rto_initial:g}")


@check("netsprint.p2p.relay.RelayLimits")
def _relay_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    if cfg.burst_bytes < MAX_PACKET_BYTES:
        yield ("burst_bytes", f"must be >= {MAX_PACKET_BYTES} (the largest packet), got "
                              f"{cfg.burst_bytes}: a full-size packet would never pass "
                              "the token bucket")
    if cfg.max_allocations_per_peer > cfg.max_allocations:
        yield ("max_allocations_per_peer", f"must be <= max_allocations "
                                           f"({cfg.max_allocations}), got "
                                           f"{cfg.max_allocations_per_peer}")
    if cfg.idle_timeout > cfg.lifetime:
        yield ("idle_timeout", f"must be <= lifetime ({cfg.lifetime:g} s), "
                               f"got {cfg.idle_timeout:g}")


@check("netsprint.log.LogConfig")
def _log_rules(cfg: Any) -> Iterator[tuple[str, str]]:
    levels = logging.getLevelNamesMapping()
    if cfg.level.upper() not in levels:
        yield ("level", f"unknown level {cfg.level!r}{_did_you_mean(cfg.level.upper(), levels)}")


def _relay_keepalive_rule(config: Any) -> Iterator[tuple[str, str]]:
    keepalive, idle = config.p2p.heartbeat.keepalive_interval, config.relay.idle_timeout
    if keepalive >= idle:
        yield ("p2p.heartbeat.keepalive_interval",
               f"must be < relay.idle_timeout ({idle:g} s), got {keepalive:g}: the relay "
               "frees an allocation that stays idle that long")


# Rules spanning sections: functions of the whole Config returning (key path, reason).
CONFIG_CHECKS: list[Check] = [_relay_keepalive_rule]


def _origin(origins: Mapping[str, str], key: str, fallback: str = DEFAULTS) -> str:
    """Where the value at `key` (or, for a section, any value inside it) came from."""
    if key in origins:
        return origins[key]
    inside = [source for leaf, source in origins.items() if leaf.startswith(key + ".")]
    return inside[0] if inside else fallback


def _run_rules(cls: type, view: Any, path: tuple[str, ...], origins: Mapping[str, str]) -> None:
    for rule in CHECKS.get(_qualified_name(cls), []):
        for name, reason in rule(view):
            key = ".".join((*path, name))
            # A rule broken by a default blames the file that changed its partner.
            source = _origin(origins, key, _origin(origins, ".".join(path)))
            raise ConfigError(source, key, reason)


# --- the entry points ----------------------------------------------------------------------------

def _load(path: str | Path | None, env: Mapping[str, str],
          sections: Mapping[str, type]) -> tuple[dict[str, Any], dict[str, str]]:
    origins: dict[str, str] = {}  # leaf key path -> file or $VARIABLE that set it
    changes = _file_changes(read_file(path), sections, str(path), origins) if path else {}
    _env_changes(env, sections, changes, origins)
    built = {section: _apply(cls(), changes.get(section, {}), origins, (section,),
                             str(path or DEFAULTS))
             for section, cls in sections.items()}
    return built, origins


def load_sections(path: str | Path | None, env: Mapping[str, str],
                  sections: Mapping[str, type]) -> dict[str, Any]:
    """Each section's dataclass, from defaults, the file at `path` and `env`, validated.

    The generic loader under `load_config` (tests give it their own dataclasses).
    """
    return _load(path, env, sections)[0]


def load_config(path: str | Path | None = None,
                env: Mapping[str, str] = os.environ) -> Config:
    """The config: defaults, then the file (`path`, else `$NETSPRINT_CONFIG`, else none),
    then `NETSPRINT_<SECTION>_<KEY>` variables; ConfigError if anything is wrong."""
    if path is None and env.get(CONFIG_ENV):
        path = env[CONFIG_ENV]
    built, origins = _load(path, env, section_types())
    config = Config(**built)
    for rule in CONFIG_CHECKS:
        for key, reason in rule(config):
            anywhere = next(iter(origins.values()), DEFAULTS)
            raise ConfigError(_origin(origins, key, anywhere), key, reason)
    return config


# --- writing an example --------------------------------------------------------------------------

# What each key means, for the annotated example (a field's own `metadata["doc"]` wins).
FIELD_DOCS: dict[str, str] = {
    "p2p.signaling_timeout": "Signaling -> Failed when the peer has not answered the offer",
    "p2p.relay_timeout": "Fallback -> Failed without RELAY_BOUND from the relay",
    "p2p.relay_bind_interval": "RELAY_BIND retransmission interval",
    "p2p.punch.probe_interval": "first PROBE retry after this long ...",
    "p2p.punch.probe_backoff": "... the interval multiplied by this after each retry ...",
    "p2p.punch.probe_interval_max": "... and capped here",
    "p2p.punch.punch_timeout": "Probing -> Fallback (relay) after this long without an ack",
    "p2p.punch.birthday": "birthday-paradox mode against one symmetric NAT",
    "p2p.punch.birthday_sockets": "probe sockets the symmetric side opens",
    "p2p.punch.birthday_probes": "random-port probes the other side sends at most",
    "p2p.punch.birthday_rate": "those probes per second",
    "p2p.punch.birthday_ports": "[low, high]: the port range those probes aim at",
    "p2p.heartbeat.keepalive_interval": "KEEPALIVE after this long without sending "
                                        "(< 30 s, the conntrack UDP timeout)",
    "p2p.heartbeat.dead_after": "path dead after this long without receiving (> keepalive)",
    "channel.segment_bytes": "payload bytes per DATA packet (fits the 1200-byte packet)",
    "channel.window_segments": "segments in flight at most (sender)",
    "channel.receive_window_segments": "receive buffer in segments, advertised (flow control)",
    "channel.send_buffer_bytes": "bytes write() accepts before the sender is full",
    "channel.rto_initial": "retransmission timeout before the first RTT sample (RFC 6298)",
    "channel.rto_min": "lower bound of the retransmission timeout",
    "channel.rto_max": "upper bound of the retransmission timeout (backoff stops here)",
    "relay.max_allocations": "sessions relayed at once, server-wide",
    "relay.max_allocations_per_peer": "allocations one registered peer may hold",
    "relay.lifetime": "hard cap on one allocation's life",
    "relay.idle_timeout": "an allocation is freed after this long without a relayed packet",
    "relay.rate_bytes_per_second": "token bucket rate per allocation and direction",
    "relay.burst_bytes": "token bucket depth (>= 1200, the largest packet)",
    "log.level": "DEBUG, INFO, WARNING, ERROR or CRITICAL",
    "log.format": '"text" (rich, [conn] prefix) or "json" (one object per line)',
}


SECTION_DOCS: dict[str, str] = {
    "p2p": "One peer-to-peer session (netsprint.p2p.session): signaling and relay timers.",
    "p2p.punch": "UDP hole punching: the probe schedule and birthday-paradox mode.",
    "p2p.heartbeat": "Keepalives and dead-path detection on a connected or relayed path.",
    "channel": "The reliable channel over UDP: segment size, windows, retransmission timer.",
    "relay": "The signaling server's UDP relay: what it grants at most.",
    "log": "Logging: level and format (text for people, json for tools).",
}


def _own_doc(cls: type) -> str:
    """The first line of a class docstring, unless it is the one dataclass generated."""
    doc = (cls.__doc__ or "").strip()
    return "" if doc.startswith(f"{cls.__name__}(") else doc.splitlines()[0] if doc else ""


def _doc(field: dataclasses.Field, key: str) -> str:
    return field.metadata.get("doc") or FIELD_DOCS.get(key, "")


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)  # repr(2.0) == "2.0": TOML keeps it a float
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {value!r} as TOML")


def _toml_table(instance: Any, path: tuple[str, ...], out: list[str]) -> None:
    heading = SECTION_DOCS.get(".".join(path)) or _own_doc(type(instance))
    out += ["", f"# {heading}"] if heading else [""]
    out.append(f"[{'.'.join(path)}]")
    nested = []
    for field in dataclasses.fields(instance):
        value, key = getattr(instance, field.name), ".".join((*path, field.name))
        if dataclasses.is_dataclass(value):
            nested.append((field.name, value))
            continue
        if value is None:  # TOML has no null: leave the default in place, commented out
            out.append(f"# {field.name} =   # unset")
            continue
        comment = _doc(field, key)
        line = f"{field.name} = {_toml_value(value)}"
        out.append(f"{line:<32} # {comment}" if comment else line)
    # Keys of a table come before its sub-tables in TOML.
    for name, value in nested:
        _toml_table(value, (*path, name), out)


def dump_config(config: Config | None = None, fmt: str = "toml") -> str:
    """A complete config file holding `config` (default: the defaults), every key written.

    TOML carries a comment per key; JSON cannot hold comments (docs/config.md lists them).
    `load_config` reads either back to an equal Config.
    """
    config = config if config is not None else Config()
    if fmt == "json":
        return json.dumps(dataclasses.asdict(config), indent=2) + "\n"
    if fmt != "toml":
        raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
    out = ["# netsprint config (TOML). Every key is optional; shown are the defaults.",
           "# Environment variables override the file: NETSPRINT_<SECTION>_<KEY>, e.g.",
           "# NETSPRINT_P2P_PUNCH_PUNCH_TIMEOUT=2.5; NETSPRINT_CONFIG=path picks the file."]
    for field in dataclasses.fields(config):
        _toml_table(getattr(config, field.name), (field.name,), out)
    return "\n".join(out) + "\n"


def reference_rows() -> list[tuple[str, Any, str, str]]:
    """(key path, default, environment variable, meaning) of every key: the docs' table."""
    rows = []
    for section, cls in section_types().items():
        rows += _reference(cls(), (section,))
    return rows


def _reference(instance: Any, path: tuple[str, ...]) -> list[tuple[str, Any, str, str]]:
    rows = []
    for field in dataclasses.fields(instance):
        value, key_path = getattr(instance, field.name), (*path, field.name)
        if dataclasses.is_dataclass(value):
            rows += _reference(value, key_path)
        else:
            key = ".".join(key_path)
            rows.append((key, value, env_name(key_path), _doc(field, key)))
    return rows
