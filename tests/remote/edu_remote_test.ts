// edu behind a real `iohub remote`, driven over mpqemu by our proxy as an
// outside client would: identity and BAR sizing as QEMU's proxy probes
// them, register widths on the wire (8-byte DMA registers, refused 1- and
// 2-byte accesses), INTx through the irqfd, and the timer completions.

import { assert, assertEquals } from "@std/assert";
import {
  DMA_BUFFER,
  DMA_IRQ,
  DMA_RUN,
  DMA_TO_RAM,
  EDU_ID,
  EduReg,
  IRQ_DMA,
  IRQ_FACT,
  STATUS_IRQFACT,
} from "../../lib/pci/devices/edu.ts";
import { ProxyDevice } from "../../lib/proxy/proxy_device.ts";
import { defaultRemoteCommand } from "../../lib/qemu/spawn_remote.ts";
import { spawnWithSockets } from "../../lib/qemu/socket_child.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { guestRam } from "../proxy/guest_ram.ts";

const BAR0 = 0xfe000000;
const SOON = 2000;
const RAM_SIZE = 1 << 20;

/** Runs `fn` against one edu in an `iohub remote` subprocess. */
async function withEdu(fn: (p: ProxyDevice) => Promise<void>): Promise<void> {
  await assertNoFdLeak(async () => {
    const [program, ...command] = defaultRemoteCommand();
    await using child = spawnWithSockets(program, 1, (fds) => [
      ...command,
      "--device",
      `edu,fd=${fds[0]},id=edu0`,
    ]);
    const p = new ProxyDevice(child.fds[0], { name: "edu0" });
    try {
      await fn(p);
    } finally {
      p.close();
    }
  });
}

Deno.test("edu remote: identity and BAR0 as QEMU's proxy probes them", async () => {
  await withEdu(async (p) => {
    const info = p.probe();
    assertEquals(
      [info.vendorId, info.deviceId, info.classId, info.subsystemId],
      [0x1234, 0x11e8, 0x00ff, 0x1100],
    );
    assertEquals(info.bars, [{ index: 0, size: 1 << 20, memory: true }]);
    assertEquals(p.configRead(0x08, 1), 0x10, "revision");
    assertEquals(p.configRead(0x2c, 2), 0x1af4, "subsystem vendor");
    assertEquals(p.configRead(0x3d, 1), 1, "INTA#");
    await Promise.resolve();
  });
});

Deno.test("edu remote: register widths on the wire", async () => {
  await withEdu(async (p) => {
    p.probe();
    p.mapBars([BAR0]);
    assertEquals(p.barRead(0, EduReg.ID, 4), BigInt(EDU_ID));
    assertEquals(p.barRead(0, EduReg.ID, 1), 0xffn);
    assertEquals(p.barRead(0, EduReg.ID, 2), 0xffffn);
    assertEquals(p.barRead(0, EduReg.ID, 8), (1n << 64n) - 1n);
    p.barWrite(0, EduReg.LIVENESS, 0x0f0f0f0fn, 4);
    assertEquals(p.barRead(0, EduReg.LIVENESS, 4), 0xf0f0f0f0n);
    p.barWrite(0, EduReg.LIVENESS, 0n, 2);
    assertEquals(p.barRead(0, EduReg.LIVENESS, 4), 0xf0f0f0f0n);
    p.barWrite(0, EduReg.DMA_DST, 0x8877665544332211n, 8);
    assertEquals(p.barRead(0, EduReg.DMA_DST, 8), 0x8877665544332211n);
    assertEquals(p.barRead(0, EduReg.DMA_DST, 4), 0x44332211n);
    assertEquals(p.barRead(0, EduReg.DMA_DST + 4, 4), 0xffffffffn);
    assertEquals(p.barRead(0, 0xffffc, 4), 0xffffffffn, "top of the BAR");
    await Promise.resolve();
  });
});

Deno.test("edu remote: raise and acknowledge reach the irqfd", async () => {
  await withEdu(async (p) => {
    p.setupIrqfd();
    p.probe();
    p.mapBars([BAR0]);
    const sink = p.startUserSink();
    p.barWrite(0, EduReg.IRQ_RAISE, 0x8n, 4);
    assert(await sink.waitAsync(SOON), "INTx asserted");
    assertEquals(p.barRead(0, EduReg.IRQ_STATUS, 4), 0x8n);
    p.barWrite(0, EduReg.IRQ_ACK, 0x8n, 4);
    sink.eoi();
    assertEquals(p.barRead(0, EduReg.IRQ_STATUS, 4), 0n);
  });
});

Deno.test("edu remote: factorial and DMA complete on the remote's timers", async () => {
  await withEdu(async (p) => {
    using ram = guestRam(p, RAM_SIZE);
    p.setupIrqfd();
    p.probe();
    p.mapBars([BAR0]);
    const sink = p.startUserSink();
    /** Waits for INTx with `cause` pending, acknowledges it, EOIs. */
    const completion = async (cause: number): Promise<void> => {
      assert(await sink.waitAsync(SOON), `INTx for 0x${cause.toString(16)}`);
      assertEquals(p.barRead(0, EduReg.IRQ_STATUS, 4), BigInt(cause));
      p.barWrite(0, EduReg.IRQ_ACK, BigInt(cause), 4);
      sink.eoi();
    };
    p.barWrite(0, EduReg.STATUS, BigInt(STATUS_IRQFACT), 4);
    p.barWrite(0, EduReg.FACTORIAL, 10n, 4);
    await completion(IRQ_FACT);
    assertEquals(p.barRead(0, EduReg.FACTORIAL, 4), 3628800n);
    assertEquals(p.barRead(0, EduReg.STATUS, 4), BigInt(STATUS_IRQFACT));

    const pattern = Uint8Array.from({ length: 256 }, (_, i) => 255 - i);
    ram.bytes.set(pattern, 0x1000);
    p.barWrite(0, EduReg.DMA_SRC, 0x1000n, 8);
    p.barWrite(0, EduReg.DMA_DST, BigInt(DMA_BUFFER), 8);
    p.barWrite(0, EduReg.DMA_COUNT, 256n, 8);
    p.barWrite(0, EduReg.DMA_CMD, BigInt(DMA_RUN | DMA_IRQ), 8);
    await completion(IRQ_DMA);
    p.barWrite(0, EduReg.DMA_SRC, BigInt(DMA_BUFFER), 4);
    p.barWrite(0, EduReg.DMA_DST, 0x3000n, 4);
    p.barWrite(0, EduReg.DMA_CMD, BigInt(DMA_RUN | DMA_TO_RAM | DMA_IRQ), 4);
    await completion(IRQ_DMA);
    assertEquals(ram.bytes.slice(0x3000, 0x3100), pattern);
    assertEquals(
      p.barRead(0, EduReg.DMA_CMD, 8),
      BigInt(DMA_TO_RAM | DMA_IRQ),
    );
  });
});
