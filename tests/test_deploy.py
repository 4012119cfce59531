"""deploy/: the image, the DaemonSet, Prometheus config and alerts, the Grafana dashboard.

Manifests are validated against Kubernetes 1.31's schema (kubernetes-validate, strict), the
Prometheus files by promtool (`check config`, `check rules`, `test rules`), the dashboard by
regenerating it and by reading every metric name out of its PromQL. The Dockerfile is only
parsed: no container runtime runs here, so the image is never built by these tests.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from conftest import needs_tool
from netsprint.agent import dashboard as dash
from netsprint.agent.config import DEFAULT_LISTEN, load_agent_config, parse_listen

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S_VERSION = "1.31"


def manifests() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "daemonset.yaml").read_text()) if doc]


def manifest(kind: str) -> dict:
    (found,) = [doc for doc in manifests() if doc["kind"] == kind]
    return found


def agent_container() -> dict:
    (container,) = manifest("DaemonSet")["spec"]["template"]["spec"]["containers"]
    return container


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


# --- Kubernetes manifests -------------------------------------------------------------------

def k8s_errors(doc: dict) -> str | None:
    # A dev dependency (pyproject's dev extra): missing, these tests fail rather than skip.
    import kubernetes_validate

    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return str(exc).splitlines()[0]
    return None


@pytest.mark.unit
@pytest.mark.parametrize("kind", ["Namespace", "ServiceAccount", "ClusterRole",
                                  "ClusterRoleBinding", "ConfigMap", "DaemonSet"])
def test_every_manifest_validates_against_kubernetes(kind):
    assert k8s_errors(manifest(kind)) is None


def _misspelt_capabilities(ds):
    sc = ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    sc["capabilitiez"] = sc.pop("capabilities")


def _port_as_text(ds):
    ds["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "metrics"


def _no_selector(ds):
    del ds["spec"]["selector"]


def _unknown_top_level_field(ds):
    ds["spec"]["replicas"] = 3  # a DaemonSet has no replicas


@pytest.mark.unit
@pytest.mark.parametrize("break_it", [_misspelt_capabilities, _port_as_text, _no_selector,
                                      _unknown_top_level_field])
def test_the_validation_refuses_a_broken_daemonset(break_it):
    broken = copy.deepcopy(manifest("DaemonSet"))
    break_it(broken)
    assert k8s_errors(broken) is not None


@pytest.mark.unit
def test_the_pod_runs_with_named_capabilities_not_privileged():
    pod = manifest("DaemonSet")["spec"]["template"]["spec"]
    security = agent_container()["securityContext"]
    assert security["privileged"] is False and security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(security["capabilities"]["add"]) == {"BPF", "PERFMON"}
    assert security["readOnlyRootFilesystem"] is True
    assert security["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["hostNetwork"] is True and pod["hostPID"] is False


@pytest.mark.unit
def test_host_mounts_are_read_only():
    volumes = {v["name"]: v for v in manifest("DaemonSet")["spec"]["template"]["spec"]["volumes"]}
    host_paths = {v["hostPath"]["path"] for v in volumes.values() if "hostPath" in v}
    assert host_paths == {"/sys/kernel/tracing", "/lib/modules", "/usr/src", "/sys/fs/cgroup"}
    for mount in agent_container()["volumeMounts"]:
        if "hostPath" in volumes[mount["name"]]:
            assert mount.get("readOnly") is True, mount
    writable = [m["mountPath"] for m in agent_container()["volumeMounts"] if not m.get("readOnly")]
    assert writable == ["/tmp"] and "emptyDir" in volumes["tmp"]


@pytest.mark.unit
def test_probes_annotations_and_listen_port_agree():
    container = agent_container()
    (port,) = container["ports"]
    _, listen_port = parse_listen(load_agent_config(DEPLOY / "agent.yaml").listen)
    assert port["containerPort"] == port["hostPort"] == listen_port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    annotations = manifest("DaemonSet")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {"prometheus.io/scrape": "true",
                           "prometheus.io/port": str(listen_port),
                           "prometheus.io/path": "/metrics"}


@pytest.mark.unit
def test_resources_tolerations_and_updates():
    ds = manifest("DaemonSet")
    container = agent_container()
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    keys = {t["key"] for t in ds["spec"]["template"]["spec"]["tolerations"]}
    assert "node-role.kubernetes.io/control-plane" in keys
    assert ds["spec"]["updateStrategy"]["type"] == "RollingUpdate"
    account = manifest("ServiceAccount")["metadata"]["name"]
    assert ds["spec"]["template"]["spec"]["serviceAccountName"] == account


@pytest.mark.unit
def test_the_cluster_role_only_reads_pods():
    (rule,) = manifest("ClusterRole")["rules"]
    assert rule == {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}
    binding = manifest("ClusterRoleBinding")
    assert binding["roleRef"]["name"] == manifest("ClusterRole")["metadata"]["name"]
    (subject,) = binding["subjects"]
    assert subject["name"] == manifest("ServiceAccount")["metadata"]["name"]


@pytest.mark.unit
def test_the_config_map_holds_deploy_agent_yaml():
    in_map = yaml.safe_load(manifest("ConfigMap")["data"]["agent.yaml"])
    assert in_map == yaml.safe_load((DEPLOY / "agent.yaml").read_text())


@pytest.mark.unit
def test_deploy_agent_yaml_loads_through_the_agent_config():
    config = load_agent_config(DEPLOY / "agent.yaml")
    assert config.pods.source == "kubernetes"
    assert config.raw_ips is False
    host, _ = config.listen_address
    assert host == "0.0.0.0"  # hostNetwork: Prometheus scrapes the node's address


# --- the image ------------------------------------------------------------------------------

def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1])
            for line in lines if line and not line.startswith("#")]


@pytest.mark.unit
def test_dockerfile_base_and_packages():
    steps = dockerfile_instructions()
    assert steps[0] == ("FROM", "ubuntu:24.04")
    apt = " ".join(args for op, args in steps if op == "RUN" and "apt-get install" in args)
    assert "--no-install-recommends" in apt
    for package in ("python3-bpfcc", "bpfcc-tools", "python3-venv"):
        assert re.search(rf"(?<![\w-]){package}(?![\w-])", apt), package
    assert any("venv --system-site-packages" in args for op, args in steps if op == "RUN")


@pytest.mark.unit
def test_dockerfile_entrypoint_is_the_console_script_and_cmd_the_mounted_config():
    steps = dict((op, args) for op, args in dockerfile_instructions()
                 if op in ("ENTRYPOINT", "CMD"))
    entrypoint, cmd = json.loads(steps["ENTRYPOINT"]), json.loads(steps["CMD"])
    assert entrypoint == ["netsprint", "agent"]
    assert entrypoint[0] in pyproject()["project"]["scripts"]
    assert agent_container()["args"] == cmd
    (config_mount,) = [m for m in agent_container()["volumeMounts"] if m["name"] == "config"]
    assert Path(cmd[1]).parent == Path(config_mount["mountPath"])


@pytest.mark.unit
def test_the_image_tag_is_the_package_version():
    assert agent_container()["image"] == f"netsprint-agent:{pyproject()['project']['version']}"


@pytest.mark.unit
def test_every_copy_source_exists_and_is_in_the_build_context():
    kept = [line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.startswith("!")]
    for op, args in dockerfile_instructions():
        if op != "COPY":
            continue
        for source in args.split()[:-1]:
            assert (ROOT / source).exists(), source
            assert source.rstrip("/") in kept, f"{source} is excluded by .dockerignore"


def requirement_bounds(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, spec = re.match(r"([A-Za-z0-9._-]+)\s*(.*)", line).groups()
            out[re.sub(r"[-_.]+", "-", name).lower()] = spec.replace(" ", "")
    return out


@pytest.mark.unit
def test_agent_requirements_match_pyproject_bounds():
    project = pyproject()["project"]
    declared = requirement_bounds([*project["dependencies"],
                                   *sum(project["optional-dependencies"].values(), [])])
    image = requirement_bounds((DEPLOY / "requirements-agent.txt").read_text().splitlines())
    assert "pyyaml" in image
    differ = {name: (spec, declared[name]) for name, spec in image.items()
              if name in declared and declared[name] != spec}
    assert not differ, f"deploy/requirements-agent.txt vs pyproject.toml: {differ}"


# --- Prometheus -----------------------------------------------------------------------------

def promtool() -> str:
    return needs_tool("promtool", "prometheus")


def run_promtool(*args: str, cwd: Path = DEPLOY) -> subprocess.CompletedProcess:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=60)


def promtool_knows_kubernetes_sd(tmp_path: Path) -> bool:
    """Debian's prometheus is built without Kubernetes discovery (its build lacks the client
    libraries), so its promtool refuses the field; upstream builds have it."""
    probe = tmp_path / "probe.yml"
    probe.write_text("scrape_configs:\n  - job_name: x\n    kubernetes_sd_configs: [{role: pod}]\n")
    return run_promtool("check", "config", str(probe)).returncode == 0


@pytest.mark.interop
def test_promtool_accepts_the_prometheus_config(tmp_path):
    """The whole file where promtool has Kubernetes discovery; otherwise everything but the
    `kubernetes_sd_configs` blocks (relabelling, the lab job, the rule file all still checked)."""
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    if not promtool_knows_kubernetes_sd(tmp_path):
        for job in config["scrape_configs"]:
            job.pop("kubernetes_sd_configs", None)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(DEPLOY / "alerts.yml", tmp_path / "alerts.yml")
    proc = run_promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


@pytest.mark.unit
def test_the_kubernetes_job_keeps_annotated_agent_pods():
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    (sd,) = jobs["netsprint-agent"]["kubernetes_sd_configs"]
    assert sd["role"] == "pod"
    assert sd["namespaces"]["names"] == [manifest("Namespace")["metadata"]["name"]]
    relabels = jobs["netsprint-agent"]["relabel_configs"]
    keep = [r for r in relabels if r.get("action") == "keep"]
    assert keep == [{"source_labels": ["__meta_kubernetes_pod_annotation_prometheus_io_scrape"],
                     "action": "keep", "regex": "true"}]
    targets = {t for group in jobs["netsprint-lab"]["static_configs"] for t in group["targets"]}
    assert targets == {DEFAULT_LISTEN}  # the agent's default listen address


def alert_rules() -> list[dict]:
    (group,) = yaml.safe_load((DEPLOY / "alerts.yml").read_text())["groups"]
    return group["rules"]


@pytest.mark.interop
@pytest.mark.parametrize("args, success", [
    (("check", "rules", "alerts.yml"), f"SUCCESS: {len(alert_rules())} rules found"),
    (("test", "rules", "alerts_test.yml"), "SUCCESS"),
], ids=["check-rules", "alert-unit-tests"])
def test_promtool_accepts_the_alert_files(args, success):
    proc = run_promtool(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert success in proc.stdout


@pytest.mark.unit
def test_every_alert_has_for_severity_and_annotations():
    for rule in alert_rules():
        assert rule["for"] and rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        # `up` is Prometheus's own per-target series.
        unknown = dash.unexported_metrics_in(rule["expr"]) - {"up"}
        assert not unknown, (rule["alert"], unknown)


@pytest.mark.interop
def test_the_alert_unit_tests_catch_a_wrong_threshold(tmp_path):
    """Raise the connect failure threshold past web-0's 50%: its test must now fail."""
    rules = yaml.safe_load((DEPLOY / "alerts.yml").read_text())
    (rule,) = [r for r in rules["groups"][0]["rules"]
               if r["alert"] == "NetsprintConnectFailureRatioHigh"]
    assert rule["expr"].count("\n) > 0.1\n") == 1
    rule["expr"] = rule["expr"].replace("\n) > 0.1\n", "\n) > 0.9\n")
    (tmp_path / "alerts.yml").write_text(yaml.safe_dump(rules))
    shutil.copy(DEPLOY / "alerts_test.yml", tmp_path / "alerts_test.yml")
    proc = run_promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert proc.returncode != 0
    assert "NetsprintConnectFailureRatioHigh" in proc.stdout + proc.stderr


