import "reflect-metadata";
import { webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";

/** A PEM certificate and its PEM (PKCS #8) private key. */
export interface CertificateAndKey {
  certificatePem: string;
  privateKeyPem: string;
}

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

const crypto = webcrypto;
const ecdsa = { name: "ECDSA", namedCurve: "P-256" } as const;
const signingAlgorithm = { name: "ECDSA", hash: "SHA-256" } as const;
const hour = 60 * 60 * 1000;

async function ecdsaKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(ecdsa, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function privateKeyPem(key: CryptoKey): Promise<string> {
  return x509.PemConverter.encode(await crypto.subtle.exportKey("pkcs8", key), "PRIVATE KEY");
}

/** A certificate authority that lives for one test run; its key never leaves memory and the temp folder. */
export interface CertificateAuthority extends CertificateAndKey {
  issueServingCertificate(hosts: { dns: string[]; ips: string[] }): Promise<CertificateAndKey>;
}

export async function createCertificateAuthority(commonName: string): Promise<CertificateAuthority> {
  const keys = await ecdsaKeys();
  // Backdated a little so a clock that is slightly behind still accepts it.
  const notBefore = new Date(Date.now() - hour);
  const notAfter = new Date(Date.now() + 24 * hour);
  const certificate = await x509.X509CertificateGenerator.createSelfSigned(
    {
      name: `CN=${commonName}`,
      keys,
      notBefore,
      notAfter,
      signingAlgorithm,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey, false, crypto),
      ],
    },
    crypto,
  );

  return {
    certificatePem: certificate.toString("pem"),
    privateKeyPem: await privateKeyPem(keys.privateKey),
    async issueServingCertificate({ dns, ips }) {
      const leafKeys = await ecdsaKeys();
      const leaf = await x509.X509CertificateGenerator.create(
        {
          subject: `CN=${dns[0] ?? ips[0] ?? "server"}`,
          issuer: certificate.subject,
          publicKey: leafKeys.publicKey,
          signingKey: keys.privateKey,
          notBefore,
          notAfter,
          signingAlgorithm,
          extensions: [
            new x509.BasicConstraintsExtension(false, undefined, true),
            new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
            new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
            new x509.SubjectAlternativeNameExtension([
              ...dns.map((value) => ({ type: "dns" as const, value })),
              ...ips.map((value) => ({ type: "ip" as const, value })),
            ]),
            await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey, false, crypto),
          ],
        },
        crypto,
      );
      return { certificatePem: leaf.toString("pem"), privateKeyPem: await privateKeyPem(leafKeys.privateKey) };
    },
  };
}
