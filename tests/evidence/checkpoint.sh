#!/bin/bash
# Audit log checkpoints (issue 23 item 7, docs/evidence.md "Checkpoints") on the throwaway
# SoftHSMv2 token, with a real RFC 3161 TSA on loopback: periodic and final checkpoints
# signed by the token key and time-stamped; `audit verify` detects, WITHOUT --expect-head, a
# cut tail (whole records, into a checkpoint, back to a periodic checkpoint) and a rewritten
# record whose chain was recomputed without the key; a format 1 (pre-checkpoint) log still
# verifies, with a warning. usage: checkpoint.sh [BACKEND]
set -euo pipefail
backend=${1:-pkcs11}
here=$(cd "$(dirname "$0")" && pwd)
. "$P11S_SOURCE_DIR/tests/integration/lib.sh"

bin=$P11S_BIN
pki=$P11S_TEST_PKI
p11s() { "$bin" --backend "$backend" --module "$P11S_TEST_MODULE" \
	--pin-source "file:$P11S_TEST_PIN_FILE" "$@"; }
keyuri() { printf 'pkcs11:token=%s;object=%s;type=private' "$P11S_TEST_TOKEN" "$1"; }
exec </dev/null

ts=$tmp/tsa
trap 'rc=$?; "$here/tsa.sh" stop "$ts"; rm -rf "$tmp"; exit $rc' EXIT
tsa=$("$here/tsa.sh" start "$ts" "$pki")

mkdir "$tmp/in" "$tmp/out.d"
for i in 1 2 3 4 5; do
	printf 'From: alice-rsa2048@example.org\nTo: bob@example.org\nSubject: n%s\n\nmessage %s\n' \
		"$i" "$i" >"$tmp/in/m$i.eml"
done
log=$tmp/audit.log

# One run of five signatures, a checkpoint every 2 records, time-stamped:
#   1 sign, 2 sign, 3 ckpt(covers 2), 4 sign, 5 sign, 6 ckpt(5), 7 sign, 8 final ckpt(7).
expect 0 "batch sign, --audit-checkpoint-every 2, --tsa" -- \
	p11s sign --key "$(keyuri rsa2048)" --batch --out-dir "$tmp/out.d" --audit-log "$log" \
	--audit-checkpoint-every 2 --tsa "$tsa/good" "$tmp/in/m1.eml" "$tmp/in/m2.eml" \
	"$tmp/in/m3.eml" "$tmp/in/m4.eml" "$tmp/in/m5.eml"
check "  ... 3 checkpoints at records 3, 6, 8 (the last one final)" python3 -c '
import json,sys
L=[json.loads(l) for l in open(sys.argv[1])]
c=[(x["seq"],x["covers"],x["final"]) for x in L if x["operation"]=="checkpoint"]
assert c==[(3,2,False),(6,5,False),(8,7,True)], c
assert all(x.get("format")==2 for x in L), L
' "$log"
expect 0 "audit verify: intact, anchored" -- "$bin" --json audit verify "$log"
check "  ... format 2, anchored, last checkpoint final, time-stamped (valid), by the token key" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and d["format"]==2 and d["checkpoints"]==3 and d["anchored"], d
c=d["last_checkpoint"]
assert c["final"] and c["covers"]==7 and c["timestamp"] and c["timestamp_valid"], c
assert "alice-rsa2048" in c["signer"], c
' "$tmp/out"
expect 0 "audit verify --signer-cert (the token key's certificate)" -- \
	"$bin" audit verify --signer-cert "$pki/rsa2048.pem" "$log"
check "  ... names the time-stamp" grep -q "time-stamped" "$tmp/out"
expect 1 "audit verify --signer-cert of another certificate" -- \
	"$bin" audit verify --signer-cert "$pki/ec256.pem" "$log"
check "  ... names the first checkpoint" grep -q "BROKEN at record 3: the checkpoint is signed by another certificate" "$tmp/out"

