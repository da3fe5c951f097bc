// The remote's loop in this process, stepped by the test, so that the
// order in which events are pending when it wakes is under control.

import { assertEquals } from "@std/assert";
import { EventFd, socketpair } from "../../ffi/mod.ts";
import { createTestDev, Reg } from "../../lib/pci/devices/testdev.ts";
import { Channel, Cmd, Received } from "../../lib/mpqemu/mod.ts";
import type { LogSink } from "../../lib/log.ts";
import { Remote } from "../../lib/remote/remote.ts";
import { assertNoFdLeak } from "../fd_check.ts";

const BAR0 = 0xfebf0000;

/** A request and its RET, stepping the remote until the reply is there. */
function roundTrip(remote: Remote, ch: Channel): bigint {
  ch.send(ch.tx);
  for (let i = 0; i < 10 && ch.receive(true) !== Received.MESSAGE; i++) {
    remote.step(1000);
  }
  assertEquals(ch.rx.cmd, Cmd.RET);
  return ch.rx.retValue;
}

/**
 * A remote serving one testdev on a socketpair, its BAR0 programmed and
 * decoding, with the irqfd pair `irq`/`rs` sent; the caller closes both.
 */
function servedDevice(
  irq: EventFd,
  rs: EventFd,
  log: LogSink = () => {},
): { remote: Remote; ch: Channel } {
  const [ours, theirs] = socketpair();
  const remote = new Remote({ log });
  const ch = new Channel(ours);
  try {
    remote.addDevice({
      id: "dev",
      factory: createTestDev,
      endpoint: { kind: "fd", fd: theirs },
    });
    ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, 0x10, BAR0, 4);
    roundTrip(remote, ch);
    ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, 0x04, 0x2, 2);
    roundTrip(remote, ch);
    ch.send(ch.tx.encodeEmpty(Cmd.SET_IRQFD), [irq.fd, rs.fd]);
  } catch (e) {
    ch.close();
    remote.close();
    throw e;
  }
  return { remote, ch };
}

Deno.test("remote loop: an EOI pending with the next raise never re-asserts it", () =>
  assertNoFdLeak(() => {
    const logs: string[] = [];
    using irq = new EventFd();
    using rs = new EventFd();
    const { remote, ch } = servedDevice(irq, rs, (line, severity) => {
      if (severity !== "detail") logs.push(line);
    });
    try {
      const reg = (r: number): bigint => BigInt(BAR0 + r);
      for (let k = 0; k < 3; k++) {
        ch.tx.encodeBar(Cmd.BAR_WRITE, reg(Reg.IRQ_RAISE), 1n, 4, true);
        roundTrip(remote, ch);
        assertEquals(irq.drain(), 1n);
        ch.tx.encodeBar(Cmd.BAR_WRITE, reg(Reg.IRQ_ACK), 1n, 4, true);
        roundTrip(remote, ch);
        // The loop reported the socket last time; epoll hands a level-
        // triggered fd back ahead of anything that became ready since.
        rs.signal();
        ch.tx.encodeBar(Cmd.BAR_WRITE, reg(Reg.IRQ_RAISE), 1n, 4, true);
        roundTrip(remote, ch);
        assertEquals(irq.drain(), 1n, `round ${k}: one assert, no re-assert`);
        ch.tx.encodeBar(Cmd.BAR_WRITE, reg(Reg.IRQ_ACK), 1n, 4, true);
        roundTrip(remote, ch);
      }
      assertEquals(remote.iohub.counters(0), {
        asserts: 6,
        deasserts: 6,
        resamples: 3,
        reasserts: 0,
      });
      ch.close();
      while (remote.serving) remote.step(1000);
      assertEquals(logs, [
        "dev: peer closed the connection; INTx asserts=6 deasserts=6 resamples=3 reasserts=0; refused accesses=0",
      ]);
    } finally {
      if (!ch.closed) ch.close();
      remote.close();
    }
  }));

Deno.test("remote loop: a level still high at EOI is re-asserted", () =>
  assertNoFdLeak(() => {
    using irq = new EventFd();
    using rs = new EventFd();
    const { remote, ch } = servedDevice(irq, rs);
    try {
      ch.tx.encodeBar(Cmd.BAR_WRITE, BigInt(BAR0 + Reg.IRQ_RAISE), 1n, 4, true);
      roundTrip(remote, ch);
      assertEquals(irq.drain(), 1n);
      rs.signal();
      remote.step(1000);
      assertEquals(irq.drain(), 1n, "EOI without ACK: injected again");
      assertEquals(remote.iohub.counters(0).reasserts, 1);
    } finally {
      if (!ch.closed) ch.close();
      remote.close();
    }
  }));
