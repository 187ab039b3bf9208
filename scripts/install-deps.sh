#!/usr/bin/env bash
# Installs lethe's build and test dependencies from Debian 12 packages (docs/dependencies.md
# says why each is there). Skips apt entirely when everything is already installed.
set -euo pipefail
packages=(
  g++ cmake ninja-build pkg-config
  libeigen3-dev libboost-program-options-dev nlohmann-json3-dev zlib1g-dev liblbfgspp-dev libssl-dev
  libgtest-dev libbenchmark-dev
  python3 python3-numpy python3-torch python3-sklearn
  python3-dev pybind11-dev python3-pybind11 python3-pytest python3-matplotlib
  libopenmpi-dev openmpi-bin
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
