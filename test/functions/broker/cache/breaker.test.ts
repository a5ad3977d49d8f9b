import { describe, expect, it } from "vitest";
import { Breaker } from "../../../../functions/broker/cache/breaker.ts";

function breaker() {
  let now = 0;
  const b = new Breaker({ failures: 3, coolDownMs: 1000, now: () => now });
  return { b, advance: (ms: number) => void (now += ms) };
}

describe("the shared cache's breaker", () => {
  it("stays closed until the third failure in a row, and a success resets the count", () => {
    const { b } = breaker();
    expect([b.failed(), b.failed()]).toEqual([false, false]);
    b.succeeded();
    expect([b.failed(), b.failed()]).toEqual([false, false]);
    expect(b.allow()).toBe(true);
    expect(b.failed()).toBe(true);
    expect(b.state).toBe("open");
    expect(b.allow()).toBe(false);
  });

  it("lets one trial through after the cool-down; its success closes the breaker", () => {
    const { b, advance } = breaker();
    for (let i = 0; i < 3; i++) b.failed();
    advance(999);
    expect(b.allow()).toBe(false);
    advance(1);
    expect(b.state).toBe("trial");
    expect(b.allow()).toBe(true);
    expect(b.allow()).toBe(false);
    b.succeeded();
    expect(b.state).toBe("closed");
    expect(b.allow()).toBe(true);
  });

  it("re-opens for another cool-down when the trial fails", () => {
    const { b, advance } = breaker();
    for (let i = 0; i < 3; i++) b.failed();
    advance(1000);
    expect(b.allow()).toBe(true);
    expect(b.failed()).toBe(true);
    expect(b.allow()).toBe(false);
    advance(1000);
    expect(b.allow()).toBe(true);
  });
});
