"""The agent's Grafana dashboard, built from code: `python -m netsprint.agent.dashboard`.

Panels are data (`Panel`: a title, a kind, PromQL queries, a unit, a width), laid out left
to right in Grafana's 24-column grid, one row per section. Ids follow the order of the
panels, so regenerating gives byte-identical JSON and `deploy/grafana-dashboard.json` can be
diffed against this module in a test. Every query names only metrics the agent exports
(`exported_metric_names`, from the collectors' describe()); `metric_names_in(expr)` finds
them in PromQL text.

    python -m netsprint.agent.dashboard > deploy/grafana-dashboard.json
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from netsprint.agent import model

TITLE = "netsprint: TCP by pod"
UID = "netsprint-tcp"
# Grafana 10/11 read schemaVersion 39 as-is (older dashboards get migrated on load).
SCHEMA_VERSION = 39
GRID_COLUMNS = 24  # Grafana's grid is 24 columns wide
ROW_HEIGHT = 1

# Selects the local side chosen in the dashboard's variables (labels per agent/labels.py).
POD_SELECTOR = 'namespace=~"$namespace", pod=~"$pod"'
RATE = "$__rate_interval"  # Grafana's window: at least 4 scrape intervals, so rate() sees 2+ points
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


def exported_metric_names() -> frozenset[str]:
    """Every metric the agent exports, as PromQL names it (histograms by their base name),
    from what the agent's collectors describe()."""
    return names_from_families(collector_families())


def histogram_names() -> frozenset[str]:
    """The exported histogram families (their series end in `_bucket`, `_sum`, `_count`)."""
    return frozenset(f.name for f in collector_families() if f.type == "histogram")


def names_from_families(families) -> frozenset[str]:
    """prometheus_client families -> PromQL names: a counter family `x` is exposed as
    `x_total` (OpenMetrics), a histogram by its base name (`_bucket` etc. stripped later)."""
    return frozenset(f"{f.name}_total" if f.type == "counter" else f.name for f in families)


class _EmptySource:
    """A snapshot source for describe(), which never reads it."""

    def snapshot(self) -> model.Snapshot:
        return model.Snapshot()


@functools.cache
def collector_families() -> tuple:
    """What the agent's collectors describe(), built on an empty source (no BPF, no pods).
    Cached: the families are fixed by the code, and the metric checks ask for every query."""
    from netsprint.agent.collectors import AgentCollector, SnapshotReader, TcpCollector
    from netsprint.agent.runner import NoPods

    reader = SnapshotReader(_EmptySource())
    tcp = TcpCollector(reader, NoPods())
    return (*tcp.describe(), *AgentCollector(reader, tcp).describe())


