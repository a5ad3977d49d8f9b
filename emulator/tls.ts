/**
 * A throw-away certificate authority for the emulator's HTTPS port and the test kube-apiserver,
 * generated at start so no key is ever committed. Clients trust it through a CA file
 * (e.g. `NODE_EXTRA_CA_CERTS`).
 */
import "reflect-metadata";
import { KeyObject, webcrypto } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

export interface CertificateAuthority {
  certPem: string;
  /** Issues a server certificate for the given host names and IP addresses. */
  issue(hosts: readonly string[]): Promise<{ certPem: string; keyPem: string }>;
}

function keyPem(key: webcrypto.CryptoKey): string {
  return KeyObject.from(key).export({ type: "pkcs8", format: "pem" }).toString();
}

export async function createCertificateAuthority(name = "acr-credential-broker emulator CA"): Promise<CertificateAuthority> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
  const notBefore = new Date(Date.now() - 3600_000);
  const notAfter = new Date(Date.now() + 365 * 24 * 3600_000);
  const ca = await x509.X509CertificateGenerator.createSelfSigned({
    name: `CN=${name}`,
    keys,
    notBefore,
    notAfter,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return {
    certPem: ca.toString("pem"),
    async issue(hosts) {
      const serverKeys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
      const names = hosts.map((host) => (/^[\d.]+$|:/.test(host) ? { type: "ip" as const, value: host } : { type: "dns" as const, value: host }));
      const cert = await x509.X509CertificateGenerator.create({
        subject: `CN=${hosts[0] ?? "localhost"}`,
        issuer: ca.subject,
        notBefore,
        notAfter,
        signingAlgorithm: algorithm,
        publicKey: serverKeys.publicKey,
        signingKey: keys.privateKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
          new x509.SubjectAlternativeNameExtension(names),
          await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
        ],
      });
      return { certPem: cert.toString("pem"), keyPem: keyPem(serverKeys.privateKey) };
    },
  };
}

export interface ServerTls {
  caFile: string;
  cert: string;
  key: string;
}

/** Generates a CA and a server certificate for 127.0.0.1 and localhost into `dir` (the CA as `ca.pem`). */
export async function createServerTls(dir: string): Promise<ServerTls> {
  const ca = await createCertificateAuthority();
  const server = await ca.issue(["127.0.0.1", "localhost", "::1"]);
  const caFile = join(dir, "ca.pem");
  await writeFile(caFile, ca.certPem, { mode: 0o644 });
  await writeFile(join(dir, "server.pem"), server.certPem, { mode: 0o644 });
  await writeFile(join(dir, "server-key.pem"), server.keyPem, { mode: 0o600 });
  return { caFile, cert: server.certPem, key: server.keyPem };
}
