#!/bin/bash
# Issue 5 item 8 with a real pcscd and a virtual reader: `tokens` lists the reader and its card,
# `tokens --wait` returns when a card is inserted and exits 3 on timeout.
# usage: wait.sh P11S_BIN
#
# The reader is Debian's vsmartcard-vpcd (an IFD handler listening on a TCP port); the card is
# python3-virtualsmartcard's VirtualICC (`vicc -t iso7816`; Debian ships the module without the
# `vicc` script, so it is started here from Python, with the module directory on PYTHONPATH and
# a `Crypto` -> `Cryptodome` shim, DESIGN.md). pcscd is our own: reader configuration in a
# private directory (-c), its socket in a private /run/pcscd (a mount namespace) when possible.
# Missing packages skip locally (exit 77) and fail in CI ($CI set).
set -uo pipefail
bin=${1:?usage: wait.sh P11S_BIN}
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
	[ -n "${pcscd_pid:-}" ] && kill "$pcscd_pid" 2>/dev/null
	wait 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT

# A free TCP port for vpcd (it listens, the card connects).
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p "$tmp/reader.conf.d" "$tmp/shim"
printf 'FRIENDLYNAME "p11smime test vpcd"\nDEVICENAME /dev/null:%d\nLIBPATH %s\nCHANNELID 0x%X\n' \
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
t() { "$bin" --backend mock --module mock "$@"; }

# 1. the reader is listed, without a card
sleep 1
out=$(t tokens 2>&1)
if grep -q 'Reader: p11smime test vpcd' <<<"$out" && grep -A1 'Reader: p11smime test vpcd' <<<"$out" | grep -q 'card: *none'; then
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
grep -q "card present in reader 'p11smime test vpcd" "$tmp/err" && ok "  ... naming the reader" || notok "  ... naming the reader"

# 4. with the card in: listed as present, --wait returns at once
out=$(t tokens 2>&1)
grep -A1 'Reader: p11smime test vpcd' <<<"$out" | grep -q 'card: *present' && ok "tokens shows the card as present" || { notok "tokens shows the card as present"; echo "$out" | sed 's/^/#   /'; }
t --json tokens >"$tmp/json" 2>/dev/null
"$py" -c 'import json,sys; d=json.load(open(sys.argv[1])); r=[x for x in d["readers"] if x["name"].startswith("p11smime test vpcd")]; assert r and r[0]["card_present"] is True, d' "$tmp/json" \
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

echo "$pass passed, $fail failed"
[ $fail = 0 ]
