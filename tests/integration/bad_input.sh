#!/bin/bash
# The bad-input corpus (tests/data/bad/, README.md there) and large hostile cases made here at
# run time (deep nesting, a 10 MB header line, many recipients, a 20 MB signature part) go to
# `verify`, `decrypt` (mock token) and `unwrap`. Each must end with exit 1 or 2 and a one-line
# reason (on stderr; verify and unwrap may give it in their report on stdout, as
# "reason: CODE: ..." or "error: ..." lines, then stderr is empty): never exit 0, never a crash (status >= 128) or a sanitizer report, never
# an output file (nor a temporary file beside it).
# usage: bad_input.sh [K/N]   (environment: P11S_BIN, P11S_SOURCE_DIR; no token needed)
#   K/N: run only the K-th of N shards of the cases (CTest runs the shards in parallel).
set -euo pipefail
shard=${1:-1/1}
shard_k=${shard%/*}
shard_n=${shard#*/}
case_no=0
src=${P11S_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
bin=${P11S_BIN:?P11S_BIN must name the p11smime tool}
. "$src/tests/integration/lib.sh"
bad=$src/tests/data/bad
pki=$src/tests/fuzz/pki
printf '1234\n' >"$tmp/pin"
chmod 600 "$tmp/pin"
mock=(--backend mock --module mock --pin-source "file:$tmp/pin")
trust=(--trust "$pki/ca.pem" --at 2030-01-01T00:00:00Z)
have_unwrap=0
if "$bin" unwrap --help >/dev/null 2>&1; then
	have_unwrap=1
fi
# Whatever a sanitizer build prints must fail the case, not just be stderr noise.
export ASAN_OPTIONS=${ASAN_OPTIONS:-}${ASAN_OPTIONS:+:}exitcode=97
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1}

# run_case NAME FILE ALLOWED... -- COMMAND...: ALLOWED are the acceptable exit statuses.
run_case() {
	local name=$1 file=$2 got lines
	shift 2
	local allowed=()
	while [ "$1" != "--" ]; do
		allowed+=("$1")
		shift
	done
	shift
	rm -rf "$tmp/o"
	mkdir "$tmp/o"
	local t0=$(date +%s%N)
	set +e
	timeout 60 "$@" --in "$file" --out "$tmp/o/out" >"$tmp/stdout" 2>"$tmp/stderr"
	got=$?
	set -e
	lines=$(wc -l <"$tmp/stderr")
	local why=""
	if [ "$got" -ge 124 ]; then
		why="crashed or hung (exit $got)"
	elif grep -qE 'Sanitizer|runtime error:|LeakSanitizer' "$tmp/stderr"; then
		why="sanitizer report"
	elif [[ ! " ${allowed[*]} " == *" $got "* ]]; then
		why="exit $got, expected ${allowed[*]}"
	elif [ "$got" -ne 0 ] && [ -n "$(ls -A "$tmp/o")" ]; then
		why="left $(ls -A "$tmp/o" | tr '\n' ' ')"
	elif [ "$got" -ne 0 ] && [ "$lines" -gt 1 ]; then
		why="$lines lines on stderr, expected at most one"
	elif [ "$got" -ne 0 ] && [ "$lines" -eq 0 ] && ! grep -qE '^ *(reason|error): ' "$tmp/stdout"; then
		# verify and unwrap put their reasons in the report on stdout, the others on stderr.
		why="exit $got without a reason"
	fi
	if [ -z "$why" ]; then
		ok "$name (exit $got, $((($(date +%s%N) - t0) / 1000000)) ms)"
	else
		not_ok "$name: $why"
		head -c 600 "$tmp/stderr" | sed 's/^/#   stderr: /' | head -5
	fi
}

