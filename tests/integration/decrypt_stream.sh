#!/bin/bash
# Streaming decryption (DESIGN.md decision 4, docs/performance.md): BER forms that the stream
# reader must take apart itself, on the throwaway SoftHSMv2 token, for one backend: definite
# DER with a primitive encryptedContent, indefinite lengths with OCTET STRING segments,
# segments nested in constructed OCTET STRINGs, and a truncated message (exit 2, no output).
# usage: decrypt_stream.sh BACKEND   (environment from tests/CMakeLists.txt)
set -euo pipefail
backend=$1
. "$(dirname "$0")/lib.sh"

key="pkcs11:token=$P11S_TEST_TOKEN;object=rsa2048;type=private"
exec </dev/null

{ printf 'Content-Type: text/plain\r\n\r\n'; head -c 9000 /dev/urandom | base64 | sed 's/$/\r/'; } >"$tmp/inner"
tr -d '\r' <"$tmp/inner" >"$tmp/inner.lf"
# wrap DER TYPE: a message whose binary body is the DER in $tmp/der
wrap() {
	{ printf 'From: a@example.org\nContent-Type: application/pkcs7-mime; smime-type=%s; name=smime.p7m\nContent-Transfer-Encoding: binary\n\n' "$2"; cat "$1"; } >"$tmp/msg"
}
for cipher in aes-256-gcm aes-128-cbc; do
	type=authEnveloped-data
	[ "$cipher" = aes-128-cbc ] && type=enveloped-data
	for form in der stream nested; do
		stream=
		[ "$form" != der ] && stream=-stream
		openssl cms -encrypt -binary -"$cipher" -outform DER $stream -in "$tmp/inner" \
			-out "$tmp/der" "$pki/rsa2048.pem"
		if [ "$form" = nested ]; then
			# Re-encode the [0] content as constructed OCTET STRINGs (indefinite) of two
			# primitive segments each (X.690 §8.7.3.2).
			python3 - "$tmp/der" <<'PY'
import sys
p = sys.argv[1]; d = open(p, 'rb').read()
i = d.find(b'\xa0\x80\x04'); j = i + 2; segs = b''
while d[j] == 0x04:
    l = d[j + 1]; hl = 2
    if l & 0x80:
        n = l & 0x7f; l = int.from_bytes(d[j + 2:j + 2 + n], 'big'); hl = 2 + n
    segs += d[j + hl:j + hl + l]; j += hl + l
assert d[j:j + 2] == b'\x00\x00'
def enc(t, b):
    L = len(b)
    if L < 128: return bytes([t, L]) + b
    lb = L.to_bytes((L.bit_length() + 7) // 8, 'big'); return bytes([t, 0x80 | len(lb)]) + lb + b
inner = b''.join(b'\x24\x80' + enc(4, segs[k:k + 300]) + enc(4, segs[k + 300:k + 1000]) + b'\x00\x00'
                 for k in range(0, len(segs), 1000))
open(p, 'wb').write(d[:i] + b'\xa0\x80' + inner + b'\x00\x00' + d[j + 2:])
PY
		fi
		wrap "$tmp/der" "$type"
		rm -f "$tmp/dec"
		expect 0 "$cipher $form: decrypts" -- p11s decrypt --key "$key" --in "$tmp/msg" --out "$tmp/dec"
		# LF input: the entity comes back with LF line ends (docs/envelope.md).
		check "  ... content as sent" sh -c "sed 1,2d '$tmp/dec' | cmp -s - '$tmp/inner.lf'"
	done
	head -c $(($(stat -c %s "$tmp/der") - 40)) "$tmp/der" >"$tmp/trunc"
	wrap "$tmp/trunc" "$type"
	rm -f "$tmp/dec"
	expect 2 "$cipher: truncated message is malformed (exit 2)" -- \
		p11s decrypt --key "$key" --in "$tmp/msg" --out "$tmp/dec"
	check "  ... no output" test ! -e "$tmp/dec"
done
finish
