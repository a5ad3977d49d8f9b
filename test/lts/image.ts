/**
 * The refresher image as job/Dockerfile describes it, without a container engine: a root filesystem
 * holding only the Node.js LTS binary (the release build of test/lts/NODE_VERSION as the npm registry
 * publishes it, node-linux-<arch>), the libraries it links (what distroless cc provides) and the bundle at the
 * Dockerfile's paths, run the way a pod runs it: root read-only, an emptyDir on /tmp, projected
 * token files, as the Dockerfile's USER, with its ENV. Needs root (mount namespaces and chroot).
 */
import { execFile, spawn } from "node:child_process";
import { chmod, copyFile, mkdir, readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const repoRoot = new URL("../../", import.meta.url).pathname;

export interface ImageFacts {
  /** `ARG NODE_VERSION`: the Node.js version the image is built with. */
  nodeVersion: string;
  /** `ARG <NAME>=<default>` before the first FROM: the base images, among others. */
  args: Record<string, string>;
  /** The `FROM` references, in order. */
  from: string[];
  entrypoint: string[];
  cmd: string[];
  user: { uid: number; gid: number };
  env: Record<string, string>;
}

/** Reads what the image would be from the Dockerfile's text (exec-form ENTRYPOINT/CMD, numeric USER). */
export function imageFacts(dockerfile: string): ImageFacts {
  const lines = dockerfile
    .replace(/\\\n/g, " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
  const args: Record<string, string> = {};
  const from: string[] = [];
  const env: Record<string, string> = {};
  let entrypoint: string[] = [];
  let cmd: string[] = [];
  let user = { uid: 0, gid: 0 };
  for (const line of lines) {
    const [instruction = "", ...rest] = line.split(/\s+/);
    const value = rest.join(" ");
    switch (instruction.toUpperCase()) {
      case "ARG": {
        const match = /^(\w+)=(.*)$/.exec(value);
        if (match && from.length === 0) args[match[1] as string] = (match[2] as string).replace(/\$\{(\w+)\}/g, (_, name: string) => args[name] ?? "");
        break;
      }
      case "FROM":
        from.push(rest.filter((word) => !word.startsWith("--"))[0] ?? "");
        break;
      case "ENV": {
        const match = /^(\w+)=(?:"(.*)"|(\S*))$/.exec(value);
        if (match) env[match[1] as string] = match[2] ?? match[3] ?? "";
        break;
      }
      case "ENTRYPOINT":
        entrypoint = JSON.parse(value) as string[];
        break;
      case "CMD":
        cmd = JSON.parse(value) as string[];
        break;
      case "USER": {
        const [uid, gid] = value.split(":").map(Number);
        if (uid === undefined || !Number.isInteger(uid)) throw new Error(`USER ${value} is not numeric; Kubernetes' runAsNonRoot needs a numeric user`);
        user = { uid, gid: gid ?? uid };
        break;
      }
    }
  }
  const nodeVersion = args["NODE_VERSION"];
  if (nodeVersion === undefined) throw new Error("the Dockerfile declares no ARG NODE_VERSION=<version>");
  return { nodeVersion, args, from, entrypoint, cmd, user, env };
}

export async function readImageFacts(): Promise<ImageFacts> {
  return imageFacts(await readFile(join(repoRoot, "job/Dockerfile"), "utf8"));
}

/** The Node.js LTS binary of test/lts/NODE_VERSION, fetched once by test/lts/node.sh (job/fetch-node.sh, hash-checked). */
export async function ltsNode(arch: "amd64" | "arm64" = "amd64"): Promise<string> {
  return (await run("bash", [join(repoRoot, "test/lts/node.sh"), "--arch", arch])).stdout.trim();
}

/** The shared libraries `binary` loads, as ldd resolves them on this machine. */
async function linkedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run("ldd", [binary]);
  return [...stdout.matchAll(/(?:=>\s*)?(\/\S+)\s+\(0x/g)].map((match) => match[1] as string);
}

/**
 * Lays out the image's root filesystem in `rootfs`: the node binary and the bundle at the paths of
 * the Dockerfile's ENTRYPOINT, the libraries node links, and empty mount points for /tmp, /dev,
 * /proc and the two projected-token folders. Owned by root, readable by everyone, as image layers are.
 */
export async function assembleRootfs(rootfs: string, facts: ImageFacts, node: string, bundle: string): Promise<void> {
  const [nodePath, bundlePath] = facts.entrypoint;
  if (!nodePath || !bundlePath) throw new Error(`ENTRYPOINT ${JSON.stringify(facts.entrypoint)} is not [node, bundle]`);
  const place = async (from: string, to: string, mode: number) => {
    await mkdir(dirname(join(rootfs, to)), { recursive: true });
    await copyFile(from, join(rootfs, to));
    await chmod(join(rootfs, to), mode);
  };
  await place(node, nodePath, 0o755);
  await place(bundle, bundlePath, 0o644);
  for (const library of await linkedLibraries(node)) await place(library, library, 0o755);
  for (const folder of ["tmp", "dev", "proc", ...Object.values(tokenMounts).map((path) => path.slice(1))])
    await mkdir(join(rootfs, folder), { recursive: true });
}

/** Bundles the refresher (job/build.mjs) and lays out the image from it in `<dir>/rootfs`. */
export async function buildImage(dir: string): Promise<{ rootfs: string; facts: ImageFacts }> {
  const facts = await readImageFacts();
  const bundle = join(dir, "refresher.mjs");
  await run(process.execPath, [join(repoRoot, "job/build.mjs"), bundle]);
  const rootfs = join(dir, "rootfs");
  await assembleRootfs(rootfs, facts, await ltsNode(), bundle);
  return { rootfs, facts };
}

/** Where a pod's projected tokens appear: the Kubernetes API's and the broker's (job/deploy). */
export const tokenMounts = {
  kubernetes: "/var/run/secrets/kubernetes.io/serviceaccount",
  broker: "/var/run/secrets/acr-credential-broker",
} as const;

export interface ImageRun {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** Host folders to mount read-only at these paths of the root filesystem (the projected volumes). */
  volumes?: Partial<Record<keyof typeof tokenMounts, string>>;
  env?: Record<string, string>;
  /** Replaces the ENTRYPOINT (e.g. to run the node binary with a probe script). */
  entrypoint?: string[];
  timeoutMs?: number;
}

export interface RunningImage {
  /** Sends a signal to the image's process (node, once the sandbox has exec'd into it). */
  kill(signal: NodeJS.Signals): void;
  /** Resolves when the process ends; `stdout`/`stderr` are everything it wrote. */
  done: Promise<ImageRun>;
  /** What it has written to stderr so far. */
  stderr(): string;
}

/**
 * Starts the image: in a private mount namespace, `rootfs` is bound onto itself read-only, a 16 MiB
 * tmpfs goes on /tmp (the manifests' emptyDir), the host's /dev and /proc and the given volumes are
 * bound in, and chroot switches to the Dockerfile's USER before exec'ing ENTRYPOINT + args. The
 * environment is the Dockerfile's ENV plus `env`, nothing of the test process. Every step execs the
 * next, so the child's pid ends up being node's.
 */
export function startImage(rootfs: string, facts: ImageFacts, args: string[], options: RunOptions = {}): RunningImage {
  const volumes = Object.entries(options.volumes ?? {}).flatMap(([key, source]) => [source, join(rootfs, tokenMounts[key as keyof typeof tokenMounts])]);
  const script = [
    "set -eu",
    'rootfs="$1"; shift; uid="$1"; shift; gid="$1"; shift; nvolumes="$1"; shift',
    'mount --bind "$rootfs" "$rootfs" && mount -o remount,bind,ro "$rootfs"',
    'mount -t tmpfs -o size=16m,mode=1777 tmpfs "$rootfs/tmp"',
    'mount --rbind /dev "$rootfs/dev" && mount --rbind /proc "$rootfs/proc"',
    'while [ "$nvolumes" -gt 0 ]; do mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"; shift 2; nvolumes=$((nvolumes - 1)); done',
    'exec chroot --userspec="$uid:$gid" --groups="$gid" "$rootfs" "$@"',
  ].join("\n");
  const command = [...(options.entrypoint ?? facts.entrypoint), ...args];
  const argv = [
    "--mount",
    "--propagation",
    "private",
    "bash",
    "-c",
    script,
    "image",
    rootfs,
    String(facts.user.uid),
    String(facts.user.gid),
    String(volumes.length / 2),
    ...volumes,
    ...command,
  ];
  const child = spawn("unshare", argv, { env: { PATH: "/usr/sbin:/usr/bin:/sbin:/bin", ...facts.env, ...options.env }, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<ImageRun>((resolve, reject) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), options.timeoutMs ?? 60_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
  return { kill: (signal) => void child.kill(signal), done, stderr: () => stderr };
}

/** Runs the image to its end (see startImage). */
export function runImage(rootfs: string, facts: ImageFacts, args: string[], options: RunOptions = {}): Promise<ImageRun> {
  return startImage(rootfs, facts, args, options).done;
}

/** Why images cannot be run here (not root, no mount namespaces), or undefined when they can. */
export async function imageRunUnavailable(): Promise<string | undefined> {
  if (process.getuid?.() !== 0) return "running the image needs root (mount namespaces, chroot)";
  try {
    await run("unshare", ["--mount", "--propagation", "private", "true"]);
    return undefined;
  } catch (error) {
    return `unshare --mount fails here (${(error as { stderr?: string }).stderr?.trim() || String(error)}); run as root with CAP_SYS_ADMIN`;
  }
}
