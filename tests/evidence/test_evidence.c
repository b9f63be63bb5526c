/*
 * Evidence unit tests (cmocka): the audit log chain, security label syntax, RFC 3161 token
 * verification on a real token from `openssl ts -reply` (imprint, trust anchors), and the ESS
 * signingCertificateV2 binding in verify. The token and the PKI come from evidence.sh /
 * the SoftHSM fixture: P11S_EV_TOKEN, P11S_EV_DATA, P11S_EV_TSA_OTHER, P11S_TEST_PKI; tests
 * that need them are skipped without.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include <openssl/cms.h>
#include <openssl/ess.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <p11smime/audit.h>
#include <p11smime/ess.h>
#include <p11smime/verify.h>

#include "audit/audit_int.h"
#include "tsa/tsa_int.h"
#include "x509/x509_int.h"

static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	unsigned char *p = NULL;
	long n;

	if (f == NULL) {
		return NULL;
	}
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	p = malloc((size_t)n + 1);
	if (p != NULL && fread(p, 1, (size_t)n, f) != (size_t)n) {
		free(p);
		p = NULL;
	}
	fclose(f);
	*len = (size_t)n;
	return p;
}

static void test_evidence__audit_chain(void **state)
{
	char path[] = "/tmp/p11s-audit-XXXXXX";
	unsigned char fp[32] = { 1 }, md[32] = { 2 };
	p11s_audit_record rec = { "sign", "pkcs11:token=t;object=k?pin-value=1234", fp, "sha256",
		md, 32, fp, "ok" };
	p11s_audit_status st;
	size_t len;
	unsigned char *text;
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(p11s_audit_append(path, &rec), P11S_OK);
	}
	assert_int_equal(p11s_audit_verify(path, NULL, &st), P11S_OK);
	assert_int_equal(st.n_records, 3);
	assert_int_equal(st.bad_record, 0);
	text = slurp(path, &len);
	assert_non_null(text);
	text[len] = '\0';
	/* The URI's query (pin-value) never reaches the log. */
	assert_null(strstr((char *)text, "pin-value"));
	assert_null(strstr((char *)text, "1234\""));
	/* Flip one byte in record 2: that record is named. */
	{
		char *second = strchr((char *)text, '\n') + 1;
		FILE *f;

		second[10] ^= 1;
		f = fopen(path, "wb");
		assert_non_null(f);
		assert_int_equal(fwrite(text, 1, len, f), len);
		fclose(f);
	}
	assert_int_equal(p11s_audit_verify(path, NULL, &st), P11S_ERR_VERIFY);
	assert_int_equal(st.bad_record, 2);
	assert_int_equal(st.n_records, 1);
	/* A log whose last record was cut off is never extended. */
	{
		FILE *f = fopen(path, "wb");

		assert_non_null(f);
		assert_int_equal(fwrite(text, 1, len - 5, f), len - 5);
		fclose(f);
	}
	assert_int_equal(p11s_audit_append(path, &rec), P11S_ERR_VERIFY);
	assert_int_equal(p11s_audit_verify(path, NULL, &st), P11S_ERR_VERIFY);
	free(text);
	unlink(path);
}

/* flock + fsync: 6 processes appending 25 records each leave one intact chain of 150. */
static void test_evidence__audit_concurrent(void **state)
{
	char path[] = "/tmp/p11s-audit-XXXXXX";
	p11s_audit_record rec = { "sign", "pkcs11:token=t", NULL, NULL, NULL, 0, NULL, "ok" };
	p11s_audit_status st;
	pid_t pids[6];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 6; i++) {
		pids[i] = fork();
		assert_true(pids[i] >= 0);
		if (pids[i] == 0) {
			for (int k = 0; k < 25; k++) {
				if (p11s_audit_append(path, &rec) != P11S_OK) {
					_exit(1);
				}
			}
			_exit(0);
		}
	}
	for (int i = 0; i < 6; i++) {
		int ws;

		assert_int_equal(waitpid(pids[i], &ws, 0), pids[i]);
		assert_true(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
	}
	assert_int_equal(p11s_audit_verify(path, NULL, &st), P11S_OK);
	assert_int_equal(st.n_records, 150);
	unlink(path);
}

