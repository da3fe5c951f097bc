// The remote as a subprocess on socketpairs, driven over mpqemu from here:
// config space, BARs, interrupts through real eventfds, DMA, reset, two
// devices in one process, and every validity rule broken once.

import { assert, assertEquals, assertStringIncludes } from "@std/assert";
import {
  closeFd,
  EventFd,
  memfd,
  pollReadable,
  pollWritable,
  setNonblocking,
  WOULD_BLOCK,
} from "../../ffi/mod.ts";
import {
  BUFFER_OFFSET,
  Reg,
  TESTDEV_ID,
} from "../../lib/pci/devices/testdev.ts";
import { Cmd, Message, Received, UINT64_MAX } from "../../lib/mpqemu/mod.ts";
import {
  BAD_MESSAGES,
  type BadMessage,
  rawMessage,
} from "../mpqemu/bad_messages.ts";
import { guestRam } from "../proxy/guest_ram.ts";
import { prng } from "../prng.ts";
import { assertNoFdLeak, fdsOnceCount, openFds } from "../fd_check.ts";
import {
  assertExit,
  BAR0,
  BAR1,
  type Client,
  type RemoteProcess,
  spawnRemote,
} from "./remote_process.ts";

/**
 * A remote serving `id`, the device a test misbehaves on, and "good", a
 * bystander with its BARs enabled; the remote has served both channels.
 */
async function spawnWithBystander(id: string): Promise<RemoteProcess> {
  await using made = new AsyncDisposableStack();
  const r = made.use(spawnRemote([id, "good"]));
  r.clients[1].enable();
  r.clients[0].barrier();
  made.move();
  return r;
}

/** True if `fd` becomes readable within `ms`. */
function readable(fd: number, ms: number): Promise<boolean> {
  return pollReadable(fd, ms);
}

Deno.test("remote: config space identity and QEMU's BAR sizing sequence", async () => {
  await using r = spawnRemote(["dev"]);
  const c = r.clients[0];
  // probe_pci_info: 2-byte identity reads, then per BAR read, all-ones,
  // read back, restore.
  assertEquals(c.cfgRead(0x00, 2), 0x1234n);
  assertEquals(c.cfgRead(0x02, 2), 0x10b1n);
  assertEquals(c.cfgRead(0x0a, 2), 0x00ffn);
  assertEquals(c.cfgRead(0x2c, 2), 0x1234n);
  assertEquals(c.cfgRead(0x2e, 2), 0x0001n);
  assertEquals(c.cfgRead(0x08, 1), 1n);
  assertEquals(c.cfgRead(0x3d, 1), 1n);
  const sizes: bigint[] = [];
  for (let i = 0; i < 6; i++) {
    const reg = 0x10 + 4 * i;
    const orig = c.cfgRead(reg);
    assertEquals(c.cfgWrite(reg, 0xffffffff), 0n);
    sizes.push(c.cfgRead(reg));
    c.cfgWrite(reg, Number(orig));
    assertEquals(c.cfgRead(reg), orig);
  }
  assertEquals(sizes, [0xfffff000n, 0xffffffc1n, 0n, 0n, 0n, 0n]);
  // Out of range: QEMU's bound is addr + 4 > 256, answered with all-ones.
  assertEquals(c.cfgRead(0xfc, 4), 0n);
  assertEquals(c.cfgRead(0xfd, 1), UINT64_MAX);
  assertEquals(c.cfgWrite(0x100, 0), UINT64_MAX);
  // Other lengths as QEMU 7.2's pci_default_read/write_config take them:
  // 0 or 3 bytes read; len bytes written (zeros past the value's 4), none
  // for len <= 0; what would make QEMU abort is refused.
  assertEquals(c.cfgRead(0x00, 3), 0xb11234n);
  assertEquals(c.cfgRead(0x00, 0), 0n);
  assertEquals(c.cfgRead(0x00, 5), UINT64_MAX);
  assertEquals(c.cfgRead(0x00, -1), UINT64_MAX);
  assertEquals(c.cfgWrite(0x3c, 0x5a5a5a5a, 8), 0n);
  assertEquals(c.cfgRead(0x3c, 1), 0x5an);
  assertEquals(c.cfgWrite(0x3c, 0x77, -1), 0n);
  assertEquals(c.cfgRead(0x3c, 1), 0x5an);
  // QEMU asserts addr + len <= 256 computed unsigned: -1 at 0 wraps.
  assertEquals(c.cfgWrite(0x00, 0x77, -1), UINT64_MAX);
  assertEquals(c.cfgWrite(0x10, 0xfebf0000, 3), 0n);
  assertEquals(c.cfgRead(0x10), 0x00bf0000n);
  c.cfgWrite(0x10, 0);
  assertEquals(c.cfgWrite(0xf8, 0, 9), UINT64_MAX);
  // Read-only registers ignore writes.
  c.cfgWrite(0x00, 0);
  assertEquals(c.cfgRead(0x00), 0x10b11234n);
  assertEquals(c.barRead(0x1000n, 3, false), UINT64_MAX);
  // Unused I/O ports read as all ones of the access's width and ignore
  // writes, as in QEMU's remote; past 0x10000, memory or size 8: UINT64_MAX.
  assertEquals(c.barRead(0x1000n, 4, false), 0xffffffffn);
  assertEquals(c.barRead(0x1000n, 1, false), 0xffn);
  assertEquals(c.barRead(0xfffen, 2, false), 0xffffn);
  assertEquals(c.barWrite(0x1000n, 5n, 4, false), 0n);
  assertEquals(c.barWrite(0x1000n, 5n, 8, false), 0n);
  assertEquals(c.barRead(0xfffen, 4, false), UINT64_MAX);
  assertEquals(c.barWrite(0xfffen, 5n, 4, false), UINT64_MAX);
  assertEquals(c.barRead(0x1000n, 8, false), UINT64_MAX);
  assertEquals(c.barRead(1n << 60n, 4, false), UINT64_MAX);
  assertEquals(c.barWrite(1n << 60n, 0n, 4, false), UINT64_MAX);
  assertEquals(c.barRead(0x1000n, 4, true), UINT64_MAX);
  await assertExit(
    r,
    0,
    "dev: refused: PCI_CFGREAD: addr 0xfd + 4 passes 256",
    "dev: refused: PCI_CFGREAD: len 5 is not 1, 2 or 4",
    "dev: refused: PCI_CFGWRITE: len 9 at 0xf8 passes 256",
    "dev: refused: BAR_READ: 4 bytes at I/O 0x1000 hit no BAR",
    "dev: refused: BAR_READ: size 3 is not 1, 2, 4 or 8",
  );
});

