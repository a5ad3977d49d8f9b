import { execFile } from "node:child_process";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface SkopeoResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs skopeo with a throw-away HOME under `dir`, an accept-anything policy and no host registries
 * configuration, so it reads and leaves nothing outside `dir`. `_CONTAINERS_ROOTLESS_UID` keeps its
 * blob-info cache out of /var/lib/containers when running as root.
 */
export async function skopeoIn(dir: string): Promise<(args: string[]) => Promise<SkopeoResult>> {
  const home = join(dir, "skopeo-home");
  for (const sub of ["run", "config", "data", "registries.d", "tmp"]) await mkdir(join(home, sub), { recursive: true, mode: 0o700 });
  await writeFile(join(home, "policy.json"), JSON.stringify({ default: [{ type: "insecureAcceptAnything" }] }));
  await writeFile(join(home, "registries.conf"), "");
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: home,
    XDG_RUNTIME_DIR: join(home, "run"),
    XDG_CONFIG_HOME: join(home, "config"),
    XDG_DATA_HOME: join(home, "data"),
    CONTAINERS_REGISTRIES_CONF: join(home, "registries.conf"),
    _CONTAINERS_ROOTLESS_UID: String(process.getuid?.() || 1000),
  };
  const global = [
    "--policy",
    join(home, "policy.json"),
    "--registries.d",
    join(home, "registries.d"),
    "--tmpdir",
    join(home, "tmp"),
    "--command-timeout",
    "60s",
  ];
  return (args) =>
    new Promise((resolve) => {
      execFile("skopeo", [...global, ...args], { env, encoding: "utf8" }, (error, stdout, stderr) => {
        resolve({ code: error === null ? 0 : typeof error.code === "number" ? error.code : 1, stdout, stderr });
      });
    });
}

/** Copies an OCI layout's `tag` to `destination` (`host:port/repository:tag`, plain HTTP) as `login`. */
export function pushLayout(
  skopeo: (args: string[]) => Promise<SkopeoResult>,
  layoutDir: string,
  tag: string,
  destination: string,
  login: { username: string; password: string },
): Promise<SkopeoResult> {
  return skopeo([
    "copy",
    "--dest-tls-verify=false",
    "--dest-creds",
    `${login.username}:${login.password}`,
    `oci:${layoutDir}:${tag}`,
    `docker://${destination}`,
  ]);
}
