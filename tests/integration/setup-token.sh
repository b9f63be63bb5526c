#!/bin/bash
# CTest fixture: make the throwaway SoftHSMv2 token of the integration suites.
# usage: setup-token.sh DIR LABEL MODULE [P11SMIME]
# P11SMIME: the p11smime binary that generates the token's keys, CSRs and certificate objects
# (tests/CMakeLists.txt passes the one under test; default: make-token.sh's own choice).
# The PIN of this throwaway token is fixed (tests/CMakeLists.txt passes it to the C tests);
# it lives in DIR/user.pin (mode 600) and is never put on a command line.
set -euo pipefail
dir=$1 label=$2 module=$3 p11smime=${4:-}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

if [ -e "$dir/softhsm2.conf" ]; then
	"$top/tokens/remove-token.sh" "$dir"
fi
mkdir -p "$dir"
chmod 700 "$dir"
umask 077
printf '%s\n' "${P11S_TEST_PIN:-246810}" >"$dir/user.pin"
printf '%s\n' "${P11S_TEST_SO_PIN:-13579135}" >"$dir/so.pin"
bin=()
if [ -n "$p11smime" ]; then bin=(--p11smime "$p11smime"); fi
"$top/tokens/make-token.sh" --dir "$dir" --label "$label" --pin-file "$dir/user.pin" \
	--so-pin-file "$dir/so.pin" --module "$module" "${bin[@]}" >"$dir/env.out"
echo "token '$label' ready in $dir"