# --- Grafana --------------------------------------------------------------------------------

@pytest.mark.unit
def test_the_committed_dashboard_is_the_generated_one():
    committed = (DEPLOY / "grafana-dashboard.json").read_text()
    assert committed == dash.dashboard_json(), \
        "regenerate: python -m netsprint.agent.dashboard > deploy/grafana-dashboard.json"


def cells(panel: dict) -> set[tuple[int, int]]:
    g = panel["gridPos"]
    return {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}


@pytest.mark.unit
def test_the_dashboard_has_grafana_shape():
    board = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    assert isinstance(board["schemaVersion"], int) and board["uid"] and board["title"]
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        assert 0 <= panel["gridPos"]["x"] and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert not cells(panel) & taken, f"{panel['title']} overlaps another panel"
        taken |= cells(panel)
        if panel["type"] != "row":
            assert panel["targets"] and all(t["expr"] and t["refId"] for t in panel["targets"])
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "pod"):
        assert variables[name]["query"]["query"].startswith("label_values(")


@pytest.mark.unit
def test_heatmaps_read_bucket_series_in_heatmap_format():
    heatmaps = [p for p in dash.build_dashboard()["panels"] if p["type"] == "heatmap"]
    assert {next(iter(dash.metric_names_in(p["targets"][0]["expr"]))) for p in heatmaps} == {
        f"{dash.model.SRTT}_bucket", f"{dash.model.CONNECT_DURATION}_bucket"}
    for panel in heatmaps:
        (target,) = panel["targets"]
        assert target["format"] == "heatmap" and "by (le)" in target["expr"]
        assert panel["options"]["calculate"] is False


