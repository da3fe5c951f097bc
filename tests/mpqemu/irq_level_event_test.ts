// IrqLevelEvent: one owner for an interrupt's irqfd/resamplefd pair, on
// real eventfds: signalling and draining each side, never blocking on the
// blocking eventfds a peer may send, ownership of received fds, and
// closing both once.

import {
  assert,
  assertEquals,
  assertNotEquals,
  assertThrows,
} from "@std/assert";
import {
  eventfd,
  EventfdSignaller,
  isValidFd,
  SysError,
  writeFd,
} from "../../ffi/mod.ts";
import { IrqLevelEvent } from "../../lib/mpqemu/irq_level_event.ts";
import { assertNoFdLeak } from "../fd_check.ts";

Deno.test("irq_level_event: trigger and resample are two separate counters", async () => {
  await assertNoFdLeak(() => {
    using ev = IrqLevelEvent.create();
    using signaller = new EventfdSignaller();
    assertNotEquals(ev.irqfd, ev.resamplefd);
    assertEquals(ev.drainIrq(), 0n);
    ev.trigger(signaller);
    ev.trigger(signaller);
    assertEquals(ev.drainResample(), 0n);
    assertEquals(ev.drainIrq(), 2n);
    assertEquals(ev.drainIrq(), 0n);
    ev.signalResample(signaller);
    assertEquals(ev.drainIrq(), 0n);
    assertEquals(ev.drainResample(), 1n);
  });
});

Deno.test("irq_level_event: blocking eventfds, as a peer may send, never block a drain or a trigger", async () => {
  await assertNoFdLeak(() => {
    using ev = new IrqLevelEvent(eventfd(false), eventfd(false));
    using signaller = new EventfdSignaller();
    assertEquals(ev.drainResample(), 0n);
    ev.signalResample(signaller);
    ev.signalResample(signaller);
    assertEquals(ev.drainResample(), 2n);
    assertEquals(ev.drainResample(), 0n);
    assertEquals(ev.drainIrq(), 0n);
    // A counter one below full takes no write(2) without waiting; the
    // kernel's own signal saturates it instead.
    writeFd(
      ev.irqfd,
      new Uint8Array(new BigUint64Array([2n ** 64n - 2n]).buffer),
    );
    for (let i = 0; i < 40; i++) ev.trigger(signaller);
    assertEquals(ev.drainIrq(), 2n ** 64n - 1n);
    ev.trigger(signaller);
    assertEquals(ev.drainIrq(), 1n);
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
    using signaller = new EventfdSignaller();
    assertThrows(() => ev.trigger(signaller), SysError, "EBADF");
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
