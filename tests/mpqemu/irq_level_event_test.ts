// IrqLevelEvent: one owner for an interrupt's irqfd/resamplefd pair, on
// real eventfds: signalling and draining each side, taking a resample
// without blocking, ownership of received fds, and closing both once.

import {
  assert,
  assertEquals,
  assertNotEquals,
  assertThrows,
} from "@std/assert";
import { eventfd, isValidFd, SysError } from "../../ffi/mod.ts";
import { IrqLevelEvent } from "../../lib/mpqemu/irq_level_event.ts";
import { assertNoFdLeak } from "../fd_check.ts";

Deno.test("irq_level_event: trigger and resample are two separate counters", async () => {
  await assertNoFdLeak(() => {
    using ev = IrqLevelEvent.create();
    assertNotEquals(ev.irqfd, ev.resamplefd);
    assertEquals(ev.drainIrq(), 0n);
    ev.trigger();
    ev.trigger();
    assertEquals(ev.drainResample(), 0n);
    assertEquals(ev.drainIrq(), 2n);
    assertEquals(ev.drainIrq(), 0n);
    ev.signalResample();
    assertEquals(ev.drainIrq(), 0n);
    assertEquals(ev.drainResample(), 1n);
  });
});

Deno.test("irq_level_event: takeResample takes a pending EOI once, never blocks", async () => {
  await assertNoFdLeak(() => {
    // Blocking eventfds, as a peer may send: takeResample must still return.
    using ev = new IrqLevelEvent(eventfd(false), eventfd(false));
    assertEquals(ev.takeResample(), false);
    ev.signalResample();
    ev.signalResample();
    assertEquals(ev.takeResample(), true);
    assertEquals(ev.takeResample(), false);
  });
});

Deno.test("irq_level_event: the typed events are the same fds, owned once", async () => {
  await assertNoFdLeak(() => {
    const ev = IrqLevelEvent.create();
    const [irqfd, resamplefd] = [ev.irqfd, ev.resamplefd];
    assertEquals(ev.irqEvent.fd, irqfd);
    assertEquals(ev.resampleEvent.fd, resamplefd);
    ev.irqEvent.signal();
    assertEquals(ev.drainIrq(), 1n);
    ev.close();
    assertEquals([ev.irqfd, ev.resamplefd], [-1, -1]);
    assert(!isValidFd(irqfd) && !isValidFd(resamplefd));
    ev.close();
    assertThrows(() => ev.trigger(), SysError, "EBADF");
  });
});

Deno.test("irq_level_event: takes ownership of received fds", async () => {
  await assertNoFdLeak(() => {
    const a = eventfd();
    const b = eventfd();
    {
      using _ev = new IrqLevelEvent(a, b);
    }
    assert(!isValidFd(a) && !isValidFd(b));
  });
});