# Each case: a copy altered by SCRIPT, then `audit verify` (no --expect-head) must exit 1 and
# name record WANT with a reason matching RE.
tamper() { # DESC WANT RE SCRIPT [verify options]
	local desc=$1 want=$2 re=$3
	cp "$log" "$tmp/t.log"
	sh -c "$4" sh "$tmp/t.log"
	expect 1 "detected: $desc" -- "$bin" audit verify ${5:-} "$tmp/t.log"
	check "  ... at record $want: $re" grep -q "BROKEN at record $want: .*$re" "$tmp/out"
}
tamper "the last record (the final checkpoint) removed" 7 "1 record after the last checkpoint is not anchored" 'sed -i \$d "$1"'
tamper "the last two records removed: the log ends at a periodic checkpoint" 7 "ends at a periodic checkpoint" 'sed -i 7,8d "$1"'
tamper "the last three records removed" 4 "2 records after the last checkpoint are not anchored" 'sed -i 6,8d "$1"'
tamper "cut in the middle of the final checkpoint" 8 "incomplete" 'truncate -s -300 "$1"'
tamper "cut in the middle of a periodic checkpoint" 6 "incomplete" 'head -n 6 "$1" | head -c -200 >"$1.n" && mv "$1.n" "$1"'

# A record rewritten and the chain recomputed without the key (every prev and hash made
# consistent again): MODE keep = checkpoints untouched; heads = their heads updated too;
# strip = checkpoints dropped (seq renumbered); legacy = dropped and "format":2 removed, i.e.
# a rewrite into a format 1 log.
cat >"$tmp/rewrite.py" <<'PY'
import hashlib, json, re, sys
src, mode, dst = sys.argv[1], sys.argv[2], sys.argv[3]
lines = [l.rstrip('\n') for l in open(src)]
lines[3] = lines[3].replace('"content_digest":"sha256:', '"content_digest":"sha256:00', 1)
if mode in ('strip', 'legacy'):
    lines = [l for l in lines if '"operation":"checkpoint"' not in l]
if mode == 'legacy':
    lines = [l.replace(',"format":2,', ',', 1) for l in lines]
old2new, prev, out = {}, '0' * 64, []
for n, l in enumerate(lines, 1):
    body = l[:l.rindex(',"hash":')]
    old = l[l.rindex(',"hash":') + 9:-2]
    body = re.sub(r'^\{"seq":\d+,', '{"seq":%d,' % n, body)
    if mode == 'heads':
        m = re.search(r'"head":"([0-9a-f]{64})"', body)
        if m and '"operation":"checkpoint"' in body:
            body = body.replace(m.group(1), old2new.get(m.group(1), m.group(1)))
    body = body[:body.rindex(',"prev":"')] + ',"prev":"%s"' % prev
    h = hashlib.sha256(body.encode()).hexdigest()
    old2new[old] = h
    out.append(body + ',"hash":"%s"}' % h)
    prev = h
open(dst, 'w').write('\n'.join(out) + '\n')
PY
tamper "record 4 rewritten, chain recomputed, checkpoints kept" 6 "head is not the hash of record 5" \
	"python3 '$tmp/rewrite.py' \"\$1\" keep \"\$1\""
tamper "record 4 rewritten, chain and checkpoint heads recomputed" 6 "signature does not verify" \
	"python3 '$tmp/rewrite.py' \"\$1\" heads \"\$1\""
tamper "record 4 rewritten, chain recomputed, checkpoints removed" 1 "5 records after the last checkpoint are not anchored" \
	"python3 '$tmp/rewrite.py' \"\$1\" strip \"\$1\""
cp "$log" "$tmp/legacy-src.log"
python3 "$tmp/rewrite.py" "$tmp/legacy-src.log" legacy "$tmp/legacy.log"
expect 0 "a rewrite into a format 1 log passes the chain check ..." -- "$bin" audit verify "$tmp/legacy.log"
check "  ... with the format 1 warning" grep -q "no signed checkpoint (format 1 log)" "$tmp/err"
expect 1 "  ... and fails with --require-checkpoint" -- \
	"$bin" audit verify --require-checkpoint "$tmp/legacy.log"