/*
 * A checkpoint anchors what it covers, not every line before it. Two writers interleave:
 * A reads the head (record 4) for its checkpoint, B appends record 5, A's checkpoint
 * (covering 4) lands after it. B's final checkpoint is still due. (The race
 * integration.evidence's concurrent signers once lost under ASan: B wrote none.)
 */
static void test_evidence__checkpoint_interleaved(void **state)
{
	char path[] = "/tmp/p11s-audit-XXXXXX";
	unsigned char fp[32] = { 3 };
	const unsigned char sig[] = "abc"; /* the due check does not verify signatures */
	p11s_audit_record rec = { "sign", "pkcs11:token=t", NULL, NULL, NULL, 0, NULL, "ok" };
	unsigned long long cov, cov_a;
	char head[65], head_a[65];
	int fd = mkstemp(path);

	(void)state;
	assert_true(fd >= 0);
	close(fd);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(p11s_audit_append(path, &rec), P11S_OK);
	}
	/* Periodic: due after `every` records only. */
	assert_int_equal(p11s_audit__checkpoint_due(path, 3, 0, &cov, head), 0);
	assert_int_equal(p11s_audit__checkpoint_due(path, 2, 0, &cov, head), 1);
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 1);
	assert_int_equal(cov, 2);
	assert_int_equal(p11s_audit__append_checkpoint(path, cov, head, 1, "pkcs11:token=t", fp, sig,
	                     3), P11S_OK);
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 0);
	/* A: record 4, reads the head. B: record 5. A's checkpoint covering 4 lands at 6. */
	assert_int_equal(p11s_audit_append(path, &rec), P11S_OK);
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov_a, head_a), 1);
	assert_int_equal(cov_a, 4);
	assert_int_equal(p11s_audit_append(path, &rec), P11S_OK);
	assert_int_equal(p11s_audit__append_checkpoint(path, cov_a, head_a, 1, "pkcs11:token=t", fp,
	                     sig, 3), P11S_OK);
	/* B: record 5 is above every anchor, so its checkpoint is due, covering the head (6). */
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 1);
	assert_int_equal(cov, 6);
	assert_int_equal(p11s_audit__append_checkpoint(path, cov, head, 1, "pkcs11:token=t", fp, sig,
	                     3), P11S_OK);
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 0);
	/* The other order: the checkpoint covering more lands first; the later one covers less. */
	assert_int_equal(p11s_audit_append(path, &rec), P11S_OK); /* 8 */
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov_a, head_a), 1);
	assert_int_equal(p11s_audit_append(path, &rec), P11S_OK); /* 9 */
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 1);
	assert_int_equal(cov, 9);
	assert_int_equal(p11s_audit__append_checkpoint(path, cov, head, 1, "pkcs11:token=t", fp, sig,
	                     3), P11S_OK); /* 10 covers 9 */
	assert_int_equal(p11s_audit__append_checkpoint(path, cov_a, head_a, 1, "pkcs11:token=t", fp,
	                     sig, 3), P11S_OK); /* 11 covers 8 */
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 0);
	/* A periodic checkpoint at the furthest anchor is not the end of a run: a final is due. */
	assert_int_equal(p11s_audit_append(path, &rec), P11S_OK); /* 12 */
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 1);
	assert_int_equal(p11s_audit__append_checkpoint(path, cov, head, 0, "pkcs11:token=t", fp, sig,
	                     3), P11S_OK); /* 13, periodic */
	assert_int_equal(p11s_audit__checkpoint_due(path, 100, 0, &cov, head), 0);
	assert_int_equal(p11s_audit__checkpoint_due(path, 0, 1, &cov, head), 1);
	assert_int_equal(cov, 13);
	unlink(path);
}

