#!/usr/bin/env bash
# Install what netsprint needs on a Debian 12 / Ubuntu 24.04 host, VM or CI runner.
#
# Idempotent and quick the second time: apt runs only when a package is missing, pip only when
# pyproject.toml changed since the last install. Without root (or sudo) it prints the exact
# commands to run as root and still builds the venv. What each piece is for: docs/setup.md.
#
# Environment: NETSPRINT_ROOT (the checkout; default: this script's parent folder),
# NETSPRINT_VENV (default: $NETSPRINT_ROOT/.venv).
set -euo pipefail

ROOT="${NETSPRINT_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
VENV="${NETSPRINT_VENV:-$ROOT/.venv}"
STAMP="$VENV/.netsprint-pip-stamp"
UNPACKAGED="$VENV/.netsprint-unpackaged"  # entries apt had no package for; not retried
KREL="$(uname -r)"
BUILD="/lib/modules/$KREL/build"
export DEBIAN_FRONTEND=noninteractive

TODO=()  # commands the user must run as root because we could not

log() { printf 'provision: %s\n' "$*"; }
warn() { printf 'provision: WARNING: %s\n' "$*" >&2; }
show_todo() {
    [[ ${#TODO[@]} -gt 0 ]] || return 0
    warn "not root and no sudo: these parts need root. Run as root:"
    printf '    %s\n' "${TODO[@]}" >&2
}
die() { printf 'provision: ERROR: %s\n' "$*" >&2; show_todo; exit 1; }

# --- who can do what ----------------------------------------------------------------------
SUDO=()
CAN_ROOT=1
if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && { sudo -n true 2>/dev/null || [[ -t 0 ]]; }; then
        SUDO=(sudo)
    else
        CAN_ROOT=0
    fi
fi
as_root() { "${SUDO[@]}" "$@"; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-query >/dev/null 2>&1; then
    die "this script knows apt-based systems (Debian 12, Ubuntu 24.04); elsewhere see environment.yml and docs/setup.md"
fi

# shellcheck source=/dev/null
. /etc/os-release
case " ${ID:-} ${ID_LIKE:-} " in
    *" ubuntu "*) HEADERS_FALLBACK=linux-headers-generic ;;
    *) HEADERS_FALLBACK="linux-headers-$(dpkg --print-architecture)" ;;
esac

# --- which packages -----------------------------------------------------------------------
# One entry per need; "a|b" = the first of a, b the distro has; "a+b" = both together.
WANTED=(
    make python3 python3-venv          # the venv (bcc comes from the system python)
    python3-bpfcc bpfcc-tools          # bcc: the eBPF weeks
    iproute2 nftables                  # netns + NAT lab
    coturn prometheus                  # real peers for interop tests (tests start their own)
    vagrant shellcheck                 # `vagrant validate`, script lint in tests
    gcc                                # lays out the eBPF event headers for the ctypes-mirror tests
    "bpftool|linux-tools-common+linux-tools-$KREL"   # Ubuntu 24.04 ships bpftool in linux-tools
)
# Kernel headers for bcc: the running kernel's own, else the distro's generic ones (linked below).
[[ -e $BUILD ]] || WANTED+=("linux-headers-$KREL|$HEADERS_FALLBACK")

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *" ok installed" ]]; }
has_candidate() {
    local c
    c="$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ {print $2; exit}')"
    [[ -n $c && $c != "(none)" ]]
}
group_installed() { local p; for p in ${1//+/ }; do installed "$p" || return 1; done; }
group_available() { local p; for p in ${1//+/ }; do has_candidate "$p" || return 1; done; }
entry_installed() { local g; for g in ${1//|/ }; do group_installed "$g" && return 0; done; return 1; }
# The group to install for an entry: the first one apt knows; "" when none.
pick() { local g; for g in ${1//|/ }; do group_available "$g" && { echo "${g//+/ }"; return 0; }; done; return 0; }

MISSING=()
for entry in "${WANTED[@]}"; do
    entry_installed "$entry" && continue
    if grep -qxF -- "$entry" "$UNPACKAGED" 2>/dev/null; then
        log "skipping ${entry%%|*}: not packaged here (delete $UNPACKAGED to retry)"
        continue
    fi
    MISSING+=("$entry")
done
MISSING_NAMES="$(printf '%s\n' "${MISSING[@]%%|*}" | tr '+\n' '  ')"

APT_LOG="$(mktemp -t netsprint-apt.XXXXXX)"
trap 'rm -f "$APT_LOG"' EXIT
apt_quiet() {  # run an apt command as root, its chatter into $APT_LOG (shown on failure)
    if ! as_root env DEBIAN_FRONTEND=noninteractive "$@" -o DPkg::Lock::Timeout=300 >>"$APT_LOG" 2>&1; then
        tail -n 30 "$APT_LOG" >&2
        die "'$*' failed (full log above)"
    fi
}

INSTALLED_NOW=()
UNAVAILABLE=()
if [[ ${#MISSING[@]} -eq 0 ]]; then
    log "system packages: all present (apt skipped)"
elif [[ $CAN_ROOT -eq 0 ]]; then
    log "system packages: missing ${MISSING_NAMES}(needs root: see the end)"
    pkgs=()
    for entry in "${MISSING[@]}"; do
        g="$(pick "$entry")"
        [[ -n $g ]] || { g="${entry%%|*}"; g="${g//+/ }"; }
        pkgs+=("$g")
    done
    TODO+=("apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${pkgs[*]}")
else
    log "apt-get update (missing: ${MISSING_NAMES% })"
    apt_quiet apt-get update -qq
    for entry in "${MISSING[@]}"; do
        g="$(pick "$entry")"
        if [[ -n $g ]]; then
            read -r -a group <<<"$g"
            INSTALLED_NOW+=("${group[@]}")
        else
            UNAVAILABLE+=("$entry")
            warn "no package for '$entry' on ${PRETTY_NAME:-this system}; the tests that need it will skip (or fail under NETSPRINT_REQUIRE_ALL=1)"
        fi
    done
    if [[ ${#INSTALLED_NOW[@]} -gt 0 ]]; then
        log "apt-get install ${INSTALLED_NOW[*]} (a few minutes the first time)"
        apt_quiet apt-get install -y -qq --no-install-recommends "${INSTALLED_NOW[@]}"
    fi
fi

# The packaged coturn/prometheus services are not used (tests start their own servers on free
# ports); stop the ones we just installed so they don't hold 3478/9090.
if [[ -d /run/systemd/system && ${#INSTALLED_NOW[@]} -gt 0 ]]; then
    for svc in coturn prometheus; do
        if [[ " ${INSTALLED_NOW[*]} " == *" $svc "* ]]; then
            as_root systemctl disable --now "$svc.service" >/dev/null 2>&1 || true
            log "$svc: packaged service disabled (tests run their own; re-enable with systemctl enable --now $svc)"
        fi
    done
fi

# --- kernel headers at /lib/modules/$(uname -r)/build ------------------------------------
if [[ -e $BUILD ]]; then
    target="$(readlink -f "$BUILD")"
    if [[ -L $BUILD && $target != *"$KREL"* ]]; then
        log "kernel headers: $BUILD -> $target (fallback; struct layouts may differ, use tracepoints)"
    else
        log "kernel headers: $BUILD"
    fi
else
    dep="$(dpkg-query -W -f='${Depends}' "$HEADERS_FALLBACK" 2>/dev/null || true)"
    hver=""
    [[ $dep =~ linux-headers-([0-9][^ ,]*) ]] && hver="${BASH_REMATCH[1]}"
    if [[ -n $hver && -d /usr/src/linux-headers-$hver ]]; then
        link_cmds=("mkdir -p /lib/modules/$KREL" "ln -sfn /usr/src/linux-headers-$hver $BUILD")
        # Debian splits headers into <ver> and <ver>-common; bcc reads both through build/ and source/.
        src="/lib/modules/$hver/source"
        if [[ -e $src && ! -e /lib/modules/$KREL/source ]]; then
            link_cmds+=("ln -sfn $(readlink -f "$src") /lib/modules/$KREL/source")
        fi
        if [[ $CAN_ROOT -eq 1 ]]; then
            for c in "${link_cmds[@]}"; do
                read -r -a argv <<<"$c"
                as_root "${argv[@]}"
            done
            warn "no headers packaged for kernel $KREL: linked $BUILD -> /usr/src/linux-headers-$hver." \
                "Struct layouts may differ from the running kernel, so use tracepoint programs (the workbook's default)."
        else
            log "kernel headers: none for $KREL; linking $HEADERS_FALLBACK's needs root (see the end)"
            TODO+=("${link_cmds[@]}")
        fi
    else
        warn "no kernel headers for $KREL and none from $HEADERS_FALLBACK: bcc cannot compile programs (see docs/setup.md)"
    fi
fi

# --- tracefs ------------------------------------------------------------------------------
if awk '$3 == "tracefs" && ($2 == "/sys/kernel/tracing" || $2 == "/sys/kernel/debug/tracing") {f=1} END {exit !f}' /proc/mounts; then
    log "tracefs: mounted"
elif [[ $CAN_ROOT -eq 1 ]]; then
    if as_root mount -t tracefs nodev /sys/kernel/tracing; then
        log "tracefs: mounted at /sys/kernel/tracing"
    else
        warn "could not mount tracefs at /sys/kernel/tracing: tracepoint programs will not attach"
    fi
else
    log "tracefs: not mounted; mounting needs root (see the end)"
    TODO+=("mount -t tracefs nodev /sys/kernel/tracing")
fi

# --- the venv (no root needed) ------------------------------------------------------------
PY=/usr/bin/python3
[[ -x $PY ]] || die "$PY is missing: as root run: apt-get install -y python3 python3-venv"
# `import pip`: without python3-venv, `python3 -m venv` fails after making bin/python, leaving
# a venv that runs but has no pip; recreate that too.
if [[ ! -x $VENV/bin/python ]] || ! "$VENV/bin/python" -c 'import pip' 2>/dev/null; then
    log "venv: creating $VENV (--system-site-packages, so the distro's bcc imports)"
    "$PY" -m venv --clear --system-site-packages "$VENV" \
        || die "could not create $VENV (see above); without python3-venv, as root: apt-get install -y python3-venv"
    rm -f "$STAMP"
elif ! grep -Eqi '^include-system-site-packages *= *true' "$VENV/pyvenv.cfg"; then
    log "venv: turning on --system-site-packages (needed for bcc)"
    "$PY" -m venv --system-site-packages "$VENV"
fi

want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')"
if [[ -f $STAMP && "$(<"$STAMP")" == "$want" && -x $VENV/bin/netsprint ]]; then
    log "python packages: up to date (pyproject.toml unchanged; pip skipped)"
else
    log "pip install -e '.[dev]' into $VENV (a minute or two the first time)"
    PIP_ROOT_USER_ACTION=ignore "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -e "${ROOT}[dev]" || die "pip install failed (its output is above)"
    printf '%s\n' "$want" >"$STAMP"
fi

if [[ ${#UNAVAILABLE[@]} -gt 0 ]]; then printf '%s\n' "${UNAVAILABLE[@]}" >>"$UNPACKAGED"; fi

"$VENV/bin/python" -c 'import bcc' 2>/dev/null \
    || warn "bcc does not import in $VENV: python3-bpfcc is missing (eBPF weeks and bpf tests will not run)"

if [[ ${#TODO[@]} -gt 0 ]]; then
    show_todo
    log "done, except the root-only steps above (weeks 0-2 work without them)"
else
    log "done"
fi
