/*
 * An independent RFC 8419 peer for tests/interop/bouncycastle.sh: BouncyCastle's CMS (Debian
 * libbcpkix-java), not OpenSSL, verifies p11smime's EdDSA SignedData and signs messages for
 * p11smime to verify. Run with the source launcher: java -cp BC_JARS BcEd.java ...
 *   verify SIGNED.der [CONTENT]  one line per signer; exit 0 when every signer verifies
 *   sign ALG KEY.pk8 CERT.pem CONTENT OUT.der   ALG Ed25519 or Ed448; eContent included
 */
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.KeyFactory;
import java.security.PrivateKey;
import java.security.Security;
import java.security.cert.CertificateFactory;
import java.security.cert.X509Certificate;
import java.security.spec.PKCS8EncodedKeySpec;
import java.util.Collection;
import java.util.List;

import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cert.jcajce.JcaCertStore;
import org.bouncycastle.cms.CMSProcessableByteArray;
import org.bouncycastle.cms.CMSSignedData;
import org.bouncycastle.cms.CMSSignedDataGenerator;
import org.bouncycastle.cms.SignerInformation;
import org.bouncycastle.cms.jcajce.JcaSignerInfoGeneratorBuilder;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.jcajce.JcaContentSignerBuilder;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;

public class BcEd {
	public static void main(String[] a) throws Exception {
		Security.addProvider(new BouncyCastleProvider());
		if (a.length >= 2 && a[0].equals("verify")) {
			System.exit(verify(a));
		} else if (a.length == 6 && a[0].equals("sign")) {
			sign(a);
		} else {
			System.err.println("usage: BcEd verify SIGNED.der [CONTENT] | "
			    + "sign ALG KEY.pk8 CERT.pem CONTENT OUT.der");
			System.exit(2);
		}
	}

	private static int verify(String[] a) throws Exception {
		byte[] der = Files.readAllBytes(Paths.get(a[1]));
		CMSSignedData sd = a.length > 2
		    ? new CMSSignedData(new CMSProcessableByteArray(Files.readAllBytes(Paths.get(a[2]))), der)
		    : new CMSSignedData(der);
		int n = 0;
		for (SignerInformation si : sd.getSignerInfos().getSigners()) {
			@SuppressWarnings("unchecked")
			Collection<X509CertificateHolder> match = sd.getCertificates().getMatches(si.getSID());
			if (match.isEmpty()) {
				System.out.println("signer without certificate");
				return 1;
			}
			X509CertificateHolder c = match.iterator().next();
			boolean ok = si.verify(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(c));
			System.out.println("signer " + c.getSubject() + " digest " + si.getDigestAlgOID()
			    + " sigalg " + si.getEncryptionAlgOID() + " sigalg-params "
			    + (si.getEncryptionAlgParams() == null ? "absent" : "present") + " valid " + ok);
			if (!ok) {
				return 1;
			}
			n++;
		}
		return n > 0 ? 0 : 1;
	}

	private static void sign(String[] a) throws Exception {
		String alg = a[1];
		PrivateKey k = KeyFactory.getInstance(alg, "BC")
		    .generatePrivate(new PKCS8EncodedKeySpec(Files.readAllBytes(Paths.get(a[2]))));
		X509Certificate c = (X509Certificate) CertificateFactory.getInstance("X.509")
		    .generateCertificate(Files.newInputStream(Paths.get(a[3])));
		CMSSignedDataGenerator g = new CMSSignedDataGenerator();
		g.addSignerInfoGenerator(new JcaSignerInfoGeneratorBuilder(
		    new JcaDigestCalculatorProviderBuilder().setProvider("BC").build())
		    .build(new JcaContentSignerBuilder(alg).setProvider("BC").build(k), c));
		g.addCertificates(new JcaCertStore(List.of(c)));
		CMSSignedData sd = g.generate(new CMSProcessableByteArray(Files.readAllBytes(Paths.get(a[4]))), true);
		Files.write(Paths.get(a[5]), sd.getEncoded("DER"));
	}
}