static void test_evidence__label_syntax(void **state)
{
	(void)state;
	assert_int_equal(p11s_security_label_check("1.2.3.4:confidential"), P11S_OK);
	assert_int_equal(p11s_security_label_check("1.2.3.4:TOP-SECRET"), P11S_OK);
	assert_int_equal(p11s_security_label_check("1.2.3.4:256"), P11S_OK);
	assert_int_equal(p11s_security_label_check("1.2.3.4"), P11S_OK);
	assert_int_equal(p11s_security_label_check("1.2.3.4:257"), P11S_ERR_USAGE);
	assert_int_equal(p11s_security_label_check("1.2.3.4:-1"), P11S_ERR_USAGE);
	assert_int_equal(p11s_security_label_check("commonName:1"), P11S_ERR_USAGE);
	assert_int_equal(p11s_security_label_check(":1"), P11S_ERR_USAGE);
}

static void test_evidence__tsa_token(void **state)
{
	const char *tokp = getenv("P11S_EV_TOKEN"), *datap = getenv("P11S_EV_DATA"),
	           *other = getenv("P11S_EV_TSA_OTHER"), *pki = getenv("P11S_TEST_PKI");
	char root[1024];
	const char *anchors[1];
	p11s_x509_opts o = { 0 };
	p11s_x509_store *store = NULL;
	p11s_reasons r = { 0 };
	unsigned char *tok, *data;
	size_t toklen, datalen;
	char *gt = NULL, *tsa = NULL;

	(void)state;
	if (tokp == NULL || datap == NULL || other == NULL || pki == NULL) {
		skip();
	}
	tok = slurp(tokp, &toklen);
	data = slurp(datap, &datalen);
	assert_non_null(tok);
	assert_non_null(data);
	snprintf(root, sizeof(root), "%s/root.pem", pki);
	anchors[0] = root;
	o.trust_files = anchors;
	o.n_trust_files = 1;
	assert_int_equal(p11s_x509__store_new(&store, &o), P11S_OK);
	/* The right data: valid, genTime and TSA reported. */
	assert_int_equal(p11s_tsa__verify(tok, toklen, data, datalen, store, NULL, &gt, &tsa, &r), 0);
	assert_int_equal(r.n, 0);
	assert_non_null(gt);
	assert_non_null(strstr(tsa, "p11smime Test TSA"));
	free(gt);
	free(tsa);
	/* Other data: the messageImprint does not match. */
	data[0] ^= 1;
	assert_int_equal(p11s_tsa__verify(tok, toklen, data, datalen, store, NULL, &gt, &tsa, &r), 0);
	assert_true(p11s_reasons__has(&r, "timestamp-imprint-mismatch"));
	assert_false(p11s_reasons__has(&r, "timestamp-untrusted"));
	data[0] ^= 1;
	free(gt);
	free(tsa);
	p11s_reasons__clear(&r);
	p11s_x509__store_free(store);
	/* Another trust anchor: the TSA path does not validate. */
	anchors[0] = other;
	assert_int_equal(p11s_x509__store_new(&store, &o), P11S_OK);
	assert_int_equal(p11s_tsa__verify(tok, toklen, data, datalen, store, NULL, &gt, &tsa, &r), 0);
	assert_true(p11s_reasons__has(&r, "timestamp-untrusted"));
	free(gt);
	free(tsa);
	p11s_reasons__clear(&r);
	/* Garbage is reported, not crashed on. */
	assert_int_equal(p11s_tsa__verify(data, datalen, data, datalen, store, NULL, &gt, &tsa, &r), 0);
	assert_true(p11s_reasons__has(&r, "timestamp-invalid"));
	free(gt);
	free(tsa);
	p11s_reasons__clear(&r);
	p11s_x509__store_free(store);
	free(tok);
	free(data);
}

static X509 *load_cert(const char *dir, const char *name)
{
	char path[1024];
	FILE *f;
	X509 *x;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	assert_non_null(f = fopen(path, "r"));
	x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(x);
	return x;
}