# A log written before checkpoints existed (format 1: the old writer's exact fields).
python3 - "$tmp/old.log" <<'PY'
import hashlib, sys
prev, out = '0' * 64, []
for n in range(1, 4):
    body = ('{"seq":%d,"time":"2025-01-31T12:00:0%dZ","operation":"sign","key":"pkcs11:token=t;'
            'object=k;type=private","cert_sha256":"%s","content_digest":"sha256:%s",'
            '"signature_sha256":"%s","result":"ok","prev":"%s"' % (n, n, 'a' * 64, 'b' * 64,
            'c' * 64, prev))
    prev = hashlib.sha256(body.encode()).hexdigest()
    out.append(body + ',"hash":"%s"}' % prev)
open(sys.argv[1], 'w').write('\n'.join(out) + '\n')
PY
expect 0 "an old (format 1) log still verifies" -- "$bin" --json audit verify "$tmp/old.log"
check "  ... as format 1, not anchored" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and d["format"]==1 and not d["anchored"] and d["last_checkpoint"] is None, d
' "$tmp/out"
check "  ... with a warning on stderr" grep -q "warning: .*no signed checkpoint (format 1 log)" "$tmp/err"
expect 1 "  ... --require-checkpoint refuses it" -- "$bin" audit verify --require-checkpoint "$tmp/old.log"
# Appending to the old log: the new records are format 2 and the run ends at a checkpoint.
expect 0 "signing onto the old log" -- p11s sign --key "$(keyuri ec256)" --audit-log "$tmp/old.log" \
	--in "$tmp/in/m1.eml" --out "$tmp/o1.eml"
expect 0 "  ... then it verifies anchored (records 4 and 5)" -- "$bin" --json audit verify "$tmp/old.log"
check "  ... format 2, 1 checkpoint covering record 4" python3 -c '
import json,sys
d=json.load(open(sys.argv[1]))
assert d["valid"] and d["format"]==2 and d["anchored"] and d["last_checkpoint"]["covers"]==4, d
' "$tmp/out"

# A second run by another key: verifies, the signer change is warned about.
expect 0 "a second run, by the EC key" -- p11s sign --key "$(keyuri ec256)" --audit-log "$log" \
	--in "$tmp/in/m1.eml" --out "$tmp/o2.eml"
expect 0 "audit verify after two runs" -- "$bin" audit verify "$log"
check "  ... warns that the checkpoints have two signers" grep -q "more than one certificate" "$tmp/err"
# A live log between checkpoints (records not yet anchored) passes only when asked.
printf '%s\n' "$(head -n 7 "$log")" >"$tmp/live.log"
expect 1 "a log with an unanchored tail: exit 1" -- "$bin" audit verify "$tmp/live.log"
expect 0 "  ... --allow-unanchored: exit 0" -- "$bin" audit verify --allow-unanchored "$tmp/live.log"
check "  ... with a warning" grep -q "warning: 1 record after the last checkpoint is not anchored" "$tmp/err"
# --expect-head stays the strongest anchor: a cut back to the end of an earlier run is a
# shorter log that ends at a final checkpoint, found only with the head kept elsewhere.
head_hash=$(tail -1 "$log" | sed 's/.*"hash":"\([0-9a-f]*\)".*/\1/')
head -n 8 "$log" >"$tmp/run1.log"
expect 0 "a cut back to the end of an earlier run looks complete ..." -- "$bin" audit verify "$tmp/run1.log"
expect 1 "  ... --expect-head finds it" -- "$bin" audit verify --expect-head "$head_hash" "$tmp/run1.log"
expect 2 "audit verify --signer-cert of a missing file: usage" -- \
	"$bin" audit verify --signer-cert "$tmp/nope.pem" "$log"
expect 2 "sign --audit-checkpoint-every 0: usage" -- \
	p11s sign --key "$(keyuri rsa2048)" --audit-checkpoint-every 0 --audit-log "$log" --in "$tmp/in/m1.eml"

finish
