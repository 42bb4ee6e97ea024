#!/usr/bin/env bash
# Print the path of a Python 3.10 interpreter: python3.10 on PATH first, then
# pyenv's newest 3.10.x. lava-nc 0.10.0 imports only on 3.10.
set -u
is310() { "$1" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 10))' 2>/dev/null; }
if command -v python3.10 >/dev/null 2>&1 && is310 python3.10; then
    command -v python3.10; exit 0
fi
root=""
if command -v pyenv >/dev/null 2>&1; then root=$(pyenv root 2>/dev/null); fi
[ -n "$root" ] || root="${PYENV_ROOT:-$HOME/.pyenv}"
for d in $(ls -d "$root"/versions/3.10.* 2>/dev/null | sort -V -r); do
    if [ -x "$d/bin/python3.10" ] && is310 "$d/bin/python3.10"; then
        echo "$d/bin/python3.10"; exit 0
    fi
done
echo "error: no Python 3.10 found (lava-nc 0.10.0 needs exactly 3.10). Install it, e.g. 'pyenv install 3.10', or put python3.10 on PATH." >&2
exit 1
