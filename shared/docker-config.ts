/**
 * The `.dockerconfigjson` format that kubelet, containerd, skopeo and docker all read: one `auths`
 * entry per registry domain carrying `username`, `password` and `auth` = base64("username:password").
 */

export interface RegistryLogin {
  domains: readonly string[];
  username: string;
  password: string;
}

export interface DockerAuth {
  username: string;
  password: string;
  auth: string;
}

export interface DockerConfig {
  auths: Record<string, DockerAuth>;
}

/** The config as an object; domains are lower-cased, de-duplicated and sorted so equal logins give equal bytes. */
export function dockerConfig(logins: readonly RegistryLogin[]): DockerConfig {
  const entries = new Map<string, DockerAuth>();
  for (const login of logins) {
    if (login.username.includes(":")) {
      // The `auth` field splits on the first colon, so such a user name could not round-trip.
      throw new Error("a registry user name must not contain ':'");
    }
    const auth = Buffer.from(`${login.username}:${login.password}`, "utf8").toString("base64");
    for (const domain of login.domains) {
      const key = domain.trim().toLowerCase();
      if (key === "") continue;
      entries.set(key, { username: login.username, password: login.password, auth });
    }
  }
  const auths: Record<string, DockerAuth> = {};
  for (const key of [...entries.keys()].sort()) auths[key] = entries.get(key) as DockerAuth;
  return { auths };
}

/** The config serialised exactly as it is stored under a Secret's `.dockerconfigjson` key. */
export function dockerConfigJson(logins: readonly RegistryLogin[]): string {
  return JSON.stringify(dockerConfig(logins));
}
