// A Java SunPKCS11 consumer as an application writes one: SecureRandom "PKCS11" from the provider configured
// by the file given as the first argument (name, library). Prints the provider, the algorithm and the bytes in
// hex; an error leaves with Java's exception (its message names the CKR_* code).
// Usage: java -cp DIR QrngRandom CONFIG_FILE N_BYTES
import java.security.Provider;
import java.security.SecureRandom;
import java.security.Security;

public class QrngRandom {
    public static void main(String[] a) throws Exception {
        Provider p = Security.getProvider("SunPKCS11").configure(a[0]);
        Security.addProvider(p);
        SecureRandom r = SecureRandom.getInstance("PKCS11", p);
        byte[] b = new byte[Integer.parseInt(a[1])];
        r.nextBytes(b);
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x));
        System.out.println(r.getProvider().getName() + " " + r.getAlgorithm() + " " + sb);
    }
}