Deno.test("remote: requests queued back to back are all answered, in order", async () => {
  await using r = spawnRemote(["dev"]);
  const c = r.clients[0];
  c.enable();
  // QEMU's proxy sends SET_IRQFD and SYNC_SYSMEM without waiting; a peer
  // may as well queue requests. The remote reads what is queued at once and
  // must answer every whole message it holds, not wait for the socket.
  const wire = new Uint8Array(4 * 40);
  let len = 0;
  const queue = (m: Message): void => {
    wire.set(m.bytes.subarray(0, m.wireLength), len);
    len += m.wireLength;
  };
  const m = new Message();
  queue(m.encodeBar(Cmd.BAR_WRITE, BAR0 + 0x04n, 0x1234n, 4, true));
  queue(m.encodeBar(Cmd.BAR_READ, BAR0 + 0x04n, 0n, 4, true));
  queue(m.encodeCfg(Cmd.PCI_CFGREAD, 0x00, 0, 4));
  queue(m.encodeBar(Cmd.BAR_READ, BAR1 + 0x00n, 0n, 4, false));
  assertEquals(c.sendRaw(wire.subarray(0, len)), len);
  const rets: bigint[] = [];
  for (let i = 0; i < 4; i++) {
    // Bounded: a remote that left a request unanswered fails, not hangs.
    assert(
      c.ch.hasBuffered || await pollReadable(c.ch.fd, 5000),
      `reply ${i + 1} of 4 never came`,
    );
    assertEquals(c.ch.receive(), Received.MESSAGE);
    assertEquals(c.ch.rx.cmd, Cmd.RET);
    rets.push(c.ch.rx.retValue);
  }
  assertEquals(rets, [0n, 0x1234n, 0x10b11234n, 0x10b10001n]);
  await assertExit(r, 0);
});

