import { connect, createServer, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

/**
 * A TCP relay in front of the test apiserver, so a test can make the apiserver vanish for one client
 * at a chosen moment (open connections reset, new ones refused) without stopping the control plane
 * every other test file shares.
 */
export async function startTcpProxy(target: URL): Promise<{ port: number; forwardedBytes(): number; stop(): Promise<void> }> {
  const sockets = new Set<Socket>();
  let forwarded = 0;
  const server = createServer((client) => {
    const upstream = connect(Number(target.port), target.hostname);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => undefined);
    }
    upstream.on("data", (chunk: Buffer) => (forwarded += chunk.length));
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    forwardedBytes: () => forwarded,
    stop: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.resetAndDestroy();
      await closed;
    },
  };
}
