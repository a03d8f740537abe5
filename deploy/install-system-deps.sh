#!/usr/bin/env bash
# Install the Debian packages the network-namespace lab (deploy/lab) and the benchmarks need:
#   nftables  - `nft`, used by deploy/lab/faults.py to drop flows
#   iproute2  - `ip netns`, `ip link`, `ip addr`, `ip route`
#   procps    - `sysctl`, `ps`
#   nginx, keepalived - the real service and the comparison system of deploy/lab/real_service.py
#   rsync     - bench/bench_files.py: the reference copy (rsync -W) and lsyncd's backend
#   lsyncd    - bench/bench_files.py: the live-mirroring daemon compared with the File Monitor
# Idempotent: packages already installed are left alone, and `apt-get update` runs only when
# something is missing. Non-interactive. Must run as root (or with sudo available).
set -euo pipefail

PACKAGES=(nftables iproute2 procps nginx keepalived rsync lsyncd)

die() {
    echo "install-system-deps: ERROR: $*" >&2
    exit 1
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "install ok installed" ]]; then
        missing+=("$pkg")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system-deps: all present: ${PACKAGES[*]}"
    exit 0
fi

command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and apt-get is not available; install them with your distribution's package manager"

SUDO=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO=(sudo -n)
    else
        die "missing packages (${missing[*]}); run this script as root (or install sudo)"
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: missing: ${missing[*]}; running apt-get update"
"${SUDO[@]}" apt-get update -q || die "'apt-get update' failed (no access to the Debian package mirror?)"
echo "install-system-deps: installing: ${missing[*]}"
"${SUDO[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" \
    || die "'apt-get install ${missing[*]}' failed"

for tool in nft ip sysctl rsync lsyncd keepalived; do
    command -v "$tool" >/dev/null 2>&1 || [[ -x "/usr/sbin/$tool" ]] || [[ -x "/sbin/$tool" ]] \
        || die "'$tool' is still not found after installing ${missing[*]}"
done
echo "install-system-deps: done"