Deno.test("remote: registers through BAR0 (memory) and BAR1 (I/O)", async () => {
  await using r = spawnRemote(["dev"]);
  const c = r.clients[0];
  // Not decoded before the BARs are programmed and enabled.
  assertEquals(c.barRead(BAR0), UINT64_MAX);
  c.cfgWrite(0x10, Number(BAR0));
  c.cfgWrite(0x14, Number(BAR1));
  assertEquals(c.barRead(BAR0), UINT64_MAX);
  c.cfgWrite(0x04, 0x2, 2);
  assertEquals(c.barRead(BAR0), BigInt(TESTDEV_ID));
  // I/O decoding off: the port is unused, all ones as in QEMU's remote.
  assertEquals(c.barRead(BAR1, 4, false), 0xffffffffn);
  c.cfgWrite(0x04, 0x3, 2);
  assertEquals(c.barRead(BAR1, 4, false), BigInt(TESTDEV_ID));
  assertEquals(c.barWrite(BAR0 + 4n, 0xcafef00dn), 0n);
  assertEquals(c.barRead(BAR1 + 4n, 4, false), 0xcafef00dn);
  assertEquals(c.barWrite(BAR1 + 4n, 0x12345678n, 4, false), 0n);
  assertEquals(c.barRead(BAR0 + 4n), 0x12345678n);
  // Wrong width or alignment on a register: all-ones, write ignored.
  assertEquals(c.barRead(BAR0 + 4n, 2), 0xffffn);
  assertEquals(c.barRead(BAR0 + 5n, 4), 0xffffffffn);
  c.barWrite(BAR0 + 4n, 0n, 2);
  assertEquals(c.barRead(BAR0 + 4n), 0x12345678n);
  // The buffer takes 1, 2, 4 and 8 byte accesses anywhere inside it.
  const buf = BAR0 + BigInt(BUFFER_OFFSET);
  c.barWrite(buf + 3n, 0x1122334455667788n, 8);
  assertEquals(c.barRead(buf + 3n, 8), 0x1122334455667788n);
  assertEquals(c.barRead(buf + 4n, 1), 0x77n);
  assertEquals(c.barRead(buf + 9n, 2), 0x1122n);
  // Bad sizes and addresses outside the BAR get UINT64_MAX.
  assertEquals(c.barRead(BAR0, 3), UINT64_MAX);
  assertEquals(c.barWrite(BAR0, 0n, 16), UINT64_MAX);
  assertEquals(c.barRead(BAR0 + 0xffcn, 8), UINT64_MAX);
  assertEquals(c.barRead(BAR0 + 0x1000n), UINT64_MAX);
  // Past the I/O BAR is an unused port (see above).
  assertEquals(c.barRead(BAR1 + 0x40n, 4, false), 0xffffffffn);
  assertEquals(c.barRead(0xffff_ffff_ffff_fff0n), UINT64_MAX);
  // Moving a BAR moves the decode.
  c.cfgWrite(0x10, 0xfe000000);
  assertEquals(c.barRead(BAR0), UINT64_MAX);
  assertEquals(c.barRead(0xfe000000n), BigInt(TESTDEV_ID));
  await assertExit(r, 0);
});

Deno.test("remote: INTx through irqfd, resample re-asserts only while pending", async () => {
  await assertNoFdLeak(async () => {
    await using r = spawnRemote(["dev"]);
    const c = r.clients[0];
    c.enable();
    using intx = c.intx();
    const { irq, rs } = intx;
    c.barrier();
    assertEquals(irq.drain(), 0n);
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
    assertEquals(irq.drain(), 1n, "0 -> 1 asserts the irqfd");
    assertEquals(c.cfgRead(0x06, 2) & 0x8n, 0x8n, "status bit 3 shows INTx");
    // A second cause keeps the level high: no second edge.
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 4n);
    assertEquals(irq.drain(), 0n);
    // EOI: KVM writes the resamplefd; the level is still high.
    for (let k = 0; k < 3; k++) {
      rs.signal();
      assert(await readable(irq.fd, 5000), "resample re-asserts");
      assertEquals(irq.drain(), 1n);
    }
    c.barWrite(BAR0 + BigInt(Reg.IRQ_ACK), 5n);
    assertEquals(c.cfgRead(0x06, 2) & 0x8n, 0n);
    rs.signal();
    c.barrier();
    assertEquals(irq.drain(), 0n, "no re-assert after IRQ_ACK");
    assertEquals(c.barRead(BAR0 + BigInt(Reg.IRQ_COUNT)), 1n);
    // Interrupt Disable holds INTx low; status still shows it.
    c.cfgWrite(0x04, 0x403, 2);
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
    assertEquals(irq.drain(), 0n);
    assertEquals(c.cfgRead(0x06, 2) & 0x8n, 0x8n);
    rs.signal();
    c.barrier();
    assertEquals(irq.drain(), 0n, "masked: resample does not re-assert");
    c.cfgWrite(0x04, 0x003, 2);
    assertEquals(irq.drain(), 1n, "unmasking delivers the pending interrupt");
    // IRQ_MASK gates causes.
    c.barWrite(BAR0 + BigInt(Reg.IRQ_ACK), 1n);
    c.barWrite(BAR0 + BigInt(Reg.IRQ_MASK), 2n);
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
    assertEquals(irq.drain(), 0n);
    assertEquals(c.barRead(BAR0 + BigInt(Reg.IRQ_STATUS)), 1n);
    // A new SET_IRQFD replaces the pair; the level is still low.
    using replaced = c.intx();
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 2n);
    assertEquals(replaced.irq.drain(), 1n);
    assertEquals(irq.drain(), 0n, "the old irqfd is no longer used");
    await assertExit(
      r,
      0,
      "dev: peer closed the connection; INTx asserts=3 deasserts=2 resamples=5 reasserts=3; refused accesses=0",
    );
  });
});

