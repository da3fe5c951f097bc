import { assert, assertEquals, assertThrows } from "@std/assert";
import { isValidFd } from "../../ffi/mod.ts";
import { Iohub } from "../../lib/remote/iohub.ts";
import { IrqLevelEvent } from "../../lib/mpqemu/mod.ts";
import { assertNoFdLeak } from "../fd_check.ts";

/** An IOHUB whose watcher records what it is asked to watch. */
function hub(): { iohub: Iohub; watched: Map<number, number> } {
  const watched = new Map<number, number>();
  const iohub = new Iohub({
    watch: (fd, pirq) => watched.set(fd, pirq),
    unwatch: (fd) => watched.delete(fd),
  });
  return { iohub, watched };
}

/**
 * Asserts PIRQ `pirq`'s counters, given as [asserts, deasserts, resamples,
 * reasserts].
 */
function assertCounters(
  iohub: Iohub,
  pirq: number,
  [asserts, deasserts, resamples, reasserts]: [number, number, number, number],
): void {
  assertEquals(iohub.counters(pirq), {
    asserts,
    deasserts,
    resamples,
    reasserts,
  });
}

Deno.test("iohub: counts sources and asserts only on 0 -> 1", () =>
  assertNoFdLeak(() => {
    const { iohub } = hub();
    const ev = IrqLevelEvent.create();
    const irqfd = ev.irqfd;
    iohub.setIrqfd(8, ev);
    iohub.setIrq(8, true);
    iohub.setIrq(8, true);
    assertEquals(iohub.level(8), 2);
    assertEquals(ev.drainIrq(), 1n, "one write for two sources");
    iohub.setIrq(8, false);
    iohub.setIrq(8, false);
    iohub.setIrq(8, false);
    assertEquals(iohub.level(8), 0, "never below 0");
    assertEquals(ev.drainIrq(), 0n, "no write on deassert");
    iohub.setIrq(8, true);
    assertEquals(ev.drainIrq(), 1n);
    assertCounters(iohub, 8, [2, 2, 0, 0]);
    assertEquals(iohub.level(9), 0, "PIRQs are independent");
    iohub.finalize();
    assert(!isValidFd(irqfd));
  }));

Deno.test("iohub: resample re-asserts while the level is high, not after", () =>
  assertNoFdLeak(() => {
    const { iohub, watched } = hub();
    const ev = IrqLevelEvent.create();
    iohub.setIrqfd(3, ev);
    assertEquals(watched.get(ev.resamplefd), 3);
    iohub.setIrq(3, true);
    ev.drainIrq();
    for (let i = 0; i < 4; i++) {
      ev.resampleEvent.signal();
      iohub.resample(3);
      assertEquals(ev.drainIrq(), 1n);
    }
    assertEquals(ev.drainResample(), 0n, "the handler drained the resamplefd");
    iohub.setIrq(3, false);
    ev.resampleEvent.signal();
    iohub.resample(3);
    assertEquals(ev.drainIrq(), 0n);
    assertCounters(iohub, 3, [1, 1, 5, 4]);
    iohub.finalize();
  }));

Deno.test("iohub: a new pair replaces the old one, which is closed", () =>
  assertNoFdLeak(() => {
    const { iohub, watched } = hub();
    const old = IrqLevelEvent.create();
    const oldFds = [old.irqfd, old.resamplefd];
    iohub.setIrqfd(0, old);
    iohub.setIrq(0, true);
    const next = IrqLevelEvent.create();
    iohub.setIrqfd(0, next);
    assert(oldFds.every((fd) => !isValidFd(fd)), "old fds closed");
    assertEquals([...watched.keys()], [next.resamplefd]);
    assertEquals(
      next.drainIrq(),
      1n,
      "a pending level is asserted on the new irqfd",
    );
    iohub.clear(0);
    assertEquals(watched.size, 0);
    assertEquals(iohub.hasIrqfd(0), false);
    iohub.finalize();
  }));

Deno.test("iohub: finalize closes every pair", () => {
  const { iohub, watched } = hub();
  const evs = [
    IrqLevelEvent.create(),
    IrqLevelEvent.create(),
    IrqLevelEvent.create(),
  ];
  const fds = evs.flatMap((e) => [e.irqfd, e.resamplefd]);
  evs.forEach((e, i) => iohub.setIrqfd(i * 8, e));
  iohub.finalize();
  assert(fds.every((fd) => !isValidFd(fd)));
  assertEquals(watched.size, 0);
});

Deno.test("iohub: a pair whose resamplefd cannot be watched is closed, not installed", () =>
  assertNoFdLeak(() => {
    const iohub = new Iohub({
      watch: () => {
        throw new Error("epoll_ctl(ADD): EPERM");
      },
      unwatch: () => {
        throw new Error("unwatch of a pair never watched");
      },
    });
    const ev = IrqLevelEvent.create();
    const fds = [ev.irqfd, ev.resamplefd];
    assertThrows(() => iohub.setIrqfd(8, ev), Error, "EPERM");
    assert(!iohub.hasIrqfd(8));
    assert(!fds.some(isValidFd), "both eventfds closed");
    // Clearing and finalizing find nothing to unwatch.
    iohub.clear(8);
    iohub.finalize();
  }));

Deno.test("iohub: an EOI still queued at a rising edge is taken, never re-asserts", () =>
  assertNoFdLeak(() => {
    const { iohub } = hub();
    const ev = IrqLevelEvent.create();
    try {
      iohub.setIrqfd(8, ev);
      iohub.setIrq(8, true);
      assertEquals(ev.drainIrq(), 1n);
      iohub.setIrq(8, false);
      // The guest's EOI for that interrupt has not been handled yet when
      // the device raises the next one.
      ev.resampleEvent.signal();
      iohub.setIrq(8, true);
      assertEquals(ev.drainIrq(), 1n, "the new edge, once");
      // The loop would now see the resamplefd: nothing is left to handle.
      iohub.resample(8);
      assertEquals(ev.drainIrq(), 0n, "no re-assert of the new interrupt");
      assertCounters(iohub, 8, [2, 1, 1, 0]);
      // A real EOI while the level is high still re-asserts.
      ev.resampleEvent.signal();
      iohub.resample(8);
      assertEquals(ev.drainIrq(), 1n);
      assertEquals(iohub.counters(8).reasserts, 1);
    } finally {
      iohub.finalize();
    }
  }));

Deno.test("iohub: edges before SET_IRQFD count neither as asserts nor as deasserts", () =>
  assertNoFdLeak(() => {
    const { iohub } = hub();
    iohub.setIrq(3, true);
    iohub.setIrq(3, false);
    iohub.setIrq(3, true);
    assertCounters(iohub, 3, [0, 0, 0, 0]);
    iohub.setIrqfd(3, IrqLevelEvent.create());
    iohub.setIrq(3, false);
    const c = iohub.counters(3);
    assertEquals(c.asserts, 1, "the held level asserted at SET_IRQFD");
    assertEquals(c.deasserts, 1);
    iohub.finalize();
  }));
