#!/bin/bash
# Benchmark of p11smime beside the token's raw rate and beside OpenSSL (issue 9,
# docs/performance.md), on a throwaway SoftHSMv2 token made for this run and removed after.
#
# usage: ci/bench.sh [--build DIR] [--full] [--rounds N] [--gateway] [--one] [--batch] [--large]
#   --build DIR  build directory with src/cli/p11smime (default: build); the raw-rate program
#                is DIR/bench/p11s-bench-raw, compiled here if the bench target was not built
#   --full       also the 1 GiB message (needs ~4 GiB of disk and several minutes)
#   --rounds N   paired rounds for the rate and whole-process comparisons (default 3)
#   --gateway    only the gateway part (milter msgs/s against raw C_Decrypt); that part also
#                runs after the others whenever DIR/src/gateway/p11smime-gateway is built
#                (P11S_BENCH_GW_CONNS, _WORKERS, _SECONDS tune it)
#   --one        only the one-message whole-process part: in-process p11smime, through the
#                agent (full p11smime and the thin p11smime-client) and openssl cms
#   --batch      only the token rates: raw PKCS#11 against sign --batch, with the default
#                --jobs (one signing thread per CPU) and with --jobs 1
#
# Prints every figure with its ratio. Nothing here asserts timings: the output is the result.
# The machine is whatever runs this; rates are taken in interleaved rounds (raw, batch, raw,
# ...) and reported as medians, so that a noisy neighbour hits both sides alike.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
build=$top/build
full=0
rounds=3
gw_only=0
one_only=0
batch_only=0
large_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--build) build=$(cd "$2" && pwd); shift 2 ;;
	--full) full=1; shift ;;
	--rounds) rounds=$2; shift 2 ;;
	--gateway) gw_only=1; shift ;;
	--one) one_only=1; shift ;;
	--batch) batch_only=1; shift ;;
	--large) large_only=1; shift ;;
	*) echo "usage: $0 [--build DIR] [--full] [--rounds N] [--gateway] [--one] [--batch] [--large]" >&2; exit 2 ;;
	esac