Deno.test("remote: DMA both ways against a memfd sent with SYNC_SYSMEM", async () => {
  await assertNoFdLeak(async () => {
    await using r = spawnRemote(["dev"]);
    const c = r.clients[0];
    // Two regions of one fd: 64 KiB at GPA 0, 64 KiB at GPA 1 MiB.
    using ram = guestRam(c, 0x20000, [
      { gpa: 0n, size: 0x10000n, offset: 0n },
      { gpa: 0x100000n, size: 0x10000n, offset: 0x10000n },
    ]);
    c.enable();
    const reg = (o: number): bigint => BAR0 + BigInt(o);
    const buf = BAR0 + BigInt(BUFFER_OFFSET);
    for (let i = 0; i < 256; i += 8) {
      c.barWrite(buf + BigInt(i), 0x0101010101010101n * BigInt(i + 1), 8);
    }
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0x100100n);
    c.barWrite(reg(Reg.DMA_ADDR_HI), 0n);
    c.barWrite(reg(Reg.DMA_LEN), 256n);
    c.barWrite(reg(Reg.DMA_CMD), 1n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 0n);
    assertEquals(
      c.barRead(reg(Reg.IRQ_STATUS)) & 2n,
      2n,
      "DMA completion raises cause 1",
    );
    for (let i = 0; i < 256; i++) {
      assertEquals(ram.bytes[0x10100 + i], (i & ~7) + 1);
    }
    // Guest -> buffer.
    for (let i = 0; i < 2048; i++) ram.bytes[0x2000 + i] = (i * 7) & 0xff;
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0x2000n);
    c.barWrite(reg(Reg.DMA_LEN), 2048n);
    c.barWrite(reg(Reg.DMA_CMD), 2n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 0n);
    for (let i = 0; i < 2048; i += 97) {
      assertEquals(c.barRead(buf + BigInt(i), 1), BigInt((i * 7) & 0xff));
    }
    // Errors: a range crossing out of a region, a length of 0 or > 2048.
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0xff00n);
    c.barWrite(reg(Reg.DMA_LEN), 0x200n);
    c.barWrite(reg(Reg.DMA_CMD), 1n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 1n);
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0n);
    c.barWrite(reg(Reg.DMA_LEN), 2049n);
    c.barWrite(reg(Reg.DMA_CMD), 2n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 1n);
    c.barWrite(reg(Reg.DMA_ADDR_HI), 1n);
    c.barWrite(reg(Reg.DMA_LEN), 16n);
    c.barWrite(reg(Reg.DMA_CMD), 1n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 1n);
    // A new SYNC_SYSMEM replaces the whole map.
    const fd2 = memfd("guest-ram-2", 0x1000);
    c.syncSysmem([{ gpa: 0x2000n, size: 0x1000n, offset: 0n, fd: fd2 }]);
    closeFd(fd2);
    c.barWrite(reg(Reg.DMA_ADDR_HI), 0n);
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0x100100n);
    c.barWrite(reg(Reg.DMA_CMD), 1n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 1n, "old regions are gone");
    c.barWrite(reg(Reg.DMA_ADDR_LO), 0x2000n);
    c.barWrite(reg(Reg.DMA_CMD), 1n);
    assertEquals(c.barRead(reg(Reg.DMA_STATUS)), 0n);
    await assertExit(r, 0);
  });
});

