#!/usr/bin/env bash
# Create the bpy test venvs used by tests/blender/ (idempotent; CI runs it): one venv per row of
# tools/bpy_versions.tsv, .venvs/bpy-<version>, made with that row's CPython (the wheels are built
# for one CPython each: 4.2 LTS .. 5.0 for 3.11, 5.1 .. 5.3 for 3.13).
# Usage: tools/setup_bpy_envs.sh [4.2 4.5 5.0 5.1 5.2 5.3]   (default: every row)
# The interpreters are found at run time: PATH, then pyenv (BPY_PY311 / BPY_PY313 override).
set -euo pipefail
cd "$(dirname "$0")/.."

# find_python 3.13 -> the path of a working python3.13 (PATH, then pyenv), or nothing.
# A pyenv shim on PATH exists even when that version is not selected, so each candidate is run.
find_python() {
  local want=$1 cand root
  local -a cands=()
  cands+=("$(command -v "python$want" 2>/dev/null || true)")
  if command -v pyenv >/dev/null 2>&1; then
    cands+=("$(pyenv which "python$want" 2>/dev/null || true)")
    root=$(pyenv root 2>/dev/null || true)
    [ -n "$root" ] && cands+=($(ls -d "$root"/versions/"$want"*/bin/"python$want" 2>/dev/null | sort -V -r))
  fi
  cands+=($(ls -d "$HOME"/.pyenv/versions/"$want"*/bin/"python$want" 2>/dev/null | sort -V -r))
  for cand in "${cands[@]}"; do
    [ -n "$cand" ] || continue
    if "$cand" -c "import sys, venv; sys.exit(0 if sys.version.startswith('$want.') else 1)" >/dev/null 2>&1; then
      echo "$cand"
      return 0
    fi
  done
  return 1
}

declare -A PIN=() PYVER=()
ALL=()
while IFS=$'\t' read -r v pin pyv; do
  [ -z "$v" ] || [ "${v:0:1}" = "#" ] && continue
  PIN[$v]=$pin; PYVER[$v]=$pyv; ALL+=("$v")
done < tools/bpy_versions.tsv
# numpy: the 3.11 wheels were built against numpy 1.x; numpy 1.x has no cp313 wheels.
declare -A NUMPY=( [3.11]="numpy<2" [3.13]="numpy>=2,<3" )
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=("${ALL[@]}")
# The VRM Add-on for Blender (bpy-vrm-format, its io_scene_vrm module) in the newest two versions:
# tests/blender/test_rigs_bpy.py builds, exports and imports VRM avatars with it. --no-deps: its
# only dependency is bpy, which the venv pins.
VRM_ADDON="bpy-vrm-format>=4.10,<5"
install_vrm_addon() {
  local v=$1 dir=$2
  [ "$v" = "${ALL[-1]}" ] || [ "$v" = "${ALL[-2]}" ] || return 0
  "$dir/bin/python" -c "import importlib.util, sys; sys.exit(0 if importlib.util.find_spec('io_scene_vrm') else 1)" \
    >/dev/null 2>&1 && return 0
  echo "[setup_bpy_envs] $dir: installing $VRM_ADDON"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check --no-deps "$VRM_ADDON"
}
mkdir -p .venvs
for v in "${versions[@]}"; do
  if [ -z "${PIN[$v]:-}" ]; then
    echo "[setup_bpy_envs] unknown bpy version '$v' (known: ${ALL[*]})" >&2
    exit 2
  fi
  dir=".venvs/bpy-$v"
  pyv=${PYVER[$v]}
  if [ -x "$dir/bin/python" ] && "$dir/bin/python" -c "import bpy, numpy, pytest" >/dev/null 2>&1; then
    echo "[setup_bpy_envs] $dir ok ($("$dir/bin/python" -c 'import bpy; print(bpy.app.version_string)' 2>/dev/null | tail -1))"
    install_vrm_addon "$v" "$dir"
    continue
  fi
  override_var="BPY_PY${pyv/./}"
  base=${!override_var:-}
  [ -n "$base" ] || base=$(find_python "$pyv") || {
    echo "[setup_bpy_envs] bpy $v needs Python $pyv: none found on PATH or in pyenv (set $override_var)" >&2
    exit 1
  }
  echo "[setup_bpy_envs] creating $dir (${PIN[$v]}, $base)"
  # a half-made venv (interrupted install, other Python) is rebuilt from scratch
  if [ -x "$dir/bin/python" ] && ! "$dir/bin/python" -c "import sys; sys.exit(0 if sys.version.startswith('$pyv.') else 1)" 2>/dev/null; then
    rm -rf "$dir"
  fi
  [ -x "$dir/bin/python" ] || "$base" -m venv "$dir"
  "$dir/bin/python" -m pip install -q --disable-pip-version-check "${PIN[$v]}" "${NUMPY[$pyv]}" pytest
  "$dir/bin/python" -c "import bpy, numpy, pytest; print('[setup_bpy_envs] $dir', bpy.app.version_string)" | tail -1
  install_vrm_addon "$v" "$dir"
done