done
bin=$build/src/cli/p11smime
[ -x "$bin" ] || { echo "bench: $bin not built" >&2; exit 2; }
module=${P11S_BENCH_MODULE:-/usr/lib/softhsm/libsofthsm2.so}
[ -x /usr/bin/time ] || { echo "bench: /usr/bin/time missing (Debian package time)" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/p11s-bench.XXXXXX")
shm=
[ -d /dev/shm ] && shm=$(mktemp -d /dev/shm/p11s-bench.XXXXXX)
ps_shm=
cleanup() { rm -rf "$work" ${shm:+"$shm"}; }
trap cleanup EXIT
raw=$build/bench/p11s-bench-raw
if [ ! -x "$raw" ]; then
	raw=$work/p11s-bench-raw
	cc -O2 -o "$raw" "$top/bench/raw_token.c" $(pkg-config --cflags --libs p11-kit-1 libcrypto)
fi

label=p11s-bench
"$top/tests/integration/setup-token.sh" "$work/tok" "$label" "$module" "$bin" >/dev/null
. "$work/tok/env.sh"
pin=$P11S_TEST_PIN_FILE
pki=$P11S_TEST_PKI
p11s() { "$bin" --module "$module" --pin-source "file:$pin" "$@"; }
keyuri() { printf 'pkcs11:token=%s;object=%s;type=private' "$label" "$1"; }
# libp11's engine for `openssl cms`; the PIN comes from the file named in the URI (RFC 7512).
# libp11 takes the whole file as the PIN, so that copy has no line end.
engine_pin=$work/engine.pin
(umask 077 && printf '%s' "$(head -n1 "$pin")" >"$engine_pin")
engine_uri() { printf 'pkcs11:token=%s;object=%s;type=private?pin-source=file:%s' "$label" "$1" "$engine_pin"; }
export PKCS11_MODULE_PATH=$module

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
calc() { awk "BEGIN {printf \"%.${2:-2}f\", $1}"; }

# A 7-bit text message of about SIZE bytes (header + base64 text lines).
make_msg() {
	local out=$1 bytes=$2
	{
		printf 'From: Alice <alice-rsa2048@example.org>\nTo: bob@example.org\nSubject: bench\n'
		# Today's date: verify then checks the message as a user would get it (a Date far
		# from the signing time is a date-mismatch, which would end verification early).
		printf 'Date: %s\nMessage-ID: <bench@example.org>\n' "$(LC_ALL=C date -R)"
		printf 'Content-Type: text/plain; charset=us-ascii\n\n'
		head -c $((bytes * 3 / 4)) /dev/urandom | base64 -w 76
	} >"$out"
}

echo "== machine"
echo "nproc: $(nproc)"
echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)"
echo "kernel: $(uname -r)"
echo "openssl: $(openssl version)"
echo "softhsm: $(dpkg-query -W -f '${Version}' softhsm2 2>/dev/null || echo unknown)"
echo "libp11 engine: $(dpkg-query -W -f '${Version}' libengine-pkcs11-openssl 2>/dev/null || echo unknown)"
echo "p11smime: $("$bin" --version)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
sha=$(openssl speed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/ {print $2}' | sed 's/k$//')
# openssl speed prints 1000s of bytes per second
sha_mbs=$(calc "$sha * 1000 / 1048576" 0)
echo "sha256 (openssl speed, 16 KiB blocks): $sha_mbs MiB/s"

if [ "$gw_only" = 0 ]; then
msgs=$work/msgs
mkdir -p "$msgs" "$work/out"
make_msg "$msgs/m0.eml" 4096
if [ "$one_only" = 0 ] && [ "$large_only" = 0 ]; then
echo
echo "== token rates: raw PKCS#11 vs p11smime sign --batch (4 KiB messages), $rounds rounds"
n_rsa=${P11S_BENCH_N_RSA:-600}
n_ec=${P11S_BENCH_N_EC:-2000}
for i in $(seq 1 "$n_ec"); do ln "$msgs/m0.eml" "$msgs/m$i.eml"; done
files() { for i in $(seq 1 "$1"); do printf '%s\n' "$msgs/m$i.eml"; done; }
# rate KEY N [ARGS]: messages per second of one batch run of N messages, minus the run of 1
# message (process start, module load, login), so that it is the steady per-message rate.
# Each run writes into a new directory and nothing is deleted until the end: ext4 scans its
# inode bitmaps for "recently deleted" inodes when files are created right after many were
# removed (recently_deleted(), 60% of a P-256 batch in perf when the outputs of the previous
# run had just been deleted), which would measure the benchmark's clean-up, not the signer.
batch_seq=0
batch_rate() {
	local key=$1 n=$2 t0 t1 t2 d
	shift 2
	batch_seq=$((batch_seq + 1))
	d=$work/out-$batch_seq
	mkdir "$d" "$d-1"
	t0=$(now)
	p11s sign --key "$(keyuri "$key")" --batch "$@" --out-dir "$d-1" "$msgs/m1.eml"
	t1=$(now)
	files "$n" | xargs -s 2000000 sh -c 'exec "$0" "$@"' "$bin" --module "$module" \
		--pin-source "file:$pin" sign --key "$(keyuri "$key")" --batch "$@" --out-dir "$d"
	t2=$(now)
	calc "($n - 1) / (($t2 - $t1) - ($t1 - $t0))" 1
	echo
}
: >"$work/r_rsa"; : >"$work/r_ec"; : >"$work/r_dec"; : >"$work/b_rsa"; : >"$work/b_ec"
: >"$work/b1_rsa"; : >"$work/b1_ec"
for r in $(seq 1 "$rounds"); do
	"$raw" "$module" "$label" "$pin" 1 rsa2048 "$pki/rsa2048.pem" ec256 >"$work/raw.out"
	awk '/RSA_PKCS-rsa2048/ && /C_Sign/ {print $(NF-1)}' "$work/raw.out" >>"$work/r_rsa"
	awk '/ECDSA/ {print $(NF-1)}' "$work/raw.out" >>"$work/r_ec"
	awk '/C_Decrypt/ {print $(NF-1)}' "$work/raw.out" >>"$work/r_dec"
	batch_rate rsa2048 "$n_rsa" >>"$work/b_rsa"
	batch_rate ec256 "$n_ec" >>"$work/b_ec"
	batch_rate rsa2048 "$n_rsa" --jobs 1 >>"$work/b1_rsa"
	batch_rate ec256 "$n_ec" --jobs 1 >>"$work/b1_ec"
	echo "round $r: raw RSA $(tail -n1 "$work/r_rsa")/s, batch RSA $(tail -n1 "$work/b_rsa")/s" \
		"(--jobs 1: $(tail -n1 "$work/b1_rsa")/s); raw P-256 $(tail -n1 "$work/r_ec")/s, batch P-256" \
		"$(tail -n1 "$work/b_ec")/s (--jobs 1: $(tail -n1 "$work/b1_ec")/s); raw RSA decrypt $(tail -n1 "$work/r_dec")/s"
done
r_rsa=$(median <"$work/r_rsa"); r_ec=$(median <"$work/r_ec"); r_dec=$(median <"$work/r_dec")
b_rsa=$(median <"$work/b_rsa"); b_ec=$(median <"$work/b_ec")
b1_rsa=$(median <"$work/b1_rsa"); b1_ec=$(median <"$work/b1_ec")
echo "raw C_Sign CKM_RSA_PKCS RSA-2048 (DigestInfo):   $r_rsa ops/s"
echo "raw C_Sign CKM_ECDSA P-256 (digest):             $r_ec ops/s"
echo "raw C_Decrypt CKM_RSA_PKCS RSA-2048:             $r_dec ops/s"
echo "sign --batch RSA-2048, 4 KiB, --jobs $(nproc):           $b_rsa msgs/s = $(calc "100 * $b_rsa / $r_rsa" 1)% of raw (target >= 85%)"
echo "sign --batch P-256, 4 KiB, --jobs $(nproc):              $b_ec msgs/s = $(calc "100 * $b_ec / $r_ec" 1)% of raw (target >= 50%)"
echo "sign --batch RSA-2048, 4 KiB, --jobs 1:           $b1_rsa msgs/s = $(calc "100 * $b1_rsa / $r_rsa" 1)% of raw"
echo "sign --batch P-256, 4 KiB, --jobs 1:              $b1_ec msgs/s = $(calc "100 * $b1_ec / $r_ec" 1)% of raw"
fi # one_only
[ "$batch_only" = 1 ] && exit 0

if [ "$large_only" = 0 ]; then
echo
echo "== one 4 KiB message, whole process: p11smime sign vs openssl cms -sign -engine pkcs11"
# Wall time and CPU time (user + system of the command and its children, in ms) of each, in
# paired runs, from bash's `time` keyword: it forks and waits for the command itself and
# nothing else, so that no helper process (a subshell, awk, env) is counted in a contender's
# time — at 3-10 ms per run such a helper would be a third of the figure. p11smime makes its
# output durable (fsync of the file and its directory, docs/security.md) and openssl does
# not, which only the wall time sees.
# timed W C CMD...: run CMD; append its wall time to file W (EPOCHREALTIME, microseconds) and
# its CPU time to file C (ms; bash's `time` resolution is 1 ms).
timed() {
	local w=$1 c=$2 u s t0 t1 TIMEFORMAT='%3U %3S' rc=0
	shift 2
	# (a brace group, not $(...): no subshell between the two clock readings)
	t0=$EPOCHREALTIME
	{ time "$@" >/dev/null 2>"$work/timed.err" || rc=$?; } 2>"$work/timed.t"
	t1=$EPOCHREALTIME
	[ "$rc" = 0 ] || { cat "$work/timed.err" >&2; exit 1; }
	read -r u s <"$work/timed.t"
	calc "($t1 - $t0) * 1000" 2 >>"$w"
	echo >>"$w"
	calc "($u + $s) * 1000" 1 >>"$c"
	echo >>"$c"
}
m=$msgs/m0.eml
# Through `p11smime agent` (docs/agent.md), whole client process, with the agent started once
# and warmed by one signature per key: the full `p11smime --agent require sign` (which loads
# all of the tool's shared libraries before it dials the agent), and the thin client
# `p11smime-client` (libc only; the same command line, docs/agent.md "The thin client").
client=$build/src/cli/p11smime-client
[ -x "$client" ] || { echo "bench: $client not built" >&2; exit 2; }
agent_sock=$work/agent.sock
"$bin" --module "$module" --pin-source "file:$pin" agent --socket "$agent_sock" \
	--log "$work/agent.log" &
agent_pid=$!
trap 'kill "$agent_pid" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [ -S "$agent_sock" ] && break; sleep 0.05; done
# Exported, not passed through env(1): that would add a process to the clients' time only.
export P11SMIME_AGENT_SOCK=$agent_sock
for key in rsa2048 ec256; do
	"$client" --agent require sign --key "$(keyuri "$key")" \
		--in "$m" --out "$work/o4.eml"
done
for key in rsa2048 ec256; do
	for f in w_p c_p w_o c_o w_a c_a w_t c_t; do : >"$work/$f"; done
	for r in $(seq 1 $((rounds * 4))); do
		timed "$work/w_p" "$work/c_p" "$bin" --agent never --module "$module" \
			--pin-source "file:$pin" sign --key "$(keyuri "$key")" --in "$m" --out "$work/o1.eml"
		timed "$work/w_a" "$work/c_a" "$bin" \
			--agent require sign --key "$(keyuri "$key")" --in "$m" --out "$work/o3.eml"
		timed "$work/w_t" "$work/c_t" "$client" \
			--agent require sign --key "$(keyuri "$key")" --in "$m" --out "$work/o4.eml"
		timed "$work/w_o" "$work/c_o" openssl cms -sign -engine pkcs11 -keyform engine \
			-inkey "$(engine_uri "$key")" -signer "$pki/$key.pem" -md sha256 -in "$m" \
			-out "$work/o2.eml"
	done
	# Same signature structure from all three p11smime paths (the boundary and signingTime
	# differ per run, so the check is on what can be compared: both verify).
	for o in o1 o3 o4; do
		"$bin" verify --trust "$pki/root.pem" --certs "$pki/intermediate.pem" \
			--no-sender-check --in "$work/$o.eml" >/dev/null || { echo "bench: $o.eml does not verify" >&2; exit 1; }
	done
	wp=$(grep . "$work/w_p" | median); wo=$(grep . "$work/w_o" | median)
	wa=$(grep . "$work/w_a" | median); wt=$(grep . "$work/w_t" | median)
	cp=$(grep . "$work/c_p" | median); co=$(grep . "$work/c_o" | median)
	ca=$(grep . "$work/c_a" | median); ct=$(grep . "$work/c_t" | median)
	echo "$key: wall p11smime $wp ms, openssl (engine) $wo ms: $(calc "$wp / $wo" 2)x; CPU p11smime $cp ms, openssl $co ms: $(calc "$cp / $co" 2)x (medians of $((rounds * 4)) interleaved runs; target <= 1)"
	echo "$key: wall via agent, full p11smime client $wa ms = $(calc "$wa / $wo" 2)x openssl; client CPU $ca ms (the agent's own CPU is not in it)"
	echo "$key: wall via agent, p11smime-client $wt ms = $(calc "$wt / $wo" 2)x openssl (target <= 0.5); client CPU $ct ms"
done
"$bin" agent --stop --socket "$agent_sock" >/dev/null 2>&1 || kill "$agent_pid" 2>/dev/null || true
wait "$agent_pid" 2>/dev/null || true
unset P11SMIME_AGENT_SOCK
trap cleanup EXIT

fi # large_only
[ "$one_only" = 1 ] && { echo; echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; }
echo
echo "== large messages: wall time and peak RSS (/usr/bin/time), p11smime beside openssl cms"
sizes="1 100"
[ "$full" = 1 ] && sizes="$sizes 1024"
# measure LABEL CMD...: "LABEL  <seconds> s  <MiB> MiB", and the seconds in $last_s
measure() {
	local what=$1
	shift
	/usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null 2>"$work/err" || {
		echo "$what: FAILED"; sed 's/^/    /' "$work/err" | head -3; last_s=0; return 0; }
	read -r last_s kb <"$work/time"
	printf '  %-44s %8.2f s  %8.1f MiB\n' "$what" "$last_s" "$(calc "$kb / 1024" 1)"
}
for mib in $sizes; do
	big=$work/big.eml
	make_msg "$big" $((mib * 1048576))
	echo "-- $mib MiB message"
	measure "p11smime sign (RSA-2048, multipart/signed)" \
		"$bin" --module "$module" --pin-source "file:$pin" sign --key "$(keyuri rsa2048)" \
		--in "$big" --out "$work/s1.eml"
	ps=$last_s
	# The same into tmpfs, where fsync() costs nothing: the difference is what durability
	# (fsync of the output and its directory, docs/security.md) costs on this disk.
	if [ -d "$shm" ]; then
		measure "p11smime sign, output on tmpfs (no disk sync)" \
			"$bin" --module "$module" --pin-source "file:$pin" sign --key "$(keyuri rsa2048)" \
			--in "$big" --out "$shm/s1.eml"
		ps_shm=$last_s
		rm -f "$shm/s1.eml"
	fi
	measure "openssl cms -sign -binary (engine)" openssl cms -sign -binary -engine pkcs11 \
		-keyform engine -inkey "$(engine_uri rsa2048)" -signer "$pki/rsa2048.pem" -md sha256 \
		-certfile "$pki/intermediate.pem" -in "$big" -out "$work/s2.eml"
	measure "p11smime verify" "$bin" verify --trust "$pki/root.pem" --certs "$pki/intermediate.pem" \
		--in "$work/s1.eml"
	pv=$last_s
	measure "openssl cms -verify -binary" openssl cms -verify -binary -CAfile "$pki/root.pem" \
		-purpose any -in "$work/s2.eml" -out /dev/null
	measure "p11smime encrypt (AES-256-GCM, RSA-2048)" "$bin" encrypt --to "$pki/rsa2048.pem" \
		--in "$big" --out "$work/e1.eml"
	measure "openssl cms -encrypt -binary -aes-256-gcm" openssl cms -encrypt -binary -aes-256-gcm \
		-in "$big" -out "$work/e2.eml" "$pki/rsa2048.pem"
	measure "p11smime decrypt (token RSA-2048)" "$bin" --module "$module" --pin-source "file:$pin" \
		decrypt --key "$(keyuri rsa2048)" --in "$work/e1.eml" --out "$work/d1.eml"
	measure "openssl cms -decrypt (engine)" openssl cms -decrypt -binary -engine pkcs11 -keyform engine \
		-inkey "$(engine_uri rsa2048)" -recip "$pki/rsa2048.pem" -in "$work/e2.eml" -out "$work/d2.eml"
	if [ "$mib" = 100 ]; then
		echo "  sign   $(calc "100 / $ps" 0) MiB/s = $(calc "100 * (100 / $ps) / $sha_mbs" 1)% of SHA-256 (target >= 50%), durable on disk"
		if [ -n "$ps_shm" ]; then
			echo "  sign   $(calc "100 / $ps_shm" 0) MiB/s = $(calc "100 * (100 / $ps_shm) / $sha_mbs" 1)% of SHA-256 without the disk sync (durability: $(calc "$ps - $ps_shm" 2) s of $ps s)"
		fi
		echo "  verify $(calc "100 / $pv" 0) MiB/s = $(calc "100 * (100 / $pv) / $sha_mbs" 1)% of SHA-256 (target >= 50%)"
	fi
	rm -f "$work"/s?.eml "$work"/e?.eml "$work"/d?.eml "$big"
done
fi # gw_only
[ "$large_only" = 1 ] && { echo; echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"; exit 0; }

# ---- the gateway: messages per second decrypted through the milter, without an MTA ----------
# bench/milter_client.py speaks the libmilter wire protocol to p11smime-gateway over a unix
# socket, CONNS connections at once, each sending encrypted 4 KiB messages (RSA-2048 key on the
# token) one after another and checking that every reply carries the decrypted body. Rounds
# interleave the raw C_Decrypt rate (bench/raw_token.c: one session, one thread; and P copies
# at once, P = the token sessions the milter run can use = min(conns, workers), summed) with
# the milter runs; medians and both ratios are printed.
gw=$build/src/gateway/p11smime-gateway
if [ -x "$gw" ]; then
	echo
	echo "== gateway: msgs/s decrypted through the milter (no MTA) vs raw C_Decrypt, $rounds rounds"
	gw_secs=${P11S_BENCH_GW_SECONDS:-5}
	gw_conns=${P11S_BENCH_GW_CONNS:-1 4 8}
	gw_workers=${P11S_BENCH_GW_WORKERS:-4}
	mkdir -p "$work/gw/spool"
	cat >"$work/gw/gateway.conf" <<EOF
[milter]
socket = unix:$work/gw/milter.sock
workers = $gw_workers
max-message-size = 10M
spool = $work/gw/spool
log = stderr

[token]
module = $module
uri = pkcs11:token=$label
pin-source = file:$pin
sessions = $gw_workers

[inbound]
decrypt = yes
verify = no
undecryptable = pass
authserv-id = bench.test
EOF
	make_msg "$work/gw/plain.eml" 4096
	printf '\nBENCH-PLAINTEXT-MARKER\n' >>"$work/gw/plain.eml"
	"$bin" encrypt --to "$pki/rsa2048.pem" --in "$work/gw/plain.eml" --out "$work/gw/enc.eml"
	echo "message: $(wc -c <"$work/gw/plain.eml") octets plain, $(wc -c <"$work/gw/enc.eml") encrypted to RSA-2048; workers = sessions = $gw_workers; $gw_secs s per run"
	"$gw" --config "$work/gw/gateway.conf" 2>"$work/gw/gateway.log" &
	gw_pid=$!
	trap 'kill "$gw_pid" 2>/dev/null; wait "$gw_pid" 2>/dev/null; cleanup' EXIT
	for _ in $(seq 1 100); do
		grep -q "listening on" "$work/gw/gateway.log" 2>/dev/null && break
		kill -0 "$gw_pid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q "listening on" "$work/gw/gateway.log" || { cat "$work/gw/gateway.log"; exit 1; }
	client() {
		python3 "$top/bench/milter_client.py" --conns "$1" --seconds "$gw_secs" \
			--expect BENCH-PLAINTEXT-MARKER --mark decrypted "unix:$work/gw/milter.sock" \
			sender@example.com alice-rsa2048@example.org "$work/gw/enc.eml"
	}
	# Warm-up (and a check): every reply must hold the decrypted body, or the run stops.
	client 1 >/dev/null || { echo "gateway warm-up failed"; tail -5 "$work/gw/gateway.log"; exit 1; }
	# raw_par P: summed C_Decrypt rate of P raw programs started together (P sessions, P
	# threads of the token); their sign phases and decrypt phases (1 s each) run side by side.
	# SoftHSM's file store now and then answers a C_Login made while other processes open the
	# same token with CKR_USER_PIN_NOT_INITIALIZED (0x102): such a try is made again.
	raw_par() {
		local i pids bad
		for _ in 1 2 3 4 5; do
			pids=
			bad=0
			for i in $(seq 1 "$1"); do
				"$raw" "$module" "$label" "$pin" 1 rsa2048 "$pki/rsa2048.pem" ec256 \
					>"$work/raw.$i" 2>"$work/raw.$i.err" &
				pids="$pids $!"
			done
			# (not a bare `wait`: the gateway is a background job of this shell too)
			for i in $pids; do wait "$i" || bad=1; done
			[ "$bad" = 0 ] && break
			cat "$work"/raw.*.err >&2
		done
		[ "$bad" = 0 ] || return 1
		for i in $(seq 1 "$1"); do cat "$work/raw.$i"; done |
			awk '/C_Decrypt/ {s += $(NF-1)} END {printf "%.1f\n", s}'
	}
	sess() { if [ "$1" -lt "$gw_workers" ]; then echo "$1"; else echo "$gw_workers"; fi; }
	gw_par=$(for c in $gw_conns; do sess "$c"; done | sort -un)
	for p in $gw_par; do : >"$work/gw/r_dec_$p"; done
	for c in $gw_conns; do : >"$work/gw/m_$c"; done
	for r in $(seq 1 "$rounds"); do
		line="round $r: raw C_Decrypt"
		for p in $gw_par; do
			raw_par "$p" >>"$work/gw/r_dec_$p"
			line="$line x$p $(tail -n1 "$work/gw/r_dec_$p")/s"
		done
		for c in $gw_conns; do
			client "$c" >"$work/gw/client.out" || { cat "$work/gw/client.out"; exit 1; }
			sed -n 's/^milter .* = \([0-9.]*\) msgs\/s.*/\1/p' "$work/gw/client.out" >>"$work/gw/m_$c"
			line="$line; milter $c conns $(tail -n1 "$work/gw/m_$c")/s"
		done
		echo "$line"
	done
	for p in $gw_par; do
		printf 'raw C_Decrypt CKM_RSA_PKCS RSA-2048, %s session(s) at once: %s ops/s\n' "$p" \
			"$(median <"$work/gw/r_dec_$p")"
	done
	g_dec=$(median <"$work/gw/r_dec_1" 2>/dev/null || true)
	for c in $gw_conns; do
		g=$(median <"$work/gw/m_$c")
		p=$(sess "$c")
		g_par=$(median <"$work/gw/r_dec_$p")
		printf 'milter decrypt, 4 KiB, %2s connection(s): %s msgs/s = %s%% of raw with %s session(s)' \
			"$c" "$g" "$(calc "100 * $g / $g_par" 1)" "$p"
		if [ -s "$work/gw/r_dec_1" ] && [ "$p" != 1 ]; then
			printf ', %s%% of raw with 1' "$(calc "100 * $g / $g_dec" 1)"
		fi
		echo
	done
	kill -USR1 "$gw_pid"
	sleep 0.3
	grep "counters:" "$work/gw/gateway.log" | tail -n1 | sed 's/^.*counters: /gateway counters: /'
	kill "$gw_pid"
	wait "$gw_pid" 2>/dev/null || true
	trap cleanup EXIT
elif [ "$gw_only" = 1 ]; then
	echo "bench: $gw not built (needs libmilter-dev)" >&2
	exit 2
fi
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