@pytest.mark.unit
def test_every_dashboard_query_names_only_exported_metrics():
    assert dash.unknown_metrics(dash.build_dashboard()) == {}


@pytest.mark.unit
def test_the_model_names_are_what_the_collectors_describe():
    """The contract's metric-name constants (agent/model.py) and the collectors agree."""
    model_names = {value for name, value in vars(dash.model).items()
                   if name.isupper() and isinstance(value, str) and value.startswith("netsprint_")}
    assert dash.exported_metric_names() == model_names
    assert dash.histogram_names() == {dash.model.SRTT, dash.model.CONNECT_DURATION}


@pytest.mark.unit
def test_the_dashboard_shows_every_exported_metric():
    board = dash.build_dashboard()
    used = {dash.family_name(name, dash.histogram_names())
            for panel in board["panels"] for t in panel.get("targets", [])
            for name in dash.metric_names_in(t["expr"])}
    assert dash.exported_metric_names() - used == set()


@pytest.mark.unit
@pytest.mark.parametrize("expr, unknown", [
    ("rate(node_cpu_seconds_total[5m])", {"node_cpu_seconds_total"}),
    ("sum(rate(netsprint_tcp_sent_bytes_total_count[5m]))", {"netsprint_tcp_sent_bytes_total_count"}),
    ("netsprint_tcp_srtt_seconds_bucket + netsprint_tcp_srt_seconds_sum", {"netsprint_tcp_srt_seconds_sum"}),
])
def test_the_metric_check_can_fail(expr, unknown):
    board = {"panels": [{"title": "p", "targets": [{"expr": expr}]}], "templating": {"list": []}}
    assert dash.unknown_metrics(board) == {"p": unknown}


