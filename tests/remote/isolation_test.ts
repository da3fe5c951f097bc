// A hostile peer against a real remote process: guest memory truncated under
// DMA, irqfds that would block, resamplefds that would spin. The remote must
// survive, stay idle, log little, and keep serving the other device; fds
// attributed as QEMU's remote attributes them.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  addSeals,
  closeFd,
  EventFd,
  eventfd,
  F_SEAL_SHRINK,
  fileSize,
  memfd,
  MFD_ALLOW_SEALING,
  pipe,
  pollReadable,
  setNonblocking,
  SysError,
  truncateFd,
  writeFd,
} from "../../ffi/mod.ts";
import { Reg, TESTDEV_ID } from "../../lib/pci/devices/testdev.ts";
import { Cmd, Message, Received } from "../../lib/mpqemu/mod.ts";
import {
  assertExit,
  BAR0,
  type Client,
  type RemoteProcess,
  spawnRemote,
} from "./remote_process.ts";
import { assertNoFdLeak, fdsOnceCount, openFds } from "../fd_check.ts";

const reg = (o: number): bigint => BAR0 + BigInt(o);

/**
 * A test against a remote serving `ids`, every device enabled: the
 * body gets their clients and the remote; no fd of ours may leak.
 */
function isolationTest(
  name: string,
  ids: string[],
  body: (clients: Client[], r: RemoteProcess) => Promise<void>,
): void {
  Deno.test(name, () =>
    assertNoFdLeak(async () => {
      await using r = spawnRemote(ids);
      for (const c of r.clients) c.enable();
      await body(r.clients, r);
    }));
}

/** Runs a 16-byte DMA at GPA 0x1000 in direction `cmd`; its DMA_STATUS. */
function dma(c: Client, cmd: number): bigint {
  c.barWrite(reg(Reg.DMA_ADDR_LO), 0x1000n);
  c.barWrite(reg(Reg.DMA_ADDR_HI), 0n);
  c.barWrite(reg(Reg.DMA_LEN), 16n);
  c.barWrite(reg(Reg.DMA_CMD), BigInt(cmd));
  return c.barRead(reg(Reg.DMA_STATUS));
}

/** User + system CPU time of process `pid` in clock ticks (/proc/PID/stat). */
function cpuTicks(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  // Fields after the parenthesised command name; utime and stime are 14, 15.
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return Number(f[11]) + Number(f[12]);
}

/** CPU ticks (1/100 s) the remote burns over one second of wall time. */
async function cpuOverOneSecond(pid: number): Promise<number> {
  const before = cpuTicks(pid);
  await new Promise((r) => setTimeout(r, 1000));
  return cpuTicks(pid) - before;
}

isolationTest(
  "isolation: guest memory truncated under the remote fails the DMA, not the process",
  ["bad", "good"],
  async ([bad, good], r) => {
    const fd = memfd("unsealed-ram", 0x10000);
    const sealed = memfd("sealed-ram", 0x10000, MFD_ALLOW_SEALING);
    try {
      addSeals(sealed, F_SEAL_SHRINK);
      bad.syncSysmem([{ gpa: 0n, size: 0x10000n, offset: 0n, fd }]);
      good.syncSysmem([{ gpa: 0n, size: 0x10000n, offset: 0n, fd: sealed }]);
      assertEquals(dma(bad, 1), 0n, "DMA works before the truncation");
      assertEquals(dma(bad, 2), 0n);
      truncateFd(fd, 0);
      // Today's remote died here by SIGBUS.
      assertEquals(dma(bad, 2), 1n, "guest -> device fails");
      assertEquals(dma(bad, 1), 1n, "device -> guest fails too");
      assertEquals(fileSize(fd), 0, "and does not grow the file back");
      assertEquals(dma(bad, 2), 1n);
      assertEquals(bad.barRead(BAR0), BigInt(TESTDEV_ID), "bad still served");
      // A file sealed against shrinking cannot be truncated: it is mapped.
      let refused = "";
      try {
        truncateFd(sealed, 0);
      } catch (e) {
        refused = (e as SysError).code;
      }
      assertEquals(refused, "EPERM");
      assertEquals(dma(good, 2), 0n);
      const maps = Deno.readTextFileSync(`/proc/${r.child.pid}/maps`);
      assertStringIncludes(maps, "memfd:sealed-ram");
      assert(
        !maps.includes("memfd:unsealed-ram"),
        "unsealed RAM is not mapped",
      );
    } finally {
      closeFd(fd);
      closeFd(sealed);
    }
    const stderr = await assertExit(r, 0);
    const lines = stderr.split("\n").filter((l) => l.includes("DMA refused"));
    assertEquals(lines.length, 1, stderr);
    assertStringIncludes(lines[0], "bad: refused: BAR_WRITE: DMA refused");
  },
);

isolationTest(
  "isolation: an irqfd and resamplefd the peer makes blocking, fills and drains never block the remote",
  ["bad", "good"],
  async ([bad, good], r) => {
    using irq = new EventFd();
    using rs = new EventFd();
    bad.setIrqfd(irq.fd, rs.fd);
    bad.barrier();
    // O_NONBLOCK lives in the file description the peer shares with the
    // remote: the peer clears it once the remote holds the pair, and fills
    // the irqfd to its maximum, where a write(2) of 1 waits for a reader.
    setNonblocking(irq.fd, false);
    setNonblocking(rs.fd, false);
    writeFd(
      irq.fd,
      new Uint8Array(new BigUint64Array([0xfffffffffffffffen]).buffer),
    );
    // A remote that wrote to it blocked here, for every device.
    assertEquals(bad.barWrite(reg(Reg.IRQ_RAISE), 1n), 0n);
    assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
    // EOIs with the level high re-assert through the same irqfd; the peer
    // also drains its resamplefd itself, so the remote may find the blocking
    // eventfd epoll reported readable empty.
    for (let i = 0; i < 20; i++) {
      rs.signal();
      rs.drain();
      rs.signal();
    }
    bad.barrier();
    assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
    // The kernel's own signal saturates the counter instead of waiting.
    assertEquals(irq.drain(), 0xffffffffffffffffn);
    bad.barWrite(reg(Reg.IRQ_ACK), 1n);
    bad.barWrite(reg(Reg.IRQ_RAISE), 1n);
    assertEquals(irq.drain(), 1n);
    await assertExit(r, 0);
  },
);

