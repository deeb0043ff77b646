#!/usr/bin/env bash
# ansible-test sanity on exactly what ships: the collection tarball that
# `ansible-galaxy collection build` makes (build_ignore applied), unpacked into a tree shaped
# ansible_collections/selfheal/core. Extra arguments go to ansible-test (e.g. --test pylint).
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Outside the checkout: inside a git work tree ansible-test lists files from git, and would
# see none of the unpacked (ignored) ones.
work="${TMPDIR:-/tmp}/selfheal-sanity-$(printf %s "$repo" | sha256sum | cut -c1-12)"
tree="$work/ansible_collections/selfheal/core"
mkdir -p "$work"
# One run at a time per checkout: runs share the unpacked tree and its virtualenvs.
exec 9>"$work.lock"
flock 9

# ansible-test downloads a pip bootstrap script from its own file host, which only a machine
# with general internet access reaches; give it the offline equivalent (see the script).
pip_version=$(python3 - <<'PY'
import pathlib, re, ansible_test
source = pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py"
print(re.search(r"pip='([0-9.]+)'", source.read_text()).group(1))
PY
)
cache="$HOME/.ansible/test/cache/get_pip_${pip_version//./_}.py"
mkdir -p "$(dirname "$cache")"
cp "$repo/scripts/ansible_test_get_pip.py" "$cache"

# Keep tests/output between runs: it holds the sanity virtualenvs (minutes to rebuild).
mkdir -p "$tree"
find "$tree" -mindepth 1 -maxdepth 1 ! -name tests -exec rm -rf {} +
find "$tree/tests" -mindepth 1 -maxdepth 1 ! -name output -exec rm -rf {} + 2>/dev/null || true
ansible-galaxy collection build "$repo" --output-path "$work" --force >/dev/null
tar -xzf "$work"/selfheal-core-*.tar.gz -C "$tree"
rm -f "$work"/selfheal-core-*.tar.gz

# A working interpreter for Python $1: on PATH, or one of pyenv's installed versions.
target_python() {
  if "python$1" --version >/dev/null 2>&1; then command -v "python$1"; return; fi
  command -v pyenv >/dev/null 2>&1 || return 1
  local version
  version=$(pyenv versions --bare 2>/dev/null | grep -E "^$1\.[0-9]+$" | tail -1) || return 1
  [ -n "$version" ] && [ -x "$(pyenv root)/versions/$version/bin/python$1" ] || return 1
  echo "$(pyenv root)/versions/$version/bin/python$1"
}

cd "$tree"
ansible-test sanity --venv --requirements --python 3.11 --color no "$@"
# Modules and module_utils run on targets: they must also compile on the targets' Pythons.
if [ $# -eq 0 ]; then
  for v in 3.9 3.10 3.12 3.13; do
    interpreter=$(target_python "$v") || { echo "sanity: no python$v here, compile on it skipped"; continue; }
    # ansible-test looks the version up on PATH by name.
    mkdir -p "$work/bin" && ln -sfn "$interpreter" "$work/bin/python$v"
    PATH="$work/bin:$PATH" ansible-test sanity --venv --requirements --python "$v" --test compile --color no
  done
fi
