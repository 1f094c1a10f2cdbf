#!/usr/bin/env bash
# Make .venv/ with everything soundtrail needs, Debian packages included. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(libchromaprint1 libchromaprint-tools ffmpeg postgresql chromium openssl)
missing=()
for package in "${DEBIAN_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Azurite (Microsoft's Azure Storage server, from npm) is the object store the storage tests put shards and
# checkpoints on through pyarrow's abfs://; pinned so a new release cannot change what those tests talk to.
AZURITE_VERSION=3.37.0
if ! grep -qs "\"version\": \"$AZURITE_VERSION\"" .cache/azurite/node_modules/azurite/package.json; then
    if ! command -v npm >/dev/null; then
        SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    fi
    echo "installing azurite $AZURITE_VERSION into .cache/azurite"
    npm install --prefix .cache/azurite --no-audit --no-fund --silent "azurite@$AZURITE_VERSION" >/dev/null
fi

PYTHON=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    .venv/bin/python -m pip install -q -e '.[dev]'
    rm -f .venv/.installed-*
    touch "$stamp"
fi
echo "setup complete: .venv/bin/soundtrail"
