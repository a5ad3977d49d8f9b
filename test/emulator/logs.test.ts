/**
 * The emulator writes `err` like the broker and the refresher (shared/log.ts): an emulator bug is
 * logged with the error's name and message on one line, never its stack.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createClock, startEmulator, type Emulator } from "../../emulator/index.ts";
import { createLogger } from "../../shared/log.ts";
import { assumeRole } from "./clients.ts";
import { broker, roles, testWorld } from "./world.ts";

const lines: string[] = [];
const real = createClock({ frozen: true });
let broken = false;
let emulator: Emulator;

beforeAll(async () => {
  // A clock that throws stands in for an emulator bug: the real emulator has none to produce on demand.
  const clock = {
    ...real,
    now: () => {
      if (broken) throw new TypeError("clock read failed\n    in a second line");
      return real.now();
    },
  };
  emulator = await startEmulator({
    world: testWorld(),
    clock,
    logger: createLogger("emulator", { destination: { write: (line: string) => void lines.push(line) } }),
  });
});
afterAll(() => emulator?.close());

describe("the emulator's log (an emulator bug injected through a clock that throws)", () => {
  it("writes an emulator bug's err as its name and message, without a stack", async () => {
    broken = true;
    const answer = await assumeRole(emulator.endpoints.sts, broker, { RoleArn: roles.acrPull, RoleSessionName: "s" }).catch((error: unknown) => error);
    broken = false;
    expect(answer).toBeInstanceOf(Error);
    const bug = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.msg === "emulator bug");
    expect(bug?.err).toEqual({ name: "TypeError", message: "clock read failed in a second line" });
    expect(JSON.stringify(bug)).not.toContain("stack");
  });
});