# Expected verify status: 1 or 2 for everything, except the micalg cases (RFC 8551 §3.5.3.2:
# a receiver tolerates a wrong or missing micalg; the signature decides, with a warning).
feed() {
	local f=$1 name
	name=$(basename "$f")
	case_no=$((case_no + 1))
	if [ $(((case_no - 1) % shard_n + 1)) != "$shard_k" ]; then
		return 0
	fi
	case "$name" in
	micalg-*)
		run_case "verify $name" "$f" 0 -- "$bin" verify "${trust[@]}"
		check "verify $name warns micalg-mismatch" grep -q micalg-mismatch "$tmp/stdout"
		;;
	*)
		run_case "verify $name" "$f" 1 2 -- "$bin" verify "${trust[@]}"
		;;
	esac
	run_case "decrypt $name" "$f" 1 2 -- "$bin" "${mock[@]}" decrypt
	if [ "$have_unwrap" = 1 ]; then
		case "$name" in
		micalg-*) run_case "unwrap $name" "$f" 0 -- "$bin" "${mock[@]}" unwrap "${trust[@]}" ;;
		*) run_case "unwrap $name" "$f" 1 2 -- "$bin" "${mock[@]}" unwrap "${trust[@]}" ;;
		esac
	fi
}

for f in "$bad"/*.eml; do
	feed "$f"
done

# --- large cases, made here so that the repository stays small ---
g=$tmp/gen
mkdir "$g"
good=$bad/micalg-missing.eml # a valid signed message (micalg aside)
# Multipart nesting 1000 deep, as the root and inside a multipart/signed part 1.
nest() {
	local depth=$1 i
	for ((i = 0; i < depth; i++)); do
		printf 'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' "$i" "$i"
	done
	printf 'Content-Type: text/plain\n\ndeep\n'
	for ((i = depth - 1; i >= 0; i--)); do
		printf '\n--b%d--\n' "$i"
	done
}
{ printf 'From: alice@example.org\nMIME-Version: 1.0\n'; nest 1000; } >"$g/nest-1000-root.eml"
{ printf 'From: alice@example.org\nMIME-Version: 1.0\nContent-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary=s\n\n--s\n'
  nest 1000
  printf '\n--s\n'
  sed -n '/^Content-Type: application\/pkcs7-signature/,$p' "$good" | sed '/^--/,$d'
  printf '\n--s--\n'; } >"$g/nest-1000-signed.eml"
{ printf 'From: alice@example.org\nMIME-Version: 1.0\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\n'; nest 1000; } \
	>"$g/nest-1000-enveloped.eml"
# A 10 MB header line, before a signed and before an enveloped message.
line() { printf 'Subject: '; head -c 10485760 /dev/zero | tr '\0' 'A'; printf '\n'; }
{ line; cat "$good"; } >"$g/header-line-10mb-signed.eml"
{ line; cat "$bad/recipient-no-key.eml"; } >"$g/header-line-10mb-enveloped.eml"
# 10 MB of header fields of normal length.
x=$(head -c 5000 /dev/zero | tr '\0' x)
{ for ((i = 0; i < 2000; i++)); do printf 'X-Filler-%d: %s\n' "$i" "$x"; done
  cat "$good"; } >"$g/header-section-10mb.eml"
# More recipients than the limit (docs/security.md), none of them on the token.
args=()
for ((i = 0; i < 1100; i++)); do
	args+=(--to "$pki/bob.pem")
done
printf 'From: alice@example.org\nSubject: many\n\nmany recipients\n' >"$tmp/plain.txt"
"$bin" encrypt "${args[@]}" --in "$tmp/plain.txt" >"$g/recipients-1100.eml"
# A 20 MB p7s of base64 zeros (over the 64 MiB limit it would be refused unread; under it, it
# must still be refused as DER).
{ sed '/^Content-Type: application\/pkcs7-signature/,$d' "$good"
  printf 'Content-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\n'
  head -c 15000000 /dev/zero | openssl base64 -e
  printf '\n--%s--\n' "$(sed -n 's/.*boundary="\([^"]*\)".*/\1/p' "$good")"; } >"$g/p7s-20mb.eml"
# RFC 9788 header protection read back (verify_protected.c) on hostile fields: part 1 claims
# hp with an unterminated quote, 5000 HP-Outer fields and a 60 kB Subject (the signature no
# longer holds: exit 1, one reason, nothing else).
b=$(sed -n 's/.*boundary="\([^"]*\)".*/\1/p' "$good")
awk -v b="--$b" -v subj="$(head -c 60000 /dev/zero | tr '\0' S)" '
	$0 == b && !done { print; print "Content-Type: text/plain; hp=\"clear";
		for (i = 0; i < 5000; i++) printf "HP-Outer: Subject: [...] %d\n", i
		print "Subject: " subj; done = 1; next } { print }' "$good" >"$g/protected-hostile.eml"
for f in "$g"/*.eml; do
	feed "$f"
done
finish