@dataclass(frozen=True)
class Query:
    """One PromQL target of a panel and how Grafana names its series."""

    expr: str
    legend: str = ""
    instant: bool = False   # tables and bar gauges show the latest value only
    heatmap: bool = False   # `_bucket` series handed to a heatmap as-is (format heatmap)


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: `kind` is a Grafana panel type (timeseries, heatmap, bargauge,
    stat); `width`/`height` are grid units."""

    title: str
    kind: str
    queries: tuple[Query, ...]
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""


@dataclass(frozen=True)
class Section:
    """A titled row of panels."""

    title: str
    panels: tuple[Panel, ...]


# --- the panels -------------------------------------------------------------------------

def _by_pod_rate(metric: str) -> str:
    return f"sum by (namespace, pod) (rate({metric}{{{POD_SELECTOR}}}[{RATE}]))"


def _heatmap(title: str, histogram: str, description: str) -> Panel:
    expr = f"sum by (le) (rate({histogram}_bucket{{{POD_SELECTOR}}}[{RATE}]))"
    return Panel(title, "heatmap", (Query(expr, "{{le}}", heatmap=True),), unit="s",
                 description=description)


def _quantile(q: float, histogram: str) -> Query:
    expr = (f"histogram_quantile({q}, sum by (le) "
            f"(rate({histogram}_bucket{{{POD_SELECTOR}}}[{RATE}])))")
    return Query(expr, f"p{round(q * 100)}")


CONNECTIONS = Section("Connections", (
    Panel("Connections opened and closed per second", "timeseries", (
        Query(f"sum by (direction) (rate({model.OPENED}{{{POD_SELECTOR}}}[{RATE}]))",
              "opened {{direction}}"),
        Query(f"sum(rate({model.CLOSED}{{{POD_SELECTOR}}}[{RATE}]))", "closed"),
        Query(f"sum(rate({model.CONNECT_FAILURES}{{{POD_SELECTOR}}}[{RATE}]))", "connect failed"),
    ), unit="ops"),
    Panel("Active connections by pod", "timeseries", (
        Query(f"sum by (namespace, pod) ({model.ACTIVE}{{{POD_SELECTOR}}})", "{{namespace}}/{{pod}}"),
    )),
))

TRAFFIC = Section("Traffic", (
    Panel("Bytes sent per second by pod", "timeseries",
          (Query(_by_pod_rate(model.SENT_BYTES), "{{namespace}}/{{pod}}"),), unit="Bps", width=8),
    Panel("Bytes received per second by pod", "timeseries",
          (Query(_by_pod_rate(model.RECEIVED_BYTES), "{{namespace}}/{{pod}}"),), unit="Bps", width=8),
    Panel("Retransmitted segments per second by pod", "timeseries",
          (Query(_by_pod_rate(model.RETRANSMITS), "{{namespace}}/{{pod}}"),), width=8),
    # Sent + received: a pod that only ever sent (or only received) has no match on the
    # other side of `+`, so `or` fills the missing side with the one it has.
    Panel("Top 10 pods by bytes (sent + received)", "bargauge", (
        Query(f"topk(10, ({_by_pod_rate(model.SENT_BYTES)} + {_by_pod_rate(model.RECEIVED_BYTES)})"
              f" or {_by_pod_rate(model.SENT_BYTES)} or {_by_pod_rate(model.RECEIVED_BYTES)})",
              "{{namespace}}/{{pod}}", instant=True),
    ), unit="Bps", width=24),
))

LATENCY = Section("Latency", (
    _heatmap("Smoothed RTT (tcp_probe srtt)", model.SRTT,
             "How many RTT samples fell in each log2 bucket per second."),
    _heatmap("Connect latency (SYN sent to established)", model.CONNECT_DURATION,
             "How many connects finished in each log2 bucket per second."),
    Panel("Smoothed RTT quantiles", "timeseries",
          (_quantile(0.5, model.SRTT), _quantile(0.99, model.SRTT)), unit="s"),
    Panel("Connect latency quantiles", "timeseries",
          (_quantile(0.5, model.CONNECT_DURATION), _quantile(0.99, model.CONNECT_DURATION)),
          unit="s"),
))

AGENT = Section("Agent", (
    Panel("Probes attached", "stat",
          (Query(f"sum by (instance) ({model.PROBES_ATTACHED})", "{{instance}}"),), width=6),
    Panel("Agent versions", "stat",
          (Query(f"count by (version) ({model.BUILD_INFO})", "{{version}}"),), width=6),
    Panel("Events lost and series dropped per second", "timeseries", (
        Query(f"sum by (instance) (rate({model.EVENTS_LOST}[{RATE}]))", "lost {{instance}}"),
        Query(f"sum by (metric) (rate({model.SERIES_DROPPED}[{RATE}]))", "dropped {{metric}}"),
    ), width=12),
    Panel("BPF map entries", "timeseries",
          (Query(f"sum by (instance, map) ({model.MAP_ENTRIES})", "{{instance}} {{map}}"),)),
    Panel("Collect duration", "timeseries",
          (Query(f"max by (instance) ({model.COLLECT_DURATION})", "{{instance}}"),), unit="s"),
))

SECTIONS = (CONNECTIONS, TRAFFIC, LATENCY, AGENT)


# --- JSON -------------------------------------------------------------------------------

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def build_dashboard(sections: tuple[Section, ...] = SECTIONS) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (a dict ready for json.dumps)."""
    return {
        "uid": UID,
        "title": TITLE,
        "tags": ["netsprint", "tcp", "ebpf"],
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "editable": True,
        "graphTooltip": 1,  # shared crosshair: the same instant on every panel
        "time": {"from": "now-1h", "to": "now"},
        "refresh": "30s",
        "timezone": "browser",
        "templating": {"list": _variables()},
        "annotations": {"list": []},
        "panels": _layout(sections),
    }


def _variables() -> list[dict[str, Any]]:
    datasource = {"name": "datasource", "label": "Prometheus", "type": "datasource",
                  "query": "prometheus", "current": {}, "hide": 0, "refresh": 1}
    namespace = _label_variable("namespace", f"label_values({model.ACTIVE}, namespace)")
    pod = _label_variable("pod", f'label_values({model.ACTIVE}{{namespace=~"$namespace"}}, pod)')
    return [datasource, namespace, pod]


def _label_variable(name: str, query: str) -> dict[str, Any]:
    return {"name": name, "label": name, "type": "query", "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-values"}, "definition": query,
            "refresh": 2,  # on time range change: pods come and go
            "includeAll": True, "allValue": ".*", "multi": True, "sort": 1,
            "current": {"text": "All", "value": "$__all"}, "hide": 0}