isolationTest(
  "isolation: broken resamplefds are refused at SET_IRQFD, the remote stays idle",
  ["wpipe", "rpipe", "self", "sema", "cross", "good"],
  async ([wpipe, rpipe, self, sema, cross, good], r) => {
    const baseline = openFds(r.child.pid).length;
    using irq = new EventFd();
    using irq2 = new EventFd();
    using rs = new EventFd();
    // The write end of a pipe whose reader is gone (EPOLLERR), the read end
    // of one whose writer is gone (EPOLLHUP).
    const [r1, w1] = pipe();
    closeFd(r1);
    wpipe.setIrqfd(irq.fd, w1);
    closeFd(w1);
    const [r2, w2] = pipe();
    closeFd(w2);
    rpipe.setIrqfd(irq.fd, r2);
    closeFd(r2);
    // The irqfd as its own resamplefd, with the level held high.
    self.barWrite(reg(Reg.IRQ_RAISE), 1n);
    self.setIrqfd(irq2.fd, irq2.fd);
    // A semaphore eventfd with a huge count: each read takes just 1.
    const semaphore = new EventFd(eventfd(true, true));
    try {
      writeFd(
        semaphore.fd,
        new Uint8Array(new BigUint64Array([0xfffffffffffffff0n]).buffer),
      );
      sema.setIrqfd(irq.fd, semaphore.fd);
    } finally {
      semaphore.close();
    }
    // Two devices, each one's irqfd the other's resamplefd, levels held.
    good.setIrqfd(irq.fd, rs.fd);
    good.barWrite(reg(Reg.IRQ_RAISE), 1n);
    cross.barWrite(reg(Reg.IRQ_RAISE), 1n);
    cross.setIrqfd(rs.fd, irq.fd);
    for (const c of [wpipe, rpipe, self, sema, cross]) {
      assert(await pollReadable(c.ch.fd, 5000), "the channel is closed");
    }
    assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
    // Bounded liveness: a spinning loop burns ~100 ticks per second.
    const ticks = await cpuOverOneSecond(r.child.pid);
    assert(ticks < 20, `the remote burned ${ticks} ticks in 1 s`);
    assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
    assertEquals(irq.drain(), 1n, "good's interrupt was asserted");
    // Five channels closed with every refused fd; good's pair is kept.
    assertEquals(
      (await fdsOnceCount(r.child.pid, baseline - 5 + 2)).length,
      baseline - 5 + 2,
    );
    const stderr = await assertExit(r, 1);
    const why = {
      wpipe: "the resamplefd is not an eventfd",
      rpipe: "the resamplefd is not an eventfd",
      self: "the resamplefd is the irqfd itself",
      sema: "the resamplefd is a semaphore eventfd",
      cross: "an eventfd of the pair is PIRQ 5's", // good's PIRQ
    };
    for (const [id, text] of Object.entries(why)) {
      const lines = stderr.split("\n").filter((l) => l.includes(`: ${id}: `));
      assertEquals(lines.length, 1, stderr);
      assertStringIncludes(lines[0], `${id}: closed: SET_IRQFD: fds: ${text}`);
    }
    assertEquals(stderr.trim().split("\n").length, r.clients.length, stderr);
  },
);

isolationTest(
  "isolation: fds sent with SET_IRQFD and the next requests in one sendmsg go to SET_IRQFD, as in QEMU",
  ["dev"],
  async ([c], r) => {
    using irq = new EventFd();
    using rs = new EventFd();
    const m = new Message();
    const wire = new Uint8Array(256);
    let len = 0;
    const queue = (msg: Message): void => {
      wire.set(msg.bytes.subarray(0, msg.wireLength), len);
      len += msg.wireLength;
    };
    queue(m.encodeCfg(Cmd.PCI_CFGREAD, 0x00, 0, 4));
    queue(m.encodeEmpty(Cmd.SET_IRQFD));
    queue(m.encodeBar(Cmd.BAR_WRITE, reg(Reg.IRQ_RAISE), 1n, 4, true));
    queue(m.encodeBar(Cmd.BAR_READ, BAR0, 0n, 4, true));
    // Today's remote gave the fds to the last message read and closed the
    // channel: "BAR_READ: num_fds: 2, expected 0".
    assertEquals(c.sendRaw(wire.subarray(0, len), [irq.fd, rs.fd]), len);
    const rets: bigint[] = [];
    for (let i = 0; i < 3; i++) {
      assert(
        c.ch.hasBuffered || await pollReadable(c.ch.fd, 5000),
        `reply ${i + 1} of 3`,
      );
      assertEquals(c.ch.receive(), Received.MESSAGE);
      rets.push(c.ch.rx.retValue);
    }
    assertEquals(rets, [0x10b11234n, 0n, BigInt(TESTDEV_ID)]);
    assertEquals(irq.drain(), 1n, "the irqfd was installed and asserted");
    await assertExit(r, 0);
  },
);
