/**
 * A one-layer OCI image layout that skopeo can copy (`oci:DIR:TAG`), written with Node alone: the
 * layer is a real gzipped tar holding `/hello.txt`, and the config's `rootfs.diff_ids` is the
 * digest of that tar. The same tag and content always give the same manifest digest.
 */
import { createHash } from "node:crypto";
import { mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { gzipSync } from "node:zlib";

const mediaTypes = {
  index: "application/vnd.oci.image.index.v1+json",
  manifest: "application/vnd.oci.image.manifest.v1+json",
  config: "application/vnd.oci.image.config.v1+json",
  layer: "application/vnd.oci.image.layer.v1.tar+gzip",
} as const;

interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

const refNameAnnotation = "org.opencontainers.image.ref.name";
const blockSize = 512;

function sha256(data: Buffer): string {
  return `sha256:${createHash("sha256").update(data).digest("hex")}`;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

/** A ustar archive with one regular file, dated at the epoch so the bytes never vary. */
export function tarWithOneFile(name: string, content: Buffer): Buffer {
  const header = Buffer.alloc(blockSize);
  header.write(name, 0, 100, "utf8");
  header.write(octal(0o644, 8), 100, "ascii");
  header.write(octal(0, 8), 108, "ascii");
  header.write(octal(0, 8), 116, "ascii");
  header.write(octal(content.length, 12), 124, "ascii");
  header.write(octal(0, 12), 136, "ascii");
  header.write("        ", 148, "ascii"); // the checksum is computed with its own field as spaces
  header.write("0", 156, "ascii");
  header.write("ustar\0", 257, "ascii");
  header.write("00", 263, "ascii");
  header.write("root", 265, "ascii");
  header.write("root", 297, "ascii");
  let checksum = 0;
  for (const byte of header) checksum += byte;
  header.write(`${checksum.toString(8).padStart(6, "0")}\0 `, 148, "ascii");
  const padding = Buffer.alloc((blockSize - (content.length % blockSize)) % blockSize);
  return Buffer.concat([header, content, padding, Buffer.alloc(2 * blockSize)]);
}

async function writeBlob(dir: string, data: Buffer, mediaType: string): Promise<Descriptor> {
  const digest = sha256(data);
  await writeFile(join(dir, "blobs", "sha256", digest.slice("sha256:".length)), data);
  return { mediaType, digest, size: data.length };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

async function readIndexManifests(dir: string): Promise<Descriptor[]> {
  try {
    const index = JSON.parse(await readFile(join(dir, "index.json"), "utf8")) as { manifests?: Descriptor[] };
    return index.manifests ?? [];
  } catch {
    return [];
  }
}

/** Writes (or adds a tag to) an OCI layout in `dir` and returns the tagged manifest's digest. */
export async function writeOciLayout(dir: string, options: { tag: string; content?: string }): Promise<{ manifestDigest: string }> {
  await mkdir(join(dir, "blobs", "sha256"), { recursive: true });
  const tar = tarWithOneFile("hello.txt", Buffer.from(options.content ?? `hello from ${options.tag}\n`));
  const layer = await writeBlob(dir, gzipSync(tar, { level: 9 }), mediaTypes.layer);
  const config = await writeBlob(
    dir,
    json({
      created: "1970-01-01T00:00:00Z",
      architecture: "amd64",
      os: "linux",
      config: { Cmd: ["/hello.txt"] },
      rootfs: { type: "layers", diff_ids: [sha256(tar)] },
      history: [{ created: "1970-01-01T00:00:00Z", created_by: "writeOciLayout" }],
    }),
    mediaTypes.config,
  );
  const manifest = await writeBlob(dir, json({ schemaVersion: 2, mediaType: mediaTypes.manifest, config, layers: [layer] }), mediaTypes.manifest);
  const others = (await readIndexManifests(dir)).filter((entry) => entry.annotations?.[refNameAnnotation] !== options.tag);
  const tagged = { ...manifest, annotations: { [refNameAnnotation]: options.tag } };
  await writeFile(join(dir, "oci-layout"), json({ imageLayoutVersion: "1.0.0" }));
  await writeFile(join(dir, "index.json"), json({ schemaVersion: 2, mediaType: mediaTypes.index, manifests: [...others, tagged] }));
  return { manifestDigest: manifest.digest };
}