Deno.test("remote: DEVICE_RESET restores defaults and lowers INTx", async () => {
  await using r = spawnRemote(["dev"]);
  const c = r.clients[0];
  c.enable();
  using intx = c.intx();
  const { irq, rs } = intx;
  c.barWrite(BAR0 + BigInt(Reg.SCRATCH), 77n);
  c.barWrite(BAR0 + BigInt(Reg.IRQ_MASK), 1n);
  c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
  c.barWrite(BAR0 + BigInt(BUFFER_OFFSET), 0xabn, 1);
  c.cfgWrite(0x3c, 11, 1);
  assertEquals(irq.drain(), 1n);
  assertEquals(c.reset(), 0n, "RET with size 0");
  assertEquals(c.cfgRead(0x04, 2), 0n);
  assertEquals(c.cfgRead(0x10), 0n);
  assertEquals(c.cfgRead(0x14), 1n);
  assertEquals(c.cfgRead(0x3c, 1), 0n);
  assertEquals(c.cfgRead(0x06, 2) & 0x8n, 0n);
  rs.signal();
  c.enable();
  assertEquals(irq.drain(), 0n, "the line is low after reset");
  assertEquals(c.barRead(BAR0 + BigInt(Reg.SCRATCH)), 0n);
  assertEquals(c.barRead(BAR0 + BigInt(Reg.IRQ_MASK)), 0xffffffffn);
  assertEquals(c.barRead(BAR0 + BigInt(Reg.IRQ_STATUS)), 0n);
  assertEquals(c.barRead(BAR0 + BigInt(Reg.IRQ_COUNT)), 0n);
  assertEquals(c.barRead(BAR0 + BigInt(BUFFER_OFFSET), 1), 0n);
  await assertExit(r, 0);
});

Deno.test("remote: two devices in one process are independent", async () => {
  await using r = spawnRemote(["a", "b"]);
  const [a, b] = r.clients;
  using irqA = new EventFd();
  using rsA = new EventFd();
  using irqB = new EventFd();
  using rsB = new EventFd();
  a.enable();
  b.cfgWrite(0x10, 0xfe000000);
  b.cfgWrite(0x04, 0x2, 2);
  a.setIrqfd(irqA.fd, rsA.fd);
  b.setIrqfd(irqB.fd, rsB.fd);
  a.barWrite(BAR0 + 4n, 1n);
  b.barWrite(0xfe000004n, 2n);
  assertEquals(a.barRead(BAR0 + 4n), 1n);
  assertEquals(b.barRead(0xfe000004n), 2n);
  assertEquals(b.barRead(BAR0 + 4n), UINT64_MAX, "b decodes only its own BARs");
  b.barWrite(0xfe000000n + BigInt(Reg.IRQ_RAISE), 1n);
  assertEquals(irqB.drain(), 1n);
  assertEquals(irqA.drain(), 0n);
  // b's resample does not touch a; a's level is its own.
  a.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
  assertEquals(irqA.drain(), 1n);
  b.barWrite(0xfe000000n + BigInt(Reg.IRQ_ACK), 1n);
  rsB.signal();
  rsA.signal();
  assert(await readable(irqA.fd, 5000));
  b.barrier();
  assertEquals(irqB.drain(), 0n);
  await assertExit(r, 0);
});

Deno.test("remote: fds nobody uses and an unwatchable resamplefd hurt only that channel", async () => {
  await using r = await spawnWithBystander("bad");
  const [bad, good] = r.clients;
  const baseline = openFds(r.child.pid);
  // QEMU's rules let a config read or a reset carry fds: they must be closed.
  using ev = new EventFd();
  bad.ch.tx.encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
  assertEquals(bad.request([ev.fd, ev.fd, ev.fd]), 0x10b11234n);
  bad.ch.send(bad.ch.tx.encodeEmpty(Cmd.DEVICE_RESET), [ev.fd]);
  assertEquals(bad.ch.receive(), Received.MESSAGE);
  bad.barrier();
  assertEquals(
    (await fdsOnceCount(r.child.pid, baseline.length)).length,
    baseline.length,
  );
  // A memfd is no eventfd: SET_IRQFD is refused, the pair is closed, that
  // channel closes, and the process goes on serving the other device.
  const file = memfd("not-an-eventfd", 8);
  try {
    bad.setIrqfd(ev.fd, file);
  } finally {
    closeFd(file);
  }
  assert(await pollReadable(bad.ch.fd, 5000));
  assertEquals(bad.ch.receive(), Received.EOF);
  assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
  assertEquals(
    (await fdsOnceCount(r.child.pid, baseline.length - 1)).length,
    baseline.length - 1,
  );
  const stderr = await assertExit(
    r,
    1,
    "iohub remote: bad: closed: SET_IRQFD: fds: the resamplefd is not an eventfd",
  );
  assert(!stderr.includes("cleanup failed"), stderr);
});

