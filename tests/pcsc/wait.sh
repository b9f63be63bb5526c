#!/bin/bash
# Issue 5 item 8 with a real pcscd and a virtual reader: `tokens` lists the reader and its card,
# `tokens --wait` returns when a card is inserted and exits 3 on timeout; a long-running process
# (a library context with p11s_ctx_watch_readers(), `sign --batch`) notices removal and insertion.
# usage: wait.sh P11S_BIN [TEST_CARD_EVENTS]
#
# The vpcd reader is named like the mock backend's slot ("p11smime mock slot"), so that in parts
# 7 and 8 the mock token counts as the card in that reader (OpenSC names its slots after readers).
# SoftHSM is not on the virtual card: this proves the event handling, not a token on a card.
#
# The reader is Debian's vsmartcard-vpcd (an IFD handler listening on a TCP port); the card is
# python3-virtualsmartcard's VirtualICC (`vicc -t iso7816`; Debian ships the module without the
# `vicc` script, so it is started here from Python, with the module directory on PYTHONPATH and
# a `Crypto` -> `Cryptodome` shim, DESIGN.md). pcscd is our own: reader configuration in a
# private directory (-c), its socket in a private /run/pcscd (a mount namespace) when possible.
# Missing packages skip locally (exit 77) and fail in CI ($CI set).
set -uo pipefail
bin=${1:?usage: wait.sh P11S_BIN [TEST_CARD_EVENTS]}
events=${2:-}
# Debian's interpreter: the packages are installed for it, not for another python3 on PATH.
py=/usr/bin/python3
[ -x "$py" ] || py=python3
vsc=/usr/lib/python3/site-packages/virtualsmartcard
ifd=/usr/lib/pcsc/drivers/serial/libifdvpcd.so

skip() {
	if [ -n "${CI:-}" ]; then
		echo "not ok - pcsc test cannot run in CI: $*"
		exit 1
	fi
	echo "SKIP: $*"
	exit 77
}
command -v pcscd >/dev/null || skip "pcscd missing (Debian package pcscd)"
[ -e "$ifd" ] || skip "vpcd missing (Debian package vsmartcard-vpcd)"
[ -d "$vsc/virtualsmartcard" ] || skip "virtualsmartcard missing (Debian package python3-virtualsmartcard)"
"$py" -c 'import Cryptodome' 2>/dev/null || skip "Cryptodome missing (Debian package python3-pycryptodome)"

# pcscd 1.9.9 always uses /run/pcscd: give it a private one in a mount namespace if we can.
if [ -z "${P11S_PCSC_NS:-}" ]; then
	if unshare -m --propagation private true 2>/dev/null; then
		exec env P11S_PCSC_NS=1 unshare -m --propagation private "$0" "$@"
	fi
	if [ -e /run/pcscd/pcscd.comm ] && pgrep -x pcscd >/dev/null; then
		skip "a system pcscd is running and no private mount namespace is possible"
	fi
else
	mkdir -p /run/pcscd
	mount -t tmpfs -o mode=0755 tmpfs /run/pcscd || skip "cannot mount a private /run/pcscd"
fi

