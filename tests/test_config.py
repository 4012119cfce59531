"""The config file loader: formats, types, env overrides, errors, and the real sections.

The generic tests use small dataclasses of their own, so they exercise the loader, not the
defaults of the p2p modules; the tests at the end load the real registry.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Literal

import pytest

from netsprint import config as cfgmod
from netsprint.config import (CHECKS, Config, ConfigError, dump_config, env_names, load_config,
                              load_sections, reference_rows)
from netsprint.errors import NetsprintError

pytestmark = pytest.mark.unit


@dataclasses.dataclass(frozen=True)
class Inner:
    timeout: float = 3.0
    retries: int = 4
    enabled: bool = False


@dataclasses.dataclass(frozen=True)
class Demo:
    name: str = "demo"
    interval: float = 0.5
    mode: Literal["fast", "slow"] = "fast"
    ports: tuple[int, int] = (1, 2)
    sizes: tuple[float, ...] = ()
    inner: Inner = Inner()


@dataclasses.dataclass(frozen=True)
class Other:
    size_bytes: int = 1024


@dataclasses.dataclass(frozen=True)
class Picky:
    low: float = 1.0
    high: float = 2.0

    def __post_init__(self) -> None:
        if self.low == self.high:
            raise ValueError("low and high must differ")


SECTIONS = {"demo": Demo, "other": Other}


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load(path=None, env=None, sections=SECTIONS):
    return load_sections(path, env or {}, sections)


# --- formats and defaults -----------------------------------------------------------------------

def test_no_file_and_no_env_gives_the_defaults():
    assert load() == {"demo": Demo(), "other": Other()}


def test_toml_and_json_files_say_the_same(tmp_path):
    toml = write(tmp_path, "c.toml", 'demo.name = "x"\n[demo.inner]\ntimeout = 7\nenabled = true\n'
                                     "[other]\nsize_bytes = 9\n")
    as_json = write(tmp_path, "c.json", json.dumps(
        {"demo": {"name": "x", "inner": {"timeout": 7, "enabled": True}},
         "other": {"size_bytes": 9}}))
    want = {"demo": Demo(name="x", inner=Inner(timeout=7.0, enabled=True)), "other": Other(9)}
    assert load(toml) == want == load(as_json)
    # An int is accepted for a float field and becomes a float.
    assert type(load(toml)["demo"].inner.timeout) is float


def test_a_section_may_be_left_out_and_keys_keep_their_defaults(tmp_path):
    path = write(tmp_path, "c.toml", "[demo.inner]\nretries = 9\n")
    got = load(path)
    assert got["demo"] == Demo(inner=Inner(retries=9)) and got["other"] == Other()


def test_unknown_suffix_and_missing_file_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"\.yaml.*\.toml or \.json"):
        load(write(tmp_path, "c.yaml", "demo: {}"))
    with pytest.raises(ConfigError, match="cannot read") as caught:
        load(tmp_path / "absent.toml")
    assert str(tmp_path / "absent.toml") in str(caught.value)


def test_config_error_is_a_netsprint_error_and_a_value_error(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "c.json", "[]"))
    assert isinstance(caught.value, NetsprintError) and isinstance(caught.value, ValueError)
    assert "top level must be a table" in caught.value.reason


# --- malformed files: the parser's position ---------------------------------------------------

@pytest.mark.parametrize("name, text, line, column", [
    ("c.toml", '[demo]\nname = "ok"\ninterval = = 2\n', 3, 12),
    ("c.json", '{\n  "demo": {\n    "interval": 0.5,\n  }\n}\n', 4, 3),
])
def test_malformed_file_reports_line_and_column(tmp_path, name, text, line, column):
    path = write(tmp_path, name, text)
    with pytest.raises(ConfigError) as caught:
        load(path)
    error = caught.value
    assert (error.line, error.column) == (line, column)
    assert str(error).startswith(f"{path}:{line}:{column}: invalid ")


# --- unknown names -------------------------------------------------------------------------------

def test_unknown_section_suggests_the_close_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "c.toml", "[dmeo]\nname = 'x'\n"))
    assert caught.value.key == "dmeo"
    assert "unknown section (did you mean 'demo'?)" in caught.value.reason


def test_unknown_nested_key_names_its_full_path(tmp_path):
    path = write(tmp_path, "c.toml", "[demo.inner]\ntimout = 2\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value).startswith(f"{path}: demo.inner.timout: unknown key "
                                         "(did you mean 'timeout'?)")


def test_unknown_key_far_from_anything_gets_no_suggestion(tmp_path):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "c.json", '{"other": {"zzzz": 1}}'))
    assert "did you mean" not in caught.value.reason and "size_bytes" in caught.value.reason


def test_a_scalar_where_a_table_belongs_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"demo\.inner: expected a table, got an integer 3"):
        load(write(tmp_path, "c.json", '{"demo": {"inner": 3}}'))


# --- types and ranges ----------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, expected", [
    ("demo.inner.retries", "true", "expected an integer, got a boolean True"),
    ("demo.inner.retries", "2.0", "expected an integer, got a float 2.0"),
    ("demo.interval", "false", "expected a number, got a boolean False"),
    ("demo.interval", '"0.5"', "expected a number, got a string '0.5'"),
    ("demo.inner.enabled", "1", "expected true or false, got an integer 1"),
    ("demo.name", "3", "expected a string, got an integer 3"),
    ("demo.mode", '"medium"', "expected one of 'fast', 'slow', got a string 'medium'"),
    ("demo.interval", "[1]", "expected a number, got an array"),
])
def test_wrong_types_are_refused_with_what_was_expected(tmp_path, key, value, expected):
    *tables, leaf = key.split(".")
    path = write(tmp_path, "c.toml", f"[{'.'.join(tables)}]\n{leaf} = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert (caught.value.source, caught.value.key, caught.value.reason) == (str(path), key,
                                                                           expected)


@pytest.mark.parametrize("text, reason", [
    ('{"demo": {"interval": 0}}', "must be > 0, got 0"),
    ('{"demo": {"interval": -0.5}}', "must be > 0, got -0.5"),
    ('{"other": {"size_bytes": -1}}', "must be > 0, got -1"),
    ('{"demo": {"interval": NaN}}', "must be a finite number, got nan"),
    ('{"demo": {"inner": {"timeout": Infinity}}}', "must be a finite number, got inf"),
])
def test_durations_and_sizes_must_be_positive_and_finite(tmp_path, text, reason):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "c.json", text))
    assert caught.value.reason == reason


def test_tuples_come_from_arrays(tmp_path):
    demo = load(write(tmp_path, "c.toml", "[demo]\nports = [5, 6]\nsizes = [1, 2.5, 3]\n"))["demo"]
    assert demo.ports == (5, 6) and demo.sizes == (1.0, 2.5, 3.0)
    env = {"NETSPRINT_DEMO_PORTS": "7, 8", "NETSPRINT_DEMO_SIZES": "0.5"}
    assert (load(env=env)["demo"].ports, load(env=env)["demo"].sizes) == ((7, 8), (0.5,))


@pytest.mark.parametrize("text, key, reason", [
    ("ports = [5]", "demo.ports",
     "expected an array of 2 items (an integer, an integer), got 1 items"),
    ("ports = [5, true]", "demo.ports[1]", "expected an integer, got a boolean True"),
    ("sizes = [1, -2]", "demo.sizes[1]", "must be > 0, got -2"),
    ("sizes = 3", "demo.sizes", "expected an array of a number, got an integer 3"),
])
def test_bad_arrays_name_the_item(tmp_path, text, key, reason):
    with pytest.raises(ConfigError) as caught:
        load(write(tmp_path, "c.toml", f"[demo]\n{text}\n"))
    assert (caught.value.key, caught.value.reason) == (key, reason)


def test_literal_field_accepts_its_values(tmp_path):
    assert load(write(tmp_path, "c.toml", "[demo]\nmode = 'slow'\n"))["demo"].mode == "slow"


# --- environment overrides -----------------------------------------------------------------------

def test_env_names_are_derived_from_the_key_paths():
    names = env_names(SECTIONS)
    assert names["NETSPRINT_DEMO_INNER_TIMEOUT"] == ("demo", "inner", "timeout")
    assert names["NETSPRINT_OTHER_SIZE_BYTES"] == ("other", "size_bytes")
    assert len(names) == 9  # name, interval, mode, ports, sizes, 3 inner keys, size_bytes


def test_env_beats_file_beats_defaults(tmp_path):
    path = write(tmp_path, "c.toml", "[demo]\ninterval = 2\nname = 'file'\n")
    env = {"NETSPRINT_DEMO_INTERVAL": "4.5", "NETSPRINT_DEMO_INNER_RETRIES": "12"}
    demo = load(path, env)["demo"]
    assert (demo.interval, demo.name, demo.inner.retries, demo.inner.timeout) == (4.5, "file",
                                                                                 12, 3.0)


@pytest.mark.parametrize("word, value", [("1", True), ("0", False), ("true", True),
                                         ("False", False), ("YES", True), ("no", False)])
def test_env_booleans(word, value):
    assert load(env={"NETSPRINT_DEMO_INNER_ENABLED": word})["demo"].inner.enabled is value


@pytest.mark.parametrize("name, text, reason", [
    ("NETSPRINT_DEMO_INNER_ENABLED", "maybe", "expected 1/0/true/false/yes/no, got 'maybe'"),
    ("NETSPRINT_DEMO_INNER_RETRIES", "2.5", "expected an integer, got '2.5'"),
    ("NETSPRINT_DEMO_INTERVAL", "soon", "expected a number, got 'soon'"),
    ("NETSPRINT_DEMO_INTERVAL", "0", "must be > 0, got 0.0"),
    ("NETSPRINT_DEMO_MODE", "warp", "expected one of 'fast', 'slow', got a string 'warp'"),
])
def test_bad_env_values_name_the_variable(name, text, reason):
    with pytest.raises(ConfigError) as caught:
        load(env={name: text})
    assert caught.value.source == f"${name}" and caught.value.reason == reason


def test_misspelt_env_variable_of_a_section_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError) as caught:
        load(env={"NETSPRINT_DEMO_INNER_TIMOUT": "2"})
    assert "did you mean 'NETSPRINT_DEMO_INNER_TIMEOUT'?" in str(caught.value)


def test_other_netsprint_variables_are_left_alone():
    env = {"NETSPRINT_REQUIRE_ALL": "1", "NETSPRINT_VENV": "/x", "HOME": "/root"}
    assert load(env=env) == load()


def test_colliding_env_names_are_a_programming_error():
    @dataclasses.dataclass(frozen=True)
    class Clash:
        inner_timeout: float = 1.0
        inner: Inner = Inner()

    with pytest.raises(TypeError, match="NETSPRINT_C_INNER_TIMEOUT"):
        env_names({"c": Clash})


# --- cross-field rules ---------------------------------------------------------------------------

def test_a_registered_rule_names_the_key_and_the_file(tmp_path, monkeypatch):
    def timeout_over_interval(inner):
        if inner.timeout <= 1.0:
            yield "timeout", f"must be > 1 s, got {inner.timeout:g}"

    monkeypatch.setitem(CHECKS, f"{__name__}.Inner", [timeout_over_interval])
    path = write(tmp_path, "c.toml", "[demo.inner]\ntimeout = 0.5\n")
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert str(caught.value) == f"{path}: demo.inner.timeout: must be > 1 s, got 0.5"
    # Set from the environment instead: the variable is named.
    with pytest.raises(ConfigError) as caught:
        load(env={"NETSPRINT_DEMO_INNER_TIMEOUT": "0.25"})
    assert caught.value.source == "$NETSPRINT_DEMO_INNER_TIMEOUT"


def test_the_dataclass_own_refusal_becomes_a_config_error(tmp_path):
    path = write(tmp_path, "c.json", '{"p": {"low": 2.0}}')
    with pytest.raises(ConfigError) as caught:
        load(path, sections={"p": Picky})
    assert (caught.value.source, caught.value.key) == (str(path), "p")
    assert "low and high must differ" in caught.value.reason


# --- the real sections (the p2p modules' dataclasses) --------------------------------------------

@pytest.fixture
def real_sections():
    """The real registry (importing every section's module: one missing is a failure)."""
    return cfgmod.section_types()


def test_registry_and_config_fields_agree(real_sections):
    assert [f.name for f in dataclasses.fields(Config)] == list(cfgmod.SECTIONS)
    assert {name: dataclasses.is_dataclass(cls) for name, cls in real_sections.items()} == {
        name: True for name in cfgmod.SECTIONS}


def test_defaults_load_and_pass_every_rule(real_sections):
    assert load_config(None, env={}) == Config()


@pytest.mark.parametrize("fmt, suffix", [("toml", ".toml"), ("json", ".json")])
def test_dump_round_trips(real_sections, tmp_path, fmt, suffix):
    changed = dataclasses.replace(
        Config(), log=dataclasses.replace(Config().log, level="DEBUG", format="json"),
        p2p=dataclasses.replace(Config().p2p, punch=dataclasses.replace(
            Config().p2p.punch, birthday=True, punch_timeout=4.5)))
    path = write(tmp_path, f"example{suffix}", dump_config(changed, fmt))
    assert load_config(path, env={}) == changed


def test_toml_example_names_every_key_with_a_comment(real_sections):
    text = dump_config(fmt="toml")
    for key, _default, _env, doc in reference_rows():
        leaf = key.rsplit(".", 1)[1]
        line = next((ln for ln in text.splitlines() if ln.startswith(f"{leaf} =")), None)
        assert line is not None, f"{key} missing from the example"
        assert doc, f"{key} has no explanation in FIELD_DOCS"
    assert "[p2p.punch]" in text and "[p2p.heartbeat]" in text


def test_nested_env_override_reaches_the_punch_config(real_sections, tmp_path):
    path = write(tmp_path, "c.json", '{"relay": {"max_allocations": 10}}')
    env = {"NETSPRINT_P2P_PUNCH_PUNCH_TIMEOUT": "2.5", "NETSPRINT_CONFIG": str(path),
           "NETSPRINT_LOG_FORMAT": "json", "NETSPRINT_P2P_PUNCH_BIRTHDAY": "yes"}
    config = load_config(env=env)
    assert config.p2p.punch.punch_timeout == 2.5 and config.p2p.punch.birthday is True
    assert config.relay.max_allocations == 10 and config.log.format == "json"


@pytest.mark.parametrize("text, key, words", [
    ("[p2p.heartbeat]\nkeepalive_interval = 30\ndead_after = 90\n",
     "p2p.heartbeat.keepalive_interval", ["30 s", "conntrack"]),
    ("[p2p.heartbeat]\nkeepalive_interval = 5\n", "p2p.heartbeat.dead_after",
     ["greater than keepalive_interval (5 s)"]),
    ("[p2p.punch]\nprobe_interval = 0.5\n", "p2p.punch.probe_interval",
     ["<= probe_interval_max (0.4 s)"]),
    ("[p2p.punch]\npunch_timeout = 0.3\n", "p2p.punch.probe_interval_max",
     ["< punch_timeout (0.3 s)"]),
    ("[relay]\nburst_bytes = 1000\n", "relay.burst_bytes", [">= 1200"]),
    ("[relay]\nmax_allocations = 2\n", "relay.max_allocations_per_peer", ["<= max_allocations"]),
    ("[channel]\nsegment_bytes = 1190\n", "channel.segment_bytes", ["segment header", "1200"]),
    ("[p2p.punch]\nbirthday_ports = [2000, 1999]\n", "p2p.punch.birthday_ports",
     ["port range"]),
    ("[p2p.punch]\nbirthday_ports = [60000, 60099]\n", "p2p.punch.birthday_probes",
     ["<= 100"]),
    ("[p2p]\nrelay_bind_interval = 6.0\n", "p2p.relay_bind_interval",
     ["< relay_timeout (5 s)"]),
    ("[channel]\nrto_initial = 5.0\n", "channel.rto_initial", ["rto_min..rto_max"]),
    ("[log]\nlevel = 'VERBOSE'\n", "log.level", ["unknown level 'VERBOSE'"]),
    ("[log]\nlevel = 'DEBGU'\n", "log.level", ["did you mean 'DEBUG'?"]),
    ("[log]\nformat = 'xml'\n", "log.format", ["'text', 'json'"]),
    ("[relay]\nidle_timeout = 1.0\nlifetime = 600.0\n", "p2p.heartbeat.keepalive_interval",
     ["relay.idle_timeout (1 s)"]),
])
def test_cross_field_rules_of_the_real_sections(real_sections, tmp_path, text, key, words):
    path = write(tmp_path, "c.toml", text)
    with pytest.raises(ConfigError) as caught:
        load_config(path, env={})
    assert caught.value.key == key
    # The file is named even when the key blamed kept its default.
    assert caught.value.source == str(path)
    for word in words:
        assert word in caught.value.reason


def test_docs_example_is_the_dumped_default(real_sections):
    docs = (Path(__file__).resolve().parents[1] / "docs" / "config.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", docs, re.S)
    assert dump_config(fmt="toml") in blocks, "docs/config.md: regenerate the TOML example"
    json_blocks = [json.loads(b) for b in re.findall(r"```json\n(.*?)```", docs, re.S)]
    assert json.loads(dump_config(fmt="json")) in json_blocks
    for key, default, env, doc in reference_rows():
        row = f"| `{key}` | `{cfgmod._toml_value(default)}` | `{env}` | {doc} |"
        assert row in docs, f"docs/config.md: the row of {key} should read: {row}"


def test_cli_prints_an_example_that_loads_back_and_refuses_a_bad_file(tmp_path, capsys):
    from netsprint.cli import main

    assert main(["config", "--example"]) == 0
    example = tmp_path / "example.toml"
    example.write_text(capsys.readouterr().out)
    assert load_config(example, env={}) == Config()
    bad = tmp_path / "bad.toml"
    bad.write_text("[p2p.heartbeat]\nkeepalive_interval = 40\n")
    assert main(["config", str(bad)]) == 2
    assert "p2p.heartbeat.keepalive_interval" in capsys.readouterr().err