Deno.test("remote: each broken rule closes only that channel, no fd leaks", async (t) => {
  // Every message a Channel rejects, and two it takes that the remote must
  // refuse: the remote closes that channel logging what was broken.
  const cases: BadMessage[] = [
    ...BAD_MESSAGES,
    [
      "RET as a request",
      rawMessage(1, 8),
      0,
      "RET: cmd: not a request",
    ],
    [
      "sysmem past end of file",
      new Uint8Array(),
      1,
      "SYNC_SYSMEM: region 0: 8192 bytes at offset 0 exceed the file's 4096",
    ],
  ];
  for (const [name, wire, nfds, error, hangUp] of cases) {
    await t.step(name, async () => {
      await using r = await spawnWithBystander("bad");
      const [bad, good] = r.clients;
      const baseline = openFds(r.child.pid);
      const fds = Array.from({ length: nfds }, () => new EventFd());
      if (name.startsWith("sysmem")) {
        const fd = memfd("small", 4096);
        bad.syncSysmem([{ gpa: 0n, size: 8192n, offset: 0n, fd }]);
        closeFd(fd);
      } else {
        bad.sendRaw(wire, fds.map((e) => e.fd));
      }
      fds.forEach((e) => e.close());
      if (hangUp) bad.close();
      // The good device keeps working, and the bad channel is gone.
      good.barWrite(BAR0 + 4n, 5n);
      assertEquals(good.barRead(BAR0 + 4n), 5n);
      good.barrier();
      const after = await fdsOnceCount(r.child.pid, baseline.length - 1);
      const gone = baseline.filter((fd) => !after.includes(fd));
      const extra = after.filter((fd) => !baseline.includes(fd));
      assertEquals(extra, [], "no fd leaked in the remote");
      assertEquals(gone.length, 1, "exactly the bad channel's socket closed");
      await assertExit(r, 1, `iohub remote: bad: closed: ${error}`);
    });
  }
});

Deno.test("remote: random well-formed requests never kill the remote", async () => {
  await using r = spawnRemote(["fuzz", "good"]);
  const [c, good] = r.clients;
  const rand = prng(1234);
  c.barrier();
  good.barrier();
  const baseline = openFds(r.child.pid);
  const u32 = (): number => Math.floor(rand() * 0x1_0000_0000);
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)];
  for (let i = 0; i < 3000; i++) {
    const kind = Math.floor(rand() * 4);
    if (kind === 0) {
      c.cfgRead(
        pick([u32(), Math.floor(rand() * 300)]),
        pick([0, 1, 2, 3, 4, 8, -1, u32()]),
      );
    } else if (kind === 1) {
      c.cfgWrite(Math.floor(rand() * 300), u32(), pick([1, 2, 4, 0, 7]));
    } else {
      const addr = pick([
        BigInt(u32()) << 32n | BigInt(u32()),
        BAR0 + BigInt(Math.floor(rand() * 0x1100)),
        BAR1 + BigInt(Math.floor(rand() * 0x50)),
        BigInt(c.cfgRead(0x10) & ~0xfn) + BigInt(Math.floor(rand() * 0x1000)),
      ]);
      const size = pick([1, 2, 4, 8, 0, 3, 16, u32()]);
      if (kind === 2) c.barRead(addr, size, rand() < 0.5);
      else c.barWrite(addr, BigInt(u32()), size, rand() < 0.5);
    }
  }
  good.cfgWrite(0x10, Number(BAR0));
  good.cfgWrite(0x04, 2, 2);
  assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
  assertEquals(await fdsOnceCount(r.child.pid, baseline.length), baseline);
  await assertExit(r, 0);
});

