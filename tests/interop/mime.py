#!/usr/bin/env python3
"""MIME plumbing for the interop suites: take S/MIME messages apart for peers that read bare
CMS (NSS cmsutil, gpgsm), and wrap the bare CMS that peers write into messages for
`p11smime verify` / `decrypt`.  Byte-exact: no library re-encodes anything.

  mime.py part1 MSG OUT           part 1 of a multipart/signed, byte for byte (RFC 2046
                                  §5.1.1: the CRLF before a delimiter belongs to it)
  mime.py p7s MSG OUT             the DER of part 2 of a multipart/signed
  mime.py split MSG PART1 P7S     both of the above in one call
  mime.py body MSG OUT            the base64-decoded body of a single-part message
                                  (application/pkcs7-mime: DER SignedData / EnvelopedData)
  mime.py signed FROM CONTENT P7S MICALG OUT
                                  a multipart/signed message: part 1 = CONTENT as is,
                                  part 2 = P7S (DER) base64
  mime.py pkcs7 FROM SMIME-TYPE DER OUT
                                  an application/pkcs7-mime message around DER
  mime.py flip IN OUT NEEDLE      change one byte: the first byte of the first occurrence of
                                  NEEDLE in IN (for an application/pkcs7-mime message, in
                                  its decoded DER, re-encoded afterwards)
  mime.py flipder MSG OUT NEEDLE  flip, on the decoded DER of an application/pkcs7-mime
                                  message; OUT is that DER
All messages written here use CRLF line ends (RFC 8551 §3.1.1).
"""
import base64
import email.utils
import re
import sys


def rd(p):
	with open(p, 'rb') as f:
		return f.read()


def wr(p, d):
	with open(p, 'wb') as f:
		f.write(d)


def split_header(d):
	for sep in (b'\r\n\r\n', b'\n\n'):
		i = d.find(sep)
		if i >= 0:
			return d[:i], d[i + len(sep):]
	sys.exit('mime.py: no end of header section')


def boundary(d):
	m = re.search(rb'boundary="?([^";\r\n]+)"?', split_header(d)[0])
	if not m:
		sys.exit('mime.py: no boundary parameter')
	return m.group(1)


def parts(d):
	b = boundary(d)
	# The first delimiter may open the body; the others are preceded by their CRLF.
	body = split_header(d)[1]
	first = body.find(b'--' + b + b'\r\n')
	if first < 0:
		sys.exit('mime.py: no first delimiter')
	rest = body[first + len(b) + 4:]
	segs = rest.split(b'\r\n--' + b)
	# segs[0] = part 1, segs[1] starts with CRLF + part 2, segs[2] starts with "--"
	return segs[0], segs[1][2:]


def b64(d):
	return base64.encodebytes(d).replace(b'\n', b'\r\n')


def headers(frm):
	# Date: now (verify compares it with the signingTime the peer just wrote).
	return (b'From: ' + frm.encode() + b'\r\nTo: bob@example.org\r\nSubject: interop\r\n'
	        b'Date: ' + email.utils.formatdate().encode() + b'\r\nMIME-Version: 1.0\r\n')


def main(a):
	cmd = a[0]
	if cmd == 'part1':
		wr(a[2], parts(rd(a[1]))[0])
	elif cmd == 'p7s':
		wr(a[2], base64.b64decode(split_header(parts(rd(a[1]))[1])[1]))
	elif cmd == 'split':
		p1, p2 = parts(rd(a[1]))
		wr(a[2], p1)
		wr(a[3], base64.b64decode(split_header(p2)[1]))
	elif cmd == 'flipder':
		data = bytearray(base64.b64decode(split_header(rd(a[1]))[1]))
		i = data.find(a[3].encode())
		if i < 0:
			sys.exit('mime.py: %r not found in %s' % (a[3], a[1]))
		data[i] ^= 0x01
		wr(a[2], bytes(data))
	elif cmd == 'body':
		wr(a[2], base64.b64decode(split_header(rd(a[1]))[1]))
	elif cmd == 'signed':
		frm, content, p7s, micalg, out = a[1:6]
		b = b'----interop-boundary-7f3a'
		wr(out, headers(frm) +
		   b'Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=' +
		   micalg.encode() + b'; boundary="' + b + b'"\r\n\r\n'
		   b'This is an S/MIME signed message.\r\n\r\n--' + b + b'\r\n' + rd(content) +
		   b'\r\n--' + b + b'\r\n'
		   b'Content-Type: application/pkcs7-signature; name=smime.p7s\r\n'
		   b'Content-Transfer-Encoding: base64\r\n'
		   b'Content-Disposition: attachment; filename=smime.p7s\r\n\r\n' +
		   b64(rd(p7s)) + b'\r\n--' + b + b'--\r\n')
	elif cmd == 'pkcs7':
		frm, stype, der, out = a[1:5]
		wr(out, headers(frm) +
		   b'Content-Type: application/pkcs7-mime; smime-type=' + stype.encode() +
		   b'; name=smime.p7m\r\nContent-Transfer-Encoding: base64\r\n'
		   b'Content-Disposition: attachment; filename=smime.p7m\r\n\r\n' + b64(rd(der)))
	elif cmd == 'flip':
		src, out, needle = a[1], a[2], a[3].encode()
		d = rd(src)
		h, body = split_header(d)
		opaque = re.search(rb'(?im)^content-type:\s*application/(x-)?pkcs7-mime', h) is not None
		data = bytearray(base64.b64decode(body) if opaque else d)
		i = data.find(needle)
		if i < 0:
			sys.exit('mime.py: %r not found in %s' % (needle, src))
		data[i] ^= 0x01
		if opaque:
			sep = b'\r\n\r\n' if b'\r\n' in h else b'\n\n'
			data = h + sep + b64(bytes(data))
		wr(out, bytes(data))
	else:
		sys.exit('mime.py: unknown command ' + cmd)


if __name__ == '__main__':
	main(sys.argv[1:])
