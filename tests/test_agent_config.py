"""The agent's YAML config: defaults, every key, and an error naming the key for each way a
file can be wrong; the command line's --listen override and its exit status 2."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from netsprint.agent import runner
from netsprint.agent.config import (AgentConfig, PodsConfig, config_from_mapping,
                                    load_agent_config, parse_listen)
from netsprint.config import ConfigError
from netsprint.ebpf.loader import BpfLoadError

pytestmark = pytest.mark.unit

DOCS = Path(__file__).resolve().parent.parent / "docs" / "agent.md"

FULL = """\
listen: 0.0.0.0:9500
collect_interval: 15
max_series: 200
peer_label: workload
raw_ips: true
max_flows: 4096
max_sockets: 8192
log_level: debug
pods:
  source: lab
  file: /run/netsprint/pods-pn1.json
"""


def write(tmp_path: Path, text: str, name: str = "agent.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_every_key(tmp_path):
    config = load_agent_config(write(tmp_path, FULL))
    assert config == AgentConfig(listen="0.0.0.0:9500", collect_interval=15.0, max_series=200,
                                 peer_label="workload", raw_ips=True, max_flows=4096,
                                 max_sockets=8192, log_level="debug",
                                 pods=PodsConfig("lab", "/run/netsprint/pods-pn1.json"))
    assert isinstance(config.collect_interval, float)
    assert config.listen_address == ("0.0.0.0", 9500)


def test_no_file_and_an_empty_file_give_the_defaults(tmp_path):
    assert load_agent_config(None) == AgentConfig()
    assert load_agent_config(write(tmp_path, "# nothing set\n")) == AgentConfig()
    assert AgentConfig().collect_interval == 0 and AgentConfig().pods.source == "none"


@pytest.mark.parametrize("data, key, reason", [
    ({"max_seris": 10}, "max_seris", "unknown key (did you mean 'max_series'?)"),
    ({"pods": {"sorce": "lab"}}, "pods.sorce", "did you mean 'source'?"),
    ({"max_series": True}, "max_series", "expected an integer, got a boolean True"),
    ({"max_series": 2.5}, "max_series", "expected an integer, got a number 2.5"),
    ({"max_series": 0}, "max_series", "expected an integer in 1..1000000, got 0"),
    ({"collect_interval": -1}, "collect_interval", "in 0..3600"),
    ({"collect_interval": "5s"}, "collect_interval", "expected a number, got a string '5s'"),
    ({"collect_interval": float("nan")}, "collect_interval", "in 0..3600"),
    ({"raw_ips": "yes"}, "raw_ips", "expected true or false"),
    ({"peer_label": "ip"}, "peer_label", "expected one of pod, workload, none"),
    ({"peer_label": "pods"}, "peer_label", "did you mean 'pod'?"),
    ({"pods": {"source": "k8s"}}, "pods.source", "one of none, lab, kubernetes"),
    ({"pods": "lab"}, "pods", "expected a mapping, got a string 'lab'"),
    ({"pods": {"source": "lab"}}, "pods.file", "required when pods.source is lab"),
    ({"log_level": "loud"}, "log_level", "DEBUG, INFO, WARNING, ERROR or CRITICAL"),
    ({"max_flows": 10**9}, "max_flows", "1..4194304"),
    ({"listen": "9435"}, "listen", "expected HOST:PORT"),
    ({"listen": "::1:9435"}, "listen", "in brackets"),
    ({"listen": "[nonsense]:9435"}, "listen", "not an IPv6 address"),
    ({"listen": "127.0.0.1:70000"}, "listen", "port 0..65535"),
])
def test_errors_name_the_key_and_what_is_allowed(data, key, reason):
    with pytest.raises(ConfigError) as caught:
        config_from_mapping(data, "agent.yaml")
    assert caught.value.key == key and caught.value.source == "agent.yaml"
    assert reason in caught.value.reason
    assert isinstance(caught.value, ValueError)


def test_invalid_yaml_gives_the_position(tmp_path):
    path = write(tmp_path, "listen: 127.0.0.1:9435\nmax_series: [1\n")
    with pytest.raises(ConfigError, match="invalid YAML") as caught:
        load_agent_config(path)
    assert caught.value.line == 3 and caught.value.source == str(path)


def test_the_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping of keys, got a list"):
        load_agent_config(write(tmp_path, "- listen\n"))


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read: No such file"):
        load_agent_config(tmp_path / "absent.yaml")


def test_ipv6_listen():
    assert parse_listen("[::1]:9435") == ("::1", 9435)


def args(config: Path | None = None, listen: str | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    runner.add_arguments(parser)
    argv = ([f"--config={config}"] if config else []) + ([f"--listen={listen}"] if listen else [])
    return parser.parse_args(argv)


def test_listen_on_the_command_line_overrides_the_file(tmp_path):
    path = write(tmp_path, FULL)
    assert runner.load_config_for(args(path)).listen == "0.0.0.0:9500"
    overridden = runner.load_config_for(args(path, "127.0.0.1:9600"))
    assert overridden.listen == "127.0.0.1:9600" and overridden.max_series == 200
    with pytest.raises(ConfigError, match="--listen: listen: expected HOST:PORT"):
        runner.load_config_for(args(path, "nowhere"))


def test_main_prints_a_config_error_in_one_line_and_exits_2(tmp_path, capsys):
    path = write(tmp_path, "max_series: lots\n")
    assert runner.main([f"--config={path}"]) == 2
    err = capsys.readouterr().err
    assert err == f"netsprint agent: {path}: max_series: expected an integer, got a string " \
                  "'lots'\n"


def test_main_shows_the_hint_when_bpf_is_unavailable(monkeypatch, capsys):
    def no_bpf(config):
        raise BpfLoadError("cannot load BPF programs: not root", hint="run it with sudo")

    monkeypatch.setattr(runner, "build_probes", no_bpf)
    assert runner.main(["--listen=127.0.0.1:0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("netsprint agent: cannot load BPF programs: not root")
    assert "what to do: run it with sudo" in err


def test_the_example_in_the_docs_is_a_valid_config(tmp_path):
    blocks = re.findall(r"```yaml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks, "docs/agent.md has no yaml example"
    for block in blocks:
        load_agent_config(write(tmp_path, block))  # raises ConfigError if the docs drifted


def test_the_config_reference_in_the_docs_lists_every_key():
    text = DOCS.read_text(encoding="utf-8")
    keys = [name for name in AgentConfig.__dataclass_fields__ if name != "pods"]
    keys += [f"pods.{name}" for name in PodsConfig.__dataclass_fields__]
    assert [key for key in keys if f"| `{key}` |" not in text] == []