@pytest.mark.unit
@pytest.mark.parametrize("expr, names", [
    ('sum by (le) (rate(a_bucket{pod=~"$pod", x="b{c}"}[$__rate_interval]))', {"a_bucket"}),
    ("histogram_quantile(0.99, sum by (namespace, le) (rate(h_bucket[5m]))) > 0.5", {"h_bucket"}),
    ("topk(10, a) or b unless on (pod) group_left (workload) c", {"a", "b", "c"}),
    ('count by (version) (info{version="v1 and x"}) offset 5m', {"info"}),
    ("x / 1e3 + sum without (le) (y)", {"x", "y"}),
])
def test_metric_names_are_read_from_promql(expr, names):
    assert dash.metric_names_in(expr) == names


GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$namespace": ".*", "$pod": ".*"}


@pytest.mark.interop
def test_every_dashboard_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule (Grafana's variables filled in)."""
    rules = []
    for i, (expr, _) in enumerate(dash.queries(dash.build_dashboard())):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": rules}]}))
    proc = run_promtool("check", "rules", "rules.yml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(rules)} rules found" in proc.stdout


@pytest.mark.unit
def test_grafana_provisioning_points_at_the_dashboard_folder():
    provisioning = DEPLOY / "grafana" / "provisioning"
    (source,) = yaml.safe_load((provisioning / "datasources" / "netsprint.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "netsprint.yml").read_text())["providers"]
    script = (ROOT / "scripts" / "provision-k3s.sh").read_text()
    assert f"GRAFANA_DASHBOARDS={provider['options']['path']}\n" in script


# --- the optional VM step -------------------------------------------------------------------

@pytest.mark.unit
def test_provision_k3s_passes_shellcheck():
    shellcheck = needs_tool("shellcheck", "shellcheck")
    proc = subprocess.run([shellcheck, "--shell=bash", str(ROOT / "scripts/provision-k3s.sh")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.unit
def test_the_vagrantfile_runs_k3s_only_when_asked():
    text = (ROOT / "Vagrantfile").read_text()
    assert 'config.vm.provision "k3s"' in text and 'path: "scripts/provision-k3s.sh"' in text
    assert 'run: ENV["NETSPRINT_K3S"] == "1" ? "once" : "never"' in text
