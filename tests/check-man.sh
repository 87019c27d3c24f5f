#!/bin/sh
# The man pages must be clean under mandoc's linter, warnings included.
set -eu
src=$1
pages=$(ls "$src"/man/*.[1-8] 2>/dev/null || true)
[ -n "$pages" ] || { echo "no man pages in $src/man"; exit 1; }
out=$(mandoc -Tlint -Wwarning $pages 2>&1 || true)
if [ -n "$out" ]; then
        echo "$out"
        exit 1
fi
echo "lint clean: $pages"
