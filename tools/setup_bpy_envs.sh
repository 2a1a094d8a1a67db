#!/usr/bin/env bash
# Create the bpy test venvs used by tests/blender/ (idempotent; CI runs it).
#   .venvs/bpy-4.2  bpy==4.2.23   (no audio support in the wheel)
#   .venvs/bpy-4.5  bpy==4.5.x    (latest 4.5 LTS)
#   .venvs/bpy-5.0  bpy==5.0.1
# Usage: tools/setup_bpy_envs.sh [4.2 4.5 5.0]   (default: all three)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${BPY_BASE_PYTHON:-$(command -v python3.11 || echo python3.11)}   # the bpy wheels are cp311-only
declare -A PIN=( [4.2]="bpy==4.2.23" [4.5]="bpy>=4.5,<4.6" [5.0]="bpy==5.0.1" )
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(4.2 4.5 5.0)
mkdir -p .venvs
for v in "${versions[@]}"; do
  dir=".venvs/bpy-$v"
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import bpy, numpy, pytest" >/dev/null 2>&1; then
    echo "[setup_bpy_envs] $dir ok ($("$dir/bin/python" -c 'import bpy; print(bpy.app.version_string)' 2>/dev/null | tail -1))"
    continue
  fi
  echo "[setup_bpy_envs] creating $dir (${PIN[$v]})"
  [ -x "$dir/bin/python" ] || "$PY" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${PIN[$v]}" 'numpy<2' pytest
done