/**
 * Config reads written back to back on a non-blocking socket, resuming a
 * message the kernel took only part of, so the stream stays framed.
 */
class ConfigReadFlood {
  /** Whole requests written so far. */
  sent = 0;
  readonly #m = new Message().encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
  #partial = 0;

  /** Writes until the socket is full or `limit` are sent; returns how many completed. */
  fill(c: Client, limit = Infinity): number {
    const before = this.sent;
    const len = this.#m.wireLength;
    while (this.sent < limit) {
      const n = c.sendRaw(this.#m.bytes.subarray(this.#partial, len));
      if (n === WOULD_BLOCK) break;
      this.#partial += n;
      if (this.#partial === len) {
        this.#partial = 0;
        this.sent++;
      }
    }
    return this.sent - before;
  }
}

Deno.test("remote: a peer that hangs up before its reply is sent (EPIPE) closed normally", async () => {
  await using r = spawnRemote(["gone", "good"]);
  const [gone, good] = r.clients;
  gone.ch.tx.encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
  gone.ch.send(gone.ch.tx);
  gone.close();
  assertEquals(good.cfgRead(0), 0x10b11234n);
  await assertExit(r, 0, "gone: peer closed the connection; INTx asserts=0");
});

Deno.test("remote: a peer that hangs up with replies queued for it closed normally", async () => {
  await using r = spawnRemote(["quitter"]);
  const c = r.clients[0];
  // Requests until both directions are full: the remote then holds replies
  // it could not send, and stops reading, when the peer goes away.
  setNonblocking(c.ch.fd, true);
  const flood = new ConfigReadFlood();
  while (flood.fill(c) > 0 || await pollWritable(c.ch.fd, 200));
  c.close();
  await assertExit(r, 0, "quitter: peer closed the connection;");
});

Deno.test("remote: a peer that reads replies only when its own sends block is served", async () => {
  await using r = spawnRemote(["busy"]);
  const c = r.clients[0];
  // Thousands of requests in flight: the remote's replies fill the socket
  // while we still send, so it must wait for us rather than give up.
  setNonblocking(c.ch.fd, true);
  const total = 3000;
  const flood = new ConfigReadFlood();
  let replies = 0;
  try {
    while (replies < total) {
      flood.fill(c, total);
      assert(
        c.ch.hasBuffered || await pollReadable(c.ch.fd, 5000),
        `stuck after ${flood.sent} sent, ${replies} replies`,
      );
      while (c.ch.receive(true) === Received.MESSAGE) {
        assertEquals(c.ch.rx.retValue, 0x10b11234n);
        replies++;
      }
    }
  } catch (e) {
    // Whatever made the remote give up is in its log.
    const { code, stderr } = await r.finish();
    throw new Error(`${e}; remote exited ${code}: ${stderr}`);
  }
  setNonblocking(c.ch.fd, false);
  await assertExit(r, 0);
});

Deno.test("remote: a peer that never reads its replies is dropped, the others go on", async () => {
  await using r = await spawnWithBystander("deaf");
  const [deaf, good] = r.clients;
  setNonblocking(deaf.ch.fd, true);
  // Send until the remote stops taking requests: its replies to us have
  // filled the other direction and it waits for room.
  const flood = new ConfigReadFlood();
  while (flood.fill(deaf) > 0) {
    await new Promise((done) => setTimeout(done, 200));
  }
  // The remote queues the replies and stops reading the deaf peer: the
  // other device is answered meanwhile, and the deaf one is dropped once
  // its replies have stayed unread for 2 s.
  const t0 = performance.now();
  assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
  assert(performance.now() - t0 < 1000, "the other device is not held up");
  await new Promise((done) => setTimeout(done, 2500));
  assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID));
  await assertExit(
    r,
    1,
    "iohub remote: deaf: closed: the peer left its replies unread for 2000 ms",
  );
});

