#!/usr/bin/python3
"""Test helper for the validation-time checks of tests/evidence/evidence.sh (pyca/cryptography).

usage: short_cert.py cert CSR CA-CERT CA-KEY SECONDS OUT.pem
         a certificate for the CSR's key, valid from a minute ago until SECONDS from now
       short_cert.py crl CA-CERT CA-KEY CERT REVOKED-OFFSET OUT.pem
         a CRL issued now revoking CERT, its revocationDate REVOKED-OFFSET seconds from now
         (negative: in the past)"""
import datetime
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID


def load(cert_path, key_path):
    with open(cert_path, "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    return ca, key


def main(argv):
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    if len(argv) == 7 and argv[1] == "cert":
        with open(argv[2], "rb") as f:
            csr = x509.load_pem_x509_csr(f.read())
        ca, key = load(argv[3], argv[4])
        b = (x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca.subject)
             .public_key(csr.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(seconds=60))
             .not_valid_after(now + datetime.timedelta(seconds=int(argv[5])))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.KeyUsage(True, True, False, False, False, False, False, False,
                                          False), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), False)
             .add_extension(x509.SubjectAlternativeName(
                 [x509.RFC822Name("alice-rsa2048@example.org")]), False)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(csr.public_key()), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                            False))
        out = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    elif len(argv) == 7 and argv[1] == "crl":
        ca, key = load(argv[2], argv[3])
        with open(argv[4], "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        rev = (x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
               .revocation_date(now + datetime.timedelta(seconds=int(argv[5]))).build())
        b = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
             .last_update(now).next_update(now + datetime.timedelta(days=1))
             .add_revoked_certificate(rev)
             .add_extension(x509.CRLNumber(int(now.timestamp())), False)
             .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.public_key()),
                            False))
        out = b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    else:
        sys.stderr.write(__doc__ + "\n")
        return 2
    with open(argv[6], "wb") as f:
        f.write(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
