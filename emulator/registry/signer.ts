import "reflect-metadata";
import { createPrivateKey, randomBytes, webcrypto, X509Certificate, type KeyObject } from "node:crypto";
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import * as x509 from "@peculiar/x509";
import { SignJWT, type JWTPayload } from "jose";
import { AcrCredentialError, oneLine } from "../../shared/errors.ts";

/** Signs registry tokens; docker-registry trusts `certPath` as its `rootcertbundle`. */
export interface RealmSigner {
  certPath: string;
  sign(claims: object): Promise<string>;
}

const certFileName = "realm-signing.crt";
const keyFileName = "realm-signing.key";
const certificateLifetimeMs = 365 * 24 * 3600 * 1000;
// A certificate this close to its end is replaced rather than reused, so a registry started with
// it does not begin refusing tokens in the middle of a run.
const renewBeforeMs = 24 * 3600 * 1000;
// ES256 (P-256) because distribution's libtrust verifies it and the keys are cheap to generate.
const algorithm = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

interface SigningMaterial {
  key: KeyObject;
  certificateDer: Buffer;
}

/**
 * Reuses the signing certificate and key in `dir` when they are a matching P-256 pair valid for
 * at least another day, and otherwise generates a fresh self-signed pair there.
 */
export async function createRealmSigner(dir: string): Promise<RealmSigner> {
  const certPath = join(dir, certFileName);
  const keyPath = join(dir, keyFileName);
  const material = (await loadSigningMaterial(certPath, keyPath, Date.now())) ?? (await generateSigningMaterial(dir, certPath, keyPath, Date.now()));
  // The token header carries the certificate itself (`x5c`): every distribution release checks
  // such a chain against its `rootcertbundle`, whereas the meaning of `kid` changed between 2.x
  // (libtrust fingerprint) and 3.x (RFC 7638 thumbprint).
  const x5c = [material.certificateDer.toString("base64")];
  return {
    certPath,
    async sign(claims) {
      return new SignJWT({ ...claims } as JWTPayload).setProtectedHeader({ alg: "ES256", typ: "JWT", x5c }).sign(material.key);
    },
  };
}

async function loadSigningMaterial(certPath: string, keyPath: string, now: number): Promise<SigningMaterial | undefined> {
  let certPem: string;
  let keyPem: string;
  try {
    [certPem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
  } catch {
    return undefined;
  }
  try {
    const certificate = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);
    const usable =
      key.asymmetricKeyType === "ec" &&
      key.asymmetricKeyDetails?.namedCurve === "prime256v1" &&
      certificate.checkPrivateKey(key) &&
      Date.parse(certificate.validFrom) <= now &&
      Date.parse(certificate.validTo) - renewBeforeMs > now;
    return usable ? { key, certificateDer: certificate.raw } : undefined;
  } catch {
    // Unreadable leftovers are replaced: the pair only has to agree with the registry this process starts.
    return undefined;
  }
}

async function generateSigningMaterial(dir: string, certPath: string, keyPath: string, now: number): Promise<SigningMaterial> {
  try {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keys = (await webcrypto.subtle.generateKey(algorithm, true, ["sign", "verify"])) as webcrypto.CryptoKeyPair;
    const certificate = await x509.X509CertificateGenerator.createSelfSigned(
      {
        // A leading 01 keeps the DER integer positive whatever the random bytes are.
        serialNumber: `01${randomBytes(15).toString("hex")}`,
        name: "CN=acr-credential emulator registry token signer",
        // An hour of slack for clocks that disagree a little (the registry checks validity itself).
        notBefore: new Date(now - 3600 * 1000),
        notAfter: new Date(now + certificateLifetimeMs),
        signingAlgorithm: algorithm,
        keys,
        extensions: [
          new x509.BasicConstraintsExtension(true, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyCertSign, true),
        ],
      },
      webcrypto as unknown as Parameters<typeof x509.X509CertificateGenerator.createSelfSigned>[1],
    );
    const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey("pkcs8", keys.privateKey));
    const key = createPrivateKey({ key: pkcs8, format: "der", type: "pkcs8" });
    // Write then rename, so a reader never sees a certificate without its key or half a file.
    const suffix = `.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    await writeFile(keyPath + suffix, key.export({ format: "pem", type: "pkcs8" }), { mode: 0o600 });
    await writeFile(certPath + suffix, certificate.toString("pem"), { mode: 0o644 });
    await rename(keyPath + suffix, keyPath);
    await rename(certPath + suffix, certPath);
    return { key, certificateDer: Buffer.from(certificate.rawData) };
  } catch (error) {
    throw new AcrCredentialError(
      "Internal",
      `cannot create the registry token signing certificate in ${dir}: ${oneLine(error)}; check that the folder is writable`,
      { cause: error },
    );
  }
}
