#!/bin/bash
# A real RFC 3161 time-stamping authority on loopback, for tests/evidence/evidence.sh and
# ci/demo.sh: `openssl ts -reply` behind tests/evidence/tsa_server.py.
#
# usage: tsa.sh start DIR PKI   create DIR, the TSA certificates and DIR/ts.cnf, start the
#                               server in the background; prints its base URL
#                               (http://127.0.0.1:PORT; paths /good, /other, /wrong)
#        tsa.sh stop DIR        stop the server started with DIR
#
# PKI is a test PKI of tokens/make-token.sh (intermediate.pem, intermediate/intermediate.key).
# DIR/good.pem: the TSA certified by the test intermediate CA (timeStamping EKU);
# DIR/other.pem, DIR/otherca.pem: a TSA from a CA the verifier does not trust.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

start() {
	local ts=$1 pki=$2 s
	mkdir -p "$ts"
	cat >"$ts/ext.cnf" <<EOT
[tsa_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = critical, timeStamping
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
EOT
	{
		# The good TSA: certified by the test intermediate CA.
		openssl req -new -newkey rsa:2048 -nodes -keyout "$ts/good.key" \
			-subj "/O=p11smime test/CN=p11smime Test TSA" -out "$ts/good.csr"
		openssl x509 -req -in "$ts/good.csr" -CA "$pki/intermediate.pem" \
			-CAkey "$pki/intermediate/intermediate.key" \
			-set_serial "0x$(openssl rand -hex 8)" -days 365 -extfile "$ts/ext.cnf" \
			-extensions tsa_ext -out "$ts/good.pem"
		# Another TSA, from a CA the verifier does not trust.
		openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ts/otherca.key" \
			-subj "/CN=Other CA" -days 365 -config "$ts/ext.cnf" -extensions ca_ext \
			-out "$ts/otherca.pem"
		openssl req -new -newkey rsa:2048 -nodes -keyout "$ts/other.key" -subj "/CN=Other TSA" \
			-out "$ts/other.csr"
		openssl x509 -req -in "$ts/other.csr" -CA "$ts/otherca.pem" -CAkey "$ts/otherca.key" \
			-set_serial 7 -days 365 -extfile "$ts/ext.cnf" -extensions tsa_ext \
			-out "$ts/other.pem"
	} >"$ts/setup.log" 2>&1
	echo 01 >"$ts/serial"
	for s in good other; do
		cat <<EOT
[tsa_$s]
dir = $ts
serial = $ts/serial
crypto_device = builtin
signer_cert = $ts/$s.pem
signer_key = $ts/$s.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.99999.1
digests = sha256, sha384, sha512
accuracy = secs:1
ordering = yes
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
EOT
		[ "$s" = good ] && echo "certs = $pki/intermediate.pem"
	done >"$ts/ts.cnf"
	rm -f "$ts/port"
	# Detached from our stdout: a caller reading it through $(...) must not wait for the server.
	python3 "$here/tsa_server.py" "$ts" "$ts/port" >/dev/null 2>"$ts/server.log" &
	echo $! >"$ts/pid"
	for _ in $(seq 100); do
		[ -s "$ts/port" ] && break
		kill -0 "$(cat "$ts/pid")" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$ts/port" ]; then
		echo "tsa.sh: the TSA server did not start:" >&2
		cat "$ts/server.log" >&2
		stop "$ts"
		return 1
	fi
	echo "http://127.0.0.1:$(cat "$ts/port")"
}

stop() {
	local ts=$1 pid
	[ -s "$ts/pid" ] || return 0
	pid=$(cat "$ts/pid")
	kill "$pid" 2>/dev/null || true
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	rm -f "$ts/pid"
}

case ${1:-} in
start) [ $# -eq 3 ] || { echo "usage: tsa.sh start DIR PKI" >&2; exit 2; }; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || { echo "usage: tsa.sh stop DIR" >&2; exit 2; }; stop "$2" ;;
*) echo "usage: tsa.sh start DIR PKI | tsa.sh stop DIR" >&2; exit 2 ;;
esac
