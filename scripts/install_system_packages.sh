#!/usr/bin/env bash
# Install Debian packages the pipeline shells out to, only those missing. Needs root (or sudo);
# without either it says what to install instead of failing the whole setup.
set -euo pipefail
missing=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
  echo "setup: please install the Debian packages: ${missing[*]} (no root, no sudo); until then" \
    "\`make test\` fails (PROTEIN_LLM_ALLOW_MISSING_TOOLS=1 skips their tests instead)" >&2; exit 0
fi
echo "setup: installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
