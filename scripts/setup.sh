#!/usr/bin/env bash
# Set up OMFA Studio on a fresh Debian/Ubuntu machine with Python 3.11:
#   bash scripts/setup.sh          # the app: system GL libraries + .venv with requirements.txt
#   bash scripts/setup.sh --dev    # + test tools (pytest, playwright) and Debian's chromium
# Idempotent: a second run only checks what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1

apt_missing=()
while read -r pkg; do
  [[ -z "$pkg" || "$pkg" == \#* ]] && continue
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_missing+=("$pkg")
done < packages.txt
if [[ $DEV == 1 ]] && ! command -v chromium >/dev/null 2>&1; then
  apt_missing+=(chromium)
fi
if (( ${#apt_missing[@]} )); then
  echo "setup: installing system packages: ${apt_missing[*]}"
  SUDO=""; [[ $(id -u) != 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$PY" -m venv .venv
req=requirements.txt; [[ $DEV == 1 ]] && req=requirements-dev.txt
stamp=".venv/.installed-$(cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)-$DEV"
if [[ ! -f "$stamp" ]]; then
  echo "setup: installing Python packages from $req"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r "$req"
  .venv/bin/pip install -q --no-deps -e .
  .venv/bin/pip check
  touch "$stamp"
fi
echo "setup: ready (.venv)"
