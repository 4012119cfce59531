#!/usr/bin/env bash
# Optional Vagrant VM step (weeks 14-19): a one-node k3s cluster running the netsprint agent
# DaemonSet, Prometheus scraping it and Grafana showing deploy/grafana-dashboard.json.
#
#   NETSPRINT_K3S=1 vagrant up               # or, on a VM that is already up:
#   vagrant provision --provision-with k3s
#
# For the VM only: it installs a Kubernetes distribution and opens ports 9090 and 3000 on the
# VM's interfaces (the Vagrantfile forwards them to the host's 127.0.0.1). Never run it on a
# laptop or CI. Sources: k3s from its stable channel (get.k3s.io), Grafana OSS from
# apt.grafana.com, Prometheus from Ubuntu's archive (already installed by provision.sh).
# Needs root and network access. Run scripts/provision.sh first. Details: docs/agent.md.
set -euo pipefail

ROOT="${NETSPRINT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="${NETSPRINT_VENV:-/opt/netsprint/venv}"
K3S_CHANNEL="${K3S_CHANNEL:-stable}"
IMAGE_NAME="netsprint-agent"
PROMETHEUS_CONFIG=/etc/netsprint/prometheus-vm.yml
GRAFANA_DASHBOARDS=/var/lib/grafana/dashboards/netsprint
export DEBIAN_FRONTEND=noninteractive

log() { printf 'provision-k3s: %s\n' "$*"; }
die() { printf 'provision-k3s: ERROR: %s\n' "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "run as root (vagrant provision does)"
[[ -x $VENV/bin/python ]] || die "$VENV is missing: run scripts/provision.sh first"

apt_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q ' ok installed' || missing+=("$p")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
}

install_k3s() {
    if command -v k3s >/dev/null 2>&1; then
        log "k3s: present ($(k3s --version | head -n 1))"
        return 0
    fi
    local installer
    installer="$(mktemp)"
    curl -fsSL https://get.k3s.io -o "$installer"
    # Traefik and the service load balancer are not needed: the agent uses the node's network.
    INSTALL_K3S_CHANNEL="$K3S_CHANNEL" \
        INSTALL_K3S_EXEC="--disable=traefik --disable=servicelb --write-kubeconfig-mode=0600" \
        sh "$installer"
    rm -f "$installer"
}

wait_for_node() {
    local tries
    for tries in $(seq 60); do
        if k3s kubectl get nodes 2>/dev/null | grep -q ' Ready'; then
            log "k3s: node ready"
            return 0
        fi
        log "k3s: waiting for the node (${tries}/60)"
        sleep 5
    done
    die "the k3s node did not become Ready in 5 minutes: see journalctl -u k3s"
}

package_version() {
    "$VENV/bin/python" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$ROOT/pyproject.toml"
}

# k3s's containerd cannot build images: build with Docker, then hand the image over.
build_and_import_image() {
    local tag
    tag="$IMAGE_NAME:$(package_version)"
    apt_install docker.io
    docker build -f "$ROOT/deploy/Dockerfile" -t "$tag" "$ROOT"
    docker save "$tag" | k3s ctr images import -
    log "image: $tag imported into k3s"
}

deploy_agent() {
    k3s kubectl apply -f "$ROOT/deploy/daemonset.yaml"
    k3s kubectl -n netsprint rollout status daemonset/netsprint-agent --timeout=300s
}

# Ubuntu's prometheus is built without Kubernetes discovery, so the VM keeps only the lab
# job: on this one-node cluster the agent's hostNetwork port is the VM's 127.0.0.1:9435.
configure_prometheus() {
    mkdir -p "$(dirname "$PROMETHEUS_CONFIG")"
    "$VENV/bin/python" - "$ROOT/deploy/prometheus.yml" "$PROMETHEUS_CONFIG" <<'PY'
import sys, pathlib, yaml
source, target = map(pathlib.Path, sys.argv[1:])
config = yaml.safe_load(source.read_text())
config["scrape_configs"] = [job for job in config["scrape_configs"]
                            if "kubernetes_sd_configs" not in job]
config["rule_files"] = [str(source.parent / name) for name in config["rule_files"]]
target.write_text(yaml.safe_dump(config, sort_keys=False))
PY
    promtool check config "$PROMETHEUS_CONFIG"
    printf 'ARGS="--config.file=%s --web.listen-address=0.0.0.0:9090"\n' "$PROMETHEUS_CONFIG" \
        > /etc/default/prometheus
    systemctl enable prometheus
    systemctl restart prometheus
}

install_grafana() {
    apt_install apt-transport-https gnupg
    if [[ ! -f /etc/apt/keyrings/grafana.gpg ]]; then
        mkdir -p /etc/apt/keyrings
        curl -fsSL https://apt.grafana.com/gpg.key | gpg --dearmor -o /etc/apt/keyrings/grafana.gpg
        echo "deb [signed-by=/etc/apt/keyrings/grafana.gpg] https://apt.grafana.com stable main" \
            > /etc/apt/sources.list.d/grafana.list
    fi
    apt_install grafana
    install -m 0644 "$ROOT/deploy/grafana/provisioning/datasources/netsprint.yml" \
        /etc/grafana/provisioning/datasources/netsprint.yml
    install -m 0644 "$ROOT/deploy/grafana/provisioning/dashboards/netsprint.yml" \
        /etc/grafana/provisioning/dashboards/netsprint.yml
    mkdir -p "$GRAFANA_DASHBOARDS"
    install -m 0644 "$ROOT/deploy/grafana-dashboard.json" "$GRAFANA_DASHBOARDS/netsprint.json"
    # Listen on the VM's interfaces: the forwarded port arrives on its NAT interface.
    sed -i 's/^;\?http_addr =.*/http_addr = 0.0.0.0/' /etc/grafana/grafana.ini
    systemctl enable grafana-server
    systemctl restart grafana-server
}

apt_install curl ca-certificates
install_k3s
wait_for_node
build_and_import_image
deploy_agent
configure_prometheus
install_grafana
log "done: Prometheus http://127.0.0.1:9090, Grafana http://127.0.0.1:3000 (admin/admin) on the host"