Deno.test("remote: messages cut anywhere, fds on any piece, are all understood", async () => {
  await using r = spawnRemote(["cut"]);
  const c = r.clients[0];
  const rand = prng(4242);
  c.enable();
  const ram = memfd("guest-ram", 0x1000);
  let pair = [new EventFd(), new EventFd()];
  try {
    c.setIrqfd(pair[0].fd, pair[1].fd);
    c.syncSysmem([{ gpa: 0n, size: 0x1000n, offset: 0n, fd: ram }]);
    c.barrier();
    const baseline = openFds(r.child.pid);
    const m = new Message();
    // Batches outgrow the channel's 1 KiB read buffer.
    for (let batch = 0; batch < 12; batch++) {
      const expected: bigint[] = [];
      for (let i = 0; i < 50; i++) {
        let fds: number[] = [];
        const kind = Math.floor(rand() * 4);
        if (kind === 0) {
          pair.forEach((e) => e.close());
          pair = [new EventFd(), new EventFd()];
          m.encodeEmpty(Cmd.SET_IRQFD);
          fds = pair.map((e) => e.fd);
        } else if (kind === 1) {
          m.encodeSyncSysmem([{ gpa: 0n, size: 0x1000n, offset: 0n, fd: ram }]);
          fds = [ram];
        } else if (kind === 2) {
          m.encodeCfg(Cmd.PCI_CFGREAD, 0, 0, 4);
          expected.push(0x10b11234n);
        } else {
          const v = BigInt(batch * 100 + i);
          m.encodeBar(Cmd.BAR_WRITE, BAR0 + BigInt(Reg.SCRATCH), v, 4, true);
          expected.push(0n);
        }
        // Up to three pieces, each its own sendmsg; the fds ride on one.
        const len = m.wireLength;
        const cuts = [0, len];
        for (let k = Math.floor(rand() * 3); k > 0; k--) {
          cuts.push(1 + Math.floor(rand() * (len - 1)));
        }
        // Distinct cuts: no empty piece (its fds would never be sent).
        cuts.splice(0, cuts.length, ...new Set(cuts));
        cuts.sort((a, b) => a - b);
        const withFds = Math.floor(rand() * (cuts.length - 1));
        for (let k = 0; k + 1 < cuts.length; k++) {
          const piece = m.bytes.subarray(cuts[k], cuts[k + 1]);
          c.sendRaw(piece, k === withFds ? fds : []);
        }
      }
      for (const [i, want] of expected.entries()) {
        assert(
          c.ch.hasBuffered || await pollReadable(c.ch.fd, 5000),
          `batch ${batch}: reply ${i + 1} of ${expected.length} never came`,
        );
        assertEquals(c.ch.receive(), Received.MESSAGE);
        assertEquals(c.ch.rx.retValue, want, `batch ${batch} reply ${i + 1}`);
      }
    }
    // The last pair sent is the one in use, and nothing else is held (the
    // pair's fd numbers may differ from the first pair's: count them).
    c.barWrite(BAR0 + BigInt(Reg.IRQ_RAISE), 1n);
    assert(await pollReadable(pair[0].fd, 5000), "latest irqfd asserted");
    assertEquals(
      (await fdsOnceCount(r.child.pid, baseline.length)).length,
      baseline.length,
    );
  } finally {
    pair.forEach((e) => e.close());
    closeFd(ram);
  }
  await assertExit(
    r,
    0,
    "cut: peer closed the connection; INTx asserts=1 deasserts=0 resamples=0 reasserts=0; refused accesses=0",
  );
});

Deno.test("remote: random garbage closes the channel, never the process", async () => {
  const rand = prng(99);
  for (let round = 0; round < 20; round++) {
    await using r = spawnRemote(["junk", "good"]);
    const [junk, good] = r.clients;
    const len = 1 + Math.floor(rand() * 300);
    const bytes = new Uint8Array(len).map(() => Math.floor(rand() * 256));
    // Mostly plausible commands, so the header passes and fields are hit.
    if (rand() < 0.7) bytes[0] = Math.floor(rand() * 9);
    bytes.fill(0, 1, 4);
    const nfds = Math.floor(rand() * 4);
    const fds = Array.from({ length: nfds }, () => new EventFd());
    junk.sendRaw(bytes, fds.map((e) => e.fd));
    fds.forEach((e) => e.close());
    junk.close();
    good.cfgWrite(0x10, Number(BAR0));
    good.cfgWrite(0x04, 2, 2);
    assertEquals(good.barRead(BAR0), BigInt(TESTDEV_ID), `round ${round}`);
    const { code, stderr } = await r.finish();
    assert(code === 0 || code === 1, `exit ${code}: ${stderr}`);
    assert(!stderr.includes("error:"), stderr);
    assertStringIncludes(stderr, "iohub remote: junk: ");
  }
});