/* RFC 5035: a signingCertificateV2 naming another certificate than the signer's fails. */
static void test_evidence__ess_binding_mismatch(void **state)
{
	const char *pki = getenv("P11S_TEST_PKI");
	char path[1024], root[1024];
	const char *anchors[1];
	p11s_verify_opts o = P11S_VERIFY_OPTS_INIT;
	p11s_verify_result *res = NULL;
	static const char content[] = "Content-Type: text/plain\r\n\r\nhello\r\n";
	X509 *signer, *other, *inter;
	EVP_PKEY *key;
	CMS_ContentInfo *cms;
	CMS_SignerInfo *si;
	ESS_SIGNING_CERT_V2 *sc;
	unsigned char *der = NULL;
	int len;
	BIO *in, *b64;
	FILE *f, *msg;

	(void)state;
	if (pki == NULL) {
		skip();
	}
	signer = load_cert(pki, "san-mismatch.pem");
	other = load_cert(pki, "rsa2048.pem");
	inter = load_cert(pki, "intermediate.pem");
	snprintf(path, sizeof(path), "%s/san-mismatch.key", pki);
	assert_non_null(f = fopen(path, "r"));
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	assert_non_null(key);
	in = BIO_new_mem_buf(content, (int)strlen(content));
	assert_non_null(cms = CMS_sign(NULL, NULL, NULL, NULL, CMS_PARTIAL | CMS_BINARY));
	assert_non_null(si = CMS_add1_signer(cms, signer, key, EVP_sha256(), CMS_BINARY));
	assert_int_equal(CMS_add1_cert(cms, inter), 1);
	assert_non_null(sc = OSSL_ESS_signing_cert_v2_new_init(EVP_sha256(), other, NULL, 1));
	assert_true((len = i2d_ESS_SIGNING_CERT_V2(sc, &der)) > 0);
	assert_true(CMS_signed_add1_attr_by_NID(si, NID_id_smime_aa_signingCertificateV2,
	    V_ASN1_SEQUENCE, der, len) > 0);
	assert_int_equal(CMS_final(cms, in, NULL, CMS_BINARY), 1);
	OPENSSL_free(der);
	der = NULL;
	assert_true((len = i2d_CMS_ContentInfo(cms, &der)) > 0);
	assert_non_null(msg = tmpfile());
	fputs("From: san-mismatch@example.org\r\nMIME-Version: 1.0\r\nContent-Type: "
	      "application/pkcs7-mime; smime-type=signed-data; name=smime.p7m\r\n"
	      "Content-Transfer-Encoding: base64\r\n\r\n", msg);
	b64 = BIO_push(BIO_new(BIO_f_base64()), BIO_new_fp(msg, BIO_NOCLOSE));
	assert_int_equal(BIO_write(b64, der, len), len);
	(void)BIO_flush(b64);
	BIO_free_all(b64);
	fflush(msg);
	rewind(msg);
	snprintf(root, sizeof(root), "%s/root.pem", pki);
	anchors[0] = root;
	o.trust_files = anchors;
	o.n_trust_files = 1;
	o.no_sender_check = 1;
	assert_int_equal(p11s_verify_message(&res, msg, &o), P11S_OK);
	assert_int_equal(res->n_signers, 1);
	assert_false(res->valid);
	assert_int_equal(res->signers[0].signing_certificate, -1);
	{
		int found = 0;

		for (size_t i = 0; i < res->signers[0].n_reasons; i++) {
			found |= strcmp(res->signers[0].reasons[i].code, "signing-certificate-mismatch") == 0;
		}
		assert_true(found);
	}
	p11s_verify_result_free(res);
	fclose(msg);
	OPENSSL_free(der);
	ESS_SIGNING_CERT_V2_free(sc);
	CMS_ContentInfo_free(cms);
	BIO_free(in);
	EVP_PKEY_free(key);
	X509_free(signer);
	X509_free(other);
	X509_free(inter);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_evidence__audit_chain),
		cmocka_unit_test(test_evidence__audit_concurrent),
		cmocka_unit_test(test_evidence__checkpoint_interleaved),
		cmocka_unit_test(test_evidence__label_syntax),
		cmocka_unit_test(test_evidence__tsa_token),
		cmocka_unit_test(test_evidence__ess_binding_mismatch),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
