#!/bin/bash
# remove-token.sh - delete a throwaway token directory made by tokens/make-token.sh.
#
# Usage: tokens/remove-token.sh DIR
#
# Refuses unless DIR is a real directory (not a symlink), is not /, and holds the
# softhsm2.conf that make-token.sh wrote (recognised by its marker line and a tokendir
# of DIR/tokens), so a mistyped path or /etc/softhsm cannot be wiped.

set -euo pipefail

readonly MARKER='# created by p11smime tokens/make-token.sh'

prog=${0##*/}

die() {
	printf '%s: error: %s\n' "$prog" "$*" >&2
	exit 1
}

if [ $# -ne 1 ] || [ -z "$1" ]; then
	printf 'usage: %s DIR\n' "$prog" >&2
	exit 2
fi
case $1 in
-h | --help)
	printf 'usage: %s DIR\n' "$prog"
	exit 0
	;;
esac

arg=$1
[ ! -L "$arg" ] || die "$arg is a symbolic link; give the directory itself"
[ -d "$arg" ] || die "$arg is not a directory"
dir=$(cd -- "$arg" && pwd -P)
[ "$dir" != / ] || die "refusing to remove /"

conf=$dir/softhsm2.conf
if [ ! -f "$conf" ] || [ -L "$conf" ]; then
	die "$dir has no softhsm2.conf: not a token directory"
fi
grep -qxF "$MARKER" "$conf" || die "$conf was not written by make-token.sh; not removing $dir"
grep -qxF "directories.tokendir = $dir/tokens" "$conf" ||
	die "$conf points at another token directory; not removing $dir"

rm -rf -- "$dir"
printf '%s: removed %s\n' "$prog" "$dir" >&2
