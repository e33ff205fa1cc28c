#!/usr/bin/env bash
# Install each sink package under plugins/ into the project's venv, run its own tests,
# and uninstall it again: the venv is left as `make install` made it, so a second
# `make test` does not load the plugins (nor what they import) into the main suite.
# Usage: plugins/test-plugins.sh [VENV]   (default: .venv at the repository root)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="${1:-$root/.venv}"
case "$venv" in /*) ;; *) venv="$root/$venv" ;; esac

status=0
for plugin in "$root"/plugins/asyncevents-*/; do
  plugin="${plugin%/}"
  name="$(basename "$plugin")"
  echo "plugins: installing $name"
  "$venv/bin/python" -m pip install --quiet -e "$plugin[test]"
  echo "plugins: testing $name"
  # Each package is its own pytest root (its pyproject.toml), so run from inside it.
  (cd "$plugin" && "$venv/bin/python" -m pytest -q) || status=$?
  "$venv/bin/python" -m pip uninstall --quiet --yes "$name"
done
exit "$status"
