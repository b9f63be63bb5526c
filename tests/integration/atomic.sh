#!/bin/bash
# Atomic outputs (docs/security.md): SIGKILL `sign` and `decrypt` in the middle of a 100 MiB
# message and check that the destination file still holds exactly what it held before. The
# temporary file beside it (DEST.XXXXXX, cli_output_open) cannot be removed by a process that
# is SIGKILLed: the test reports it and checks that it is the only trace (documented).
# usage: atomic.sh BACKEND   (environment: the token fixture, tests/CMakeLists.txt)
set -euo pipefail
backend=${1:-pkcs11}
bin=${P11S_BIN:?}
module=${P11S_TEST_MODULE:?}
pinfile=${P11S_TEST_PIN_FILE:?}
pki=${P11S_TEST_PKI:?}
src=${P11S_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
. "$src/tests/integration/lib.sh"
token=${P11S_TEST_TOKEN:-p11s-test}
tool=("$bin" --backend "$backend" --module "$module" --pin-source "file:$pinfile")

# 100 MiB of 7-bit text lines.
big=$tmp/big.eml
{ printf 'From: a@example.org\nSubject: big\n\n'
  { yes 'The quick brown fox jumps over the lazy dog, again and again and again.' || true; } |
	head -c $((100 * 1024 * 1024)); } >"$big"

# kill_during NAME DEST COMMAND...: start COMMAND writing DEST, SIGKILL it once its temporary
# file holds 1 MiB or 0.3 s after the file appeared (or after 5 s), and check DEST and the
# directory afterwards.
kill_during() {
	local name=$1 dest=$2 i pid rc left dir
	shift 2
	dir=$(dirname "$dest")
	printf 'ORIGINAL CONTENT\n' >"$dest"
	cp "$dest" "$tmp/expected"
	"$@" >/dev/null 2>&1 &
	pid=$!
	for ((i = 0; i < 100; i++)); do
		if compgen -G "$dest.??????" >/dev/null; then
			break
		fi
		sleep 0.05
	done
	# Kill 0.3 s later, or as soon as the temporary output holds 1 MiB (signing 100 MiB is
	# quicker than 0.3 s on a fast machine: the output is then being written).
	for ((i = 0; i < 30; i++)); do
		if [ "$(stat -c %s $dest.?????? 2>/dev/null | sort -n | tail -n1)" -gt 1048576 ] 2>/dev/null; then
			break
		fi
		sleep 0.01
	done
	if kill -0 "$pid" 2>/dev/null; then
		kill -KILL "$pid"
		set +e
		wait "$pid" 2>/dev/null
		rc=$?
		set -e
		check "$name: killed in the middle (status $rc)" [ "$rc" = 137 ]
	else
		set +e
		wait "$pid"
		rc=$?
		set -e
		not_ok "$name: finished (status $rc) before it could be killed; machine too fast?"
	fi
	check "$name: the destination is untouched" cmp -s "$dest" "$tmp/expected"
	left=$(cd "$dir" && ls -A | grep -v -x -e "$(basename "$dest")" -e expected -e big.eml \
		-e enc.eml -e small.eml || true)
	if [ -z "$left" ]; then
		ok "$name: no temporary file left"
	elif [ "$(echo "$left" | wc -l)" = 1 ] && [[ "$left" == "$(basename "$dest")".?????? ]]; then
		# SIGKILL gives no chance to clean up: the documented trace is one DEST.XXXXXX
		# (mode 0600, beside the destination), never a partial DEST.
		ok "$name: only the temporary file $left is left (documented in docs/security.md)"
		rm -f "$dir/$left"
	else
		not_ok "$name: unexpected files left: $(echo "$left" | tr '\n' ' ')"
	fi
	rm -f "$dest"
}

kill_during "sign 100 MiB" "$tmp/signed.eml" \
	"${tool[@]}" sign --key "pkcs11:token=$token;object=rsa2048;type=private" --in "$big" \
	--out "$tmp/signed.eml"
kill_during "sign --opaque 100 MiB" "$tmp/signed.eml" \
	"${tool[@]}" sign --opaque --key "pkcs11:token=$token;object=ec256;type=private" \
	--in "$big" --out "$tmp/signed.eml"

"$bin" encrypt --to "$pki/rsa2048.pem" --in "$big" --out "$tmp/enc.eml"
rm -f "$big"
kill_during "decrypt 100 MiB" "$tmp/plain.eml" \
	"${tool[@]}" decrypt --key "pkcs11:token=$token;object=rsa2048;type=private" \
	--in "$tmp/enc.eml" --out "$tmp/plain.eml"

# Sanity: uninterrupted, decrypt does replace the destination (a small message: CI time).
printf 'From: a@example.org\nSubject: small\n\nsmall\n' >"$tmp/small.eml"
"$bin" encrypt --to "$pki/rsa2048.pem" --in "$tmp/small.eml" --out "$tmp/enc.eml"
printf 'ORIGINAL CONTENT\n' >"$tmp/plain.eml"
expect 0 "decrypt uninterrupted" -- "${tool[@]}" decrypt \
	--key "pkcs11:token=$token;object=rsa2048;type=private" --in "$tmp/enc.eml" --out "$tmp/plain.eml"
check "decrypt replaced the destination" grep -q 'Subject: small' "$tmp/plain.eml"

# A destination that is not a regular file is written in place, never renamed over: a
# temporary file renamed onto /dev/null would replace the device (as root).
mkfifo "$tmp/fifo"
timeout 60 cat "$tmp/fifo" >"$tmp/from-fifo" &
reader=$!
expect 0 "decrypt --out a named pipe" -- "${tool[@]}" decrypt \
	--key "pkcs11:token=$token;object=rsa2048;type=private" --in "$tmp/enc.eml" --out "$tmp/fifo"
wait "$reader" || true
check "the pipe stays a pipe" [ -p "$tmp/fifo" ]
check "the reader got the plaintext" grep -q 'Subject: small' "$tmp/from-fifo"
check "no temporary file beside the pipe" [ -z "$(compgen -G "$tmp/fifo.??????")" ]
expect 0 "encrypt --out /dev/null" -- "$bin" encrypt --to "$pki/rsa2048.pem" --in "$tmp/small.eml" \
	--out /dev/null
check "/dev/null is still the device" [ -c /dev/null ]
expect 2 "--out a directory is refused" -- "$bin" encrypt --to "$pki/rsa2048.pem" \
	--in "$tmp/small.eml" --out "$tmp"
finish