def _layout(sections: tuple[Section, ...]) -> list[dict[str, Any]]:
    """Rows and panels with grid positions; ids 1, 2, ... in order (stable across runs)."""
    panels: list[dict[str, Any]] = []
    y = 0
    for section in sections:
        panels.append(_row(section.title, len(panels) + 1, y))
        y += ROW_HEIGHT
        x, line_height = 0, 0
        for panel in section.panels:
            if x + panel.width > GRID_COLUMNS:
                x, y, line_height = 0, y + line_height, 0
            panels.append(_panel_json(panel, len(panels) + 1, x, y))
            x += panel.width
            line_height = max(line_height, panel.height)
        y += line_height
    return panels


def _row(title: str, panel_id: int, y: int) -> dict[str, Any]:
    return {"id": panel_id, "type": "row", "title": title, "collapsed": False, "panels": [],
            "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": ROW_HEIGHT}}


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
        "fieldConfig": {"defaults": {"unit": panel.unit}, "overrides": []},
        "options": _options(panel.kind, panel.unit),
        "targets": [_target(query, chr(ord("A") + i)) for i, query in enumerate(panel.queries)],
    }


def _options(kind: str, unit: str) -> dict[str, Any]:
    if kind == "heatmap":
        # The buckets come from Prometheus (`calculate: false`); the y axis reads their `le`.
        return {"calculate": False, "yAxis": {"unit": unit}, "cellGap": 1,
                "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
                "tooltip": {"mode": "single", "yHistogram": True}}
    if kind == "bargauge":
        return {"displayMode": "gradient", "orientation": "horizontal",
                "reduceOptions": {"calcs": ["lastNotNull"], "values": False}}
    if kind == "stat":
        return {"reduceOptions": {"calcs": ["lastNotNull"], "values": False}}
    return {"legend": {"displayMode": "list", "placement": "bottom"},
            "tooltip": {"mode": "multi", "sort": "desc"}}


def _target(query: Query, ref_id: str) -> dict[str, Any]:
    target = {"refId": ref_id, "datasource": DATASOURCE, "expr": query.expr,
              "legendFormat": query.legend, "range": not query.instant,
              "instant": query.instant}
    if query.heatmap:
        target["format"] = "heatmap"
    return target


def dashboard_json(dashboard: dict[str, Any] | None = None) -> str:
    """The committed file's exact text (sorted keys, two-space indent, final newline)."""
    return json.dumps(dashboard or build_dashboard(), indent=2, sort_keys=True) + "\n"


# --- which metrics a query names ------------------------------------------------------------

# Strings, label matchers `{...}`, ranges `[...]` and grouping lists `by (...)` hold no
# metric names; once they are gone, an identifier not followed by `(` is a metric name.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_BRACES = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])([A-Za-z_:][\w:]*)(?!\w)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
                       "group_right", "bool", "offset", "atan2", "inf", "nan"})


def metric_names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads ('x_bucket' etc. as written)."""
    text = _STRING.sub('""', expr)
    text = _GROUPING.sub(" ", text)
    for pattern in (_BRACES, _RANGE):
        text = pattern.sub(" ", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        name, is_call = match.group(1), match.group(2)
        if not is_call and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


def family_name(series_name: str, histograms: frozenset[str]) -> str:
    """'x_bucket' -> 'x' when x is a histogram family; other names unchanged."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = series_name.removesuffix(suffix)
        if base != series_name and base in histograms:
            return base
    return series_name


def unexported_metrics_in(expr: str, exported: frozenset[str] | None = None,
                          histograms: frozenset[str] | None = None) -> set[str]:
    """The metric names `expr` reads that the agent does not export (default: what the
    collectors describe)."""
    exported = exported_metric_names() if exported is None else exported
    histograms = histogram_names() if histograms is None else histograms
    return {name for name in metric_names_in(expr)
            if family_name(name, histograms) not in exported}


def unknown_metrics(dashboard: dict[str, Any], exported: frozenset[str] | None = None,
                    histograms: frozenset[str] | None = None) -> dict[str, set[str]]:
    """Panel title -> metric names its queries read that the agent does not export."""
    found: dict[str, set[str]] = {}
    for expr, where in queries(dashboard):
        unknown = unexported_metrics_in(expr, exported, histograms)
        if unknown:
            found.setdefault(where, set()).update(unknown)
    return found


def queries(dashboard: dict[str, Any]):
    """(PromQL, where) for every panel target and every query variable."""
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            yield target["expr"], panel["title"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            yield _label_values_metric(variable["query"]["query"]), f"variable {variable['name']}"


def _label_values_metric(query: str) -> str:
    """label_values(metric{...}, label) -> 'metric{...}' (the part that is PromQL)."""
    match = re.fullmatch(r"label_values\((.*),\s*\w+\)", query)
    return match.group(1) if match else query


def main() -> int:
    sys.stdout.write(dashboard_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