tmp=$(mktemp -d /tmp/p11s-pcsc-XXXXXX)
pass=0 fail=0
ok() { echo "ok - $*"; pass=$((pass + 1)); }
notok() { echo "not ok - $*"; fail=$((fail + 1)); }
cleanup() {
	[ -n "${vicc_pid:-}" ] && kill "$vicc_pid" 2>/dev/null
		[ -n "${ev_pid:-}" ] && kill "$ev_pid" 2>/dev/null
	[ -n "${pcscd_pid:-}" ] && kill "$pcscd_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# A free TCP port for vpcd (it listens, the card connects).
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/reader.conf.d" "$tmp/shim"
printf 'FRIENDLYNAME "p11smime mock slot"\nDEVICENAME /dev/null:%d\nLIBPATH %s\nCHANNELID 0x%X\n' \
	"$port" "$ifd" "$port" >"$tmp/reader.conf.d/vpcd"
ln -s "$("$py" -c 'import Cryptodome, os; print(os.path.dirname(Cryptodome.__file__))')" "$tmp/shim/Crypto"

pcscd -f -c "$tmp/reader.conf.d" >"$tmp/pcscd.log" 2>&1 &
pcscd_pid=$!
for _ in $(seq 50); do [ -S /run/pcscd/pcscd.comm ] && break; sleep 0.1; done
[ -S /run/pcscd/pcscd.comm ] || { cat "$tmp/pcscd.log"; skip "pcscd did not start"; }

insert() {
	PYTHONPATH="$tmp/shim:$vsc" "$py" -c '
import sys, logging
from virtualsmartcard.VirtualSmartcard import VirtualICC
VirtualICC(None, "iso7816", "127.0.0.1", int(sys.argv[1]), logginglevel=logging.ERROR).run()
' "$port" >"$tmp/vicc.log" 2>&1 &
	vicc_pid=$!
}
remove() {
	kill "$vicc_pid" 2>/dev/null
	wait "$vicc_pid" 2>/dev/null
	vicc_pid=
}
insert2() { insert; }
remove2() { remove; }
# card_in2 0|1: wait up to 10 s until pcscd reports the second reader's card in (1) or out (0).
card_in2() {
	for _ in $(seq 50); do
		"$bin" --backend mock --module mock --json tokens 2>/dev/null | "$py" -c '
import json,sys
d=json.load(sys.stdin); r=[x for x in d["readers"] or [] if x["name"].startswith("p11smime mock slot")]
sys.exit(0 if r and r[0]["card_present"]==bool(int(sys.argv[1])) else 1)' "$1" && return 0
		sleep 0.2
	done
	return 1
}
# waitfor FILE TEXT: up to 20 s for TEXT in FILE.
waitfor() {
	for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
	return 1
}
t() { "$bin" --backend mock --module mock "$@"; }

# 1. the reader is listed, without a card
sleep 1
out=$(t tokens 2>&1)
if grep -q 'Reader: p11smime mock slot' <<<"$out" && grep -A1 'Reader: p11smime mock slot' <<<"$out" | grep -q 'card: *none'; then
	ok "tokens lists the virtual reader, no card"
else
	notok "tokens lists the virtual reader, no card"; echo "$out" | sed 's/^/#   /'
fi

# 2. --wait with no card: exit 3 after the timeout
start=$(date +%s)
t tokens --wait --timeout 2 >"$tmp/out" 2>"$tmp/err"
rc=$? elapsed=$(($(date +%s) - start))
if [ $rc = 3 ] && [ $elapsed -ge 2 ] && [ $elapsed -le 6 ]; then
	ok "tokens --wait --timeout 2 without a card exits 3 after about 2 s"
else
	notok "tokens --wait --timeout 2 without a card exits 3 (rc $rc after $elapsed s)"; sed 's/^/#   /' "$tmp/err"
fi
grep -q 'no card' "$tmp/err" && ok "  ... and says so" || notok "  ... and says so"

# 3. --wait returns when a card appears (inserted while waiting)
t tokens --wait --timeout 30 >"$tmp/out" 2>"$tmp/err" &
waiter=$!
sleep 1
kill -0 $waiter 2>/dev/null && ok "tokens --wait is still waiting before the card comes" || notok "tokens --wait is still waiting before the card comes"
start=$(date +%s)
insert
wait $waiter
rc=$? elapsed=$(($(date +%s) - start))
if [ $rc = 0 ] && [ $elapsed -le 15 ]; then
	ok "tokens --wait returns 0 when the card is inserted ($elapsed s)"
else
	notok "tokens --wait returns 0 when the card is inserted (rc $rc after $elapsed s)"; sed 's/^/#   /' "$tmp/err" "$tmp/vicc.log"
fi
grep -q "card present in reader 'p11smime mock slot" "$tmp/err" && ok "  ... naming the reader" || notok "  ... naming the reader"

# 4. with the card in: listed as present, --wait returns at once
out=$(t tokens 2>&1)
grep -A1 'Reader: p11smime mock slot' <<<"$out" | grep -q 'card: *present' && ok "tokens shows the card as present" || { notok "tokens shows the card as present"; echo "$out" | sed 's/^/#   /'; }
t --json tokens >"$tmp/json" 2>/dev/null
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=[x for x in d["readers"] if x["name"].startswith("p11smime mock slot")]; assert r and r[0]["card_present"] is True, d' "$tmp/json" \
	&& ok "tokens --json reports the reader and card" || notok "tokens --json reports the reader and card"
t tokens --wait --timeout 1 >/dev/null 2>&1 && ok "tokens --wait with a card present returns at once" || notok "tokens --wait with a card present returns at once"

# 5. removed again: --wait times out again
remove
sleep 1
t tokens --wait --timeout 1 >/dev/null 2>&1
rc=$?
[ $rc = 3 ] && ok "after removal, tokens --wait times out with exit 3" || notok "after removal, tokens --wait times out with exit 3 (rc $rc)"

# 6. usage
t tokens --timeout 3 >/dev/null 2>&1; [ $? = 2 ] && ok "--timeout without --wait is a usage error" || notok "--timeout without --wait is a usage error"
t tokens --wait --timeout x >/dev/null 2>&1; [ $? = 2 ] && ok "a bad --timeout is a usage error" || notok "a bad --timeout is a usage error"

# 7. card events in a long-running library context (the mock token "in" the reader)
printf '1234\n' >"$tmp/pin"
chmod 600 "$tmp/pin"
if [ -n "$events" ]; then
	insert2
	card_in2 1 && ok "the mock slot's reader has its card" || notok "the mock slot's reader has its card"
	mkfifo "$tmp/ev.in"
	"$events" "$tmp/pin" <"$tmp/ev.in" >"$tmp/ev.out" 2>"$tmp/ev.err" &
	ev_pid=$!
	exec 9>"$tmp/ev.in"
	if waitfor "$tmp/ev.out" ready-remove; then
		sleep 1 # the monitor's first look at the readers
		remove2
		echo removed >&9
		if waitfor "$tmp/ev.out" ready-insert; then
			insert2
			echo inserted >&9
		fi
	fi
	exec 9>&-
	wait "$ev_pid"
	rc=$?
	ev_pid=
	sed -n 's/^\(ok\|not ok\) - /\1 - card events: /p; /^#/p' "$tmp/ev.out"
	pass=$((pass + $(grep -c '^ok' "$tmp/ev.out")))
	fail=$((fail + $(grep -c '^not ok' "$tmp/ev.out")))
	[ $rc = 0 ] && ok "test_card_events exits 0" || { notok "test_card_events exits 0 (rc $rc)"; sed 's/^/#   /' "$tmp/ev.err"; }
	grep -q "card removed from reader 'p11smime mock slot" "$tmp/ev.err" && ok "  ... the removal is logged, naming the reader" || notok "  ... the removal is logged, naming the reader"
	grep -q "card inserted in reader 'p11smime mock slot" "$tmp/ev.err" && ok "  ... the insertion is logged" || notok "  ... the insertion is logged"
fi

# 8. sign --batch notices the removal: the message after it fails at once, the batch stops
[ -n "${vicc_pid:-}" ] || insert2
card_in2 1 || notok "the mock slot's reader has its card again"
mkdir -p "$tmp/batch" "$tmp/signed"
printf 'From: a@example.org\nTo: b@example.org\nSubject: one\n\none\n' >"$tmp/batch/m1.eml"
# m2 is a FIFO: the batch blocks opening it until it is written (then refuses it as not
# seekable, exit 2), which holds the batch while the card is pulled out; m3 comes after.
mkfifo "$tmp/batch/m2.eml"
printf 'From: a@example.org\nTo: b@example.org\nSubject: three\n\nthree\n' >"$tmp/batch/m3.eml"
t -v --pin-source "file:$tmp/pin" sign --key "pkcs11:token=mock;object=ec256;type=private" \
	--batch --out-dir "$tmp/signed" "$tmp/batch/m1.eml" "$tmp/batch/m2.eml" "$tmp/batch/m3.eml" \
	>"$tmp/batch.out" 2>"$tmp/batch.err" &
batch_pid=$!
waitfor "$tmp/batch.err" "signed .*m1.eml" || notok "batch signed the first message"
sleep 1
remove2
card_in2 0 || notok "pcscd saw the card go"
sleep 1 # the batch's monitor sees it too
printf 'From: a@example.org\nTo: b@example.org\nSubject: two\n\ntwo\n' >"$tmp/batch/m2.eml"
wait $batch_pid
rc=$?
[ $rc = 3 ] && ok "sign --batch after the removal exits 3" || { notok "sign --batch after the removal exits 3 (rc $rc)"; sed 's/^/#   /' "$tmp/batch.err"; }
[ -s "$tmp/signed/m1.eml" ] && ok "  ... the message before the removal is signed" || notok "  ... the message before the removal is signed"
[ ! -e "$tmp/signed/m3.eml" ] && ok "  ... the message after it is not written" || notok "  ... the message after it is not written"
grep -q "card removed from reader 'p11smime mock slot" "$tmp/batch.err" && ok "  ... -v logs the removal" || notok "  ... -v logs the removal"
grep -q "m3.eml: .*card removed from reader 'p11smime mock slot.*token 'mock' is not used" "$tmp/batch.err" && ok "  ... the message after it fails naming the reader and token (the mock token itself is still there)" || { notok "  ... the message after it fails naming the reader and token"; sed 's/^/#   /' "$tmp/batch.err"; }

echo "$pass passed, $fail failed"
[ $fail = 0 ]
