import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dockerRegistryConfig, failureReason, findExecutable } from "../../emulator/registry/docker-registry.ts";

const options = {
  realm: "http://127.0.0.1:4100/auth",
  service: "registry.emulator.test",
  issuer: "emulator-dockerauth",
  rootCertBundle: "/certs/realm-signing.crt",
  dataDir: "/data/registry",
};

describe("docker-registry configuration", () => {
  const config = dockerRegistryConfig(options, 5123, "secret") as {
    http: { addr: string; secret: string };
    auth: Record<string, unknown>;
    storage: { filesystem: { rootdirectory: string } };
    log: { accesslog: { disabled: boolean } };
  };

  it("listens on loopback only, on the given port", () => {
    expect(config.http.addr).toBe("127.0.0.1:5123");
  });

  it("authenticates with tokens from the realm only, trusting the realm's certificate", () => {
    expect(config.auth).toEqual({ token: { realm: options.realm, service: options.service, issuer: options.issuer, rootcertbundle: options.rootCertBundle } });
  });

  it("stores images in the data folder", () => {
    expect(config.storage.filesystem.rootdirectory).toBe("/data/registry");
  });

  it("writes no access log", () => {
    expect(config.log.accesslog.disabled).toBe(true);
  });
});

describe("docker-registry start-up failures", () => {
  it("names the panic that stopped the registry rather than its stack trace", () => {
    const output = [
      'time="2030-01-01T00:00:00Z" level=info msg="redis not configured"',
      'panic: unable to configure authorization (token): unable to open token auth root certificate bundle file "/x.pem"',
      "",
      "goroutine 1 [running]:",
      "main.main()",
    ].join("\n");
    expect(failureReason(output)).toBe('panic: unable to configure authorization (token): unable to open token auth root certificate bundle file "/x.pem"');
  });

  it("names a fatal log line, such as a port already taken", () => {
    const output = 'time="2030-01-01T00:00:00Z" level=fatal msg="listen tcp 127.0.0.1:5000: bind: address already in use"\n';
    expect(failureReason(output)).toContain("address already in use");
  });

  it("says so when the registry printed nothing", () => {
    expect(failureReason("")).toBe("no output");
  });
});

describe("finding docker-registry on PATH", () => {
  let dirs: string[] = [];

  beforeAll(async () => {
    dirs = [await mkdtemp(join(tmpdir(), "acr-path-a-")), await mkdtemp(join(tmpdir(), "acr-path-b-"))];
    await writeFile(join(dirs[0]!, "tool"), "not executable");
    await writeFile(join(dirs[1]!, "tool"), "#!/bin/sh\n");
    await chmod(join(dirs[1]!, "tool"), 0o755);
  });

  afterAll(async () => {
    for (const dir of dirs) await rm(dir, { recursive: true, force: true });
  });

  it("returns the first executable of that name, skipping files that cannot be run", () => {
    expect(findExecutable("tool", dirs.join(delimiter))).toBe(join(dirs[1]!, "tool"));
  });

  it("returns nothing when no directory holds it", () => {
    expect(findExecutable("no-such-tool", dirs.join(delimiter))).toBeUndefined();
  });
});
