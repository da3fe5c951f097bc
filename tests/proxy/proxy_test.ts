// The proxy against a real `iohub remote` subprocess, interrupts through the
// user-space sink (no KVM): probing, BAR decoding, forwarding, INTx level
// semantics, Interrupt Disable, reset, pair replacement, DMA and cleanup.

import { assert, assertEquals, assertFalse, assertThrows } from "@std/assert";
import {
  BUFFER_OFFSET,
  Reg,
  TESTDEV_ID,
} from "../../lib/pci/devices/testdev.ts";
import {
  ProxyDevice,
  ProxyError,
  type UserIrqSink,
} from "../../lib/proxy/proxy_device.ts";
import { setNonblocking, socketpair, writeFd } from "../../ffi/mod.ts";
import { Channel, Cmd, Received } from "../../lib/mpqemu/mod.ts";
import { IrqLevelEvent } from "../../lib/mpqemu/irq_level_event.ts";
import { assertNoFdLeak, fdsOnceCount, openFds } from "../fd_check.ts";
import { guestRam } from "./guest_ram.ts";
import { spawnProxied } from "./proxy_remote.ts";
import { type RemoteProcess, spawnDevices } from "../remote/remote_process.ts";
import { withTempDir } from "../temp_dir.ts";

const BAR0 = 0xfebf0000;
const BAR1 = 0xc040;
const NONE = 50;
const SOON = 2000;

/**
 * A test on one testdev behind our proxy in a fresh remote, which must
 * exit 0 once the body is done; no fd of ours may leak.
 */
function proxyTest(
  name: string,
  body: (
    p: ProxyDevice,
    r: RemoteProcess<ProxyDevice>,
  ) => void | Promise<void>,
): void {
  Deno.test(name, () =>
    assertNoFdLeak(async () => {
      await using r = spawnProxied();
      await body(r.clients[0], r);
      assertEquals((await r.finish()).code, 0);
    }));
}

/** Probes, maps both BARs and returns a user sink on a fresh pair. */
function ready(p: ProxyDevice): UserIrqSink {
  p.setupIrqfd();
  p.probe();
  p.mapBars([BAR0, BAR1]);
  return p.startUserSink();
}

function reg(p: ProxyDevice, off: number): number {
  return Number(p.barRead(0, off, 4));
}

function setReg(p: ProxyDevice, off: number, v: number): void {
  p.barWrite(0, off, BigInt(v), 4);
}

proxyTest(
  "proxy: probe sizes BARs and reads identity like probe_pci_info",
  (p) => {
    const info = p.probe();
    assertEquals(info.vendorId, 0x1234);
    assertEquals(info.deviceId, 0x10b1);
    assertEquals(info.classId, 0x00ff);
    assertEquals(info.subsystemId, 0x0001);
    assertEquals(info.bars, [
      { index: 0, size: 4096, memory: true },
      { index: 1, size: 64, memory: false },
    ]);
    // The probe restored the registers it sized.
    assertEquals(p.configRead(0x10, 4), 0);
    assertEquals(p.configRead(0x14, 4), 1);
    assertEquals(p.barBase(0), -1, "not decoding before mapBars");
    assertThrows(() => p.barRead(0, 0, 4), ProxyError, "BAR0");
    assertThrows(
      () => p.mapBars([BAR0 + 0x800, BAR1]),
      ProxyError,
      "aligned",
    );
  },
);

proxyTest("proxy: guest accesses decode against the programmed BARs", (p) => {
  p.probe();
  p.mapBars([BAR0, BAR1]);
  assertEquals(p.barBase(0), BAR0);
  assertEquals(p.barBase(1), BAR1);
  assertEquals(p.configRead(0x04, 2) & 3, 3);
  const data = new Uint8Array(4);
  assert(p.handleMmio(BigInt(BAR0 + Reg.ID), false, data));
  assertEquals(new DataView(data.buffer).getUint32(0, true), TESTDEV_ID);
  new DataView(data.buffer).setUint32(0, 0xcafe0001, true);
  assert(p.handlePio(BAR1 + Reg.SCRATCH, true, data));
  assertEquals(reg(p, Reg.SCRATCH), 0xcafe0001, "same register file");
  const b8 = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  assert(p.handleMmio(BigInt(BAR0 + BUFFER_OFFSET + 3), true, b8));
  assertEquals(p.barRead(0, BUFFER_OFFSET + 3, 8), 0x0807060504030201n);
  assertFalse(p.handleMmio(BigInt(BAR0 + 4096), false, data), "past BAR0");
  assertFalse(p.handlePio(BAR1 + 64, false, data), "past BAR1");
  assertFalse(p.handlePio(BAR0, false, data), "I/O never hits memory BARs");
  // Moving BAR0 moves the decoder (what a guest's config write does).
  p.configWrite(0x10, 0xfeb00000, 4);
  assertFalse(p.handleMmio(BigInt(BAR0), false, data));
  assert(p.handleMmio(BigInt(0xfeb00000 + Reg.ID), false, data));
  // Clearing memory decode stops MMIO, keeps I/O.
  p.configWrite(0x04, 0x1, 2);
  assertFalse(p.handleMmio(BigInt(0xfeb00000), false, data));
  assert(p.handlePio(BAR1, false, data));
});

Deno.test("proxy: user sink sees level semantics through the remote's IOHUB", async () => {
  await using r = spawnProxied();
  const p = r.clients[0];
  const sink = ready(p);
  assertFalse(sink.wait(NONE), "no interrupt before a cause");
  // Ack before EOI: delivered exactly once.
  for (let i = 0; i < 20; i++) {
    setReg(p, Reg.IRQ_RAISE, 1);
    assert(sink.wait(SOON), `delivery ${i}`);
    setReg(p, Reg.IRQ_ACK, 1);
    sink.eoi();
    assertFalse(sink.wait(NONE), `no re-delivery after ack ${i}`);
  }
  // EOI while the cause is pending: the remote re-asserts each time.
  setReg(p, Reg.IRQ_RAISE, 1);
  for (let i = 0; i < 5; i++) {
    assert(sink.wait(SOON), `held level ${i}`);
    sink.eoi();
  }
  assert(sink.wait(SOON));
  setReg(p, Reg.IRQ_ACK, 1);
  sink.eoi();
  assertFalse(sink.wait(NONE));
  assertEquals(sink.delivered, 26);
  assertEquals(reg(p, Reg.IRQ_COUNT), 21, "rising edges of the device");
  const { code, stderr } = await r.finish();
  assertEquals(code, 0);
  assert(
    stderr.includes("asserts=21 deasserts=21 resamples=26 reasserts=5"),
    stderr,
  );
});

proxyTest(
  "proxy: Interrupt Disable holds the line; clearing it delivers",
  async (p) => {
    const sink = ready(p);
    p.configWrite(0x04, 0x403, 2);
    setReg(p, Reg.IRQ_RAISE, 1);
    assertFalse(sink.wait(NONE), "masked");
    assertEquals(p.configRead(0x06, 2) & 0x8, 0x8, "status shows it pending");
    p.configWrite(0x04, 0x003, 2);
    assert(await sink.waitAsync(SOON), "unmasking delivers the pending one");
    setReg(p, Reg.IRQ_ACK, 1);
    sink.eoi();
    assertFalse(sink.wait(NONE));
  },
);

proxyTest(
  "proxy: DEVICE_RESET lowers the line and unprograms the BARs",
  (p) => {
    const sink = ready(p);
    setReg(p, Reg.SCRATCH, 7);
    setReg(p, Reg.IRQ_RAISE, 1);
    assert(sink.wait(SOON));
    p.reset();
    sink.eoi();
    assertFalse(sink.wait(NONE), "reset lowered the level");
    assertEquals(p.barBase(0), -1, "local copy follows the device's reset");
    assertEquals(p.configRead(0x10, 4), 0);
    p.mapBars([BAR0, BAR1]);
    assertEquals(reg(p, Reg.SCRATCH), 0);
    assertEquals(reg(p, Reg.IRQ_MASK), 0xffffffff);
  },
);

proxyTest(
  "proxy: a second setupIrqfd replaces the pair on both sides",
  async (p, r) => {
    const sink = ready(p);
    const first = p.irq!.irqfd;
    const remoteFds = openFds(r.child.pid).length;
    p.setupIrqfd();
    assert(p.irq!.irqfd !== first, "a fresh pair");
    setReg(p, Reg.IRQ_RAISE, 1);
    assert(sink.wait(SOON), "the sink follows the new pair");
    assertEquals(
      (await fdsOnceCount(r.child.pid, remoteFds)).length,
      remoteFds,
      "the remote closed its old pair",
    );
  },
);

proxyTest("proxy: DMA against guest memory sent with syncSysmem", (p) => {
  using ram = guestRam(p, 0x10000);
  ready(p);
  for (let i = 0; i < 64; i++) ram.bytes[0x4000 + i] = i ^ 0x5a;
  setReg(p, Reg.DMA_ADDR_LO, 0x4000);
  setReg(p, Reg.DMA_LEN, 64);
  setReg(p, Reg.DMA_CMD, 2);
  assertEquals(reg(p, Reg.DMA_STATUS), 0);
  assertEquals(
    p.barRead(0, BUFFER_OFFSET, 8),
    0x5d5c5f5e59585b5an,
  );
});

Deno.test("proxy: a dead remote gives an error naming device and command", async () => {
  await assertNoFdLeak(async () => {
    await using r = spawnProxied();
    const p = r.clients[0];
    p.probe();
    r.child.kill("SIGKILL");
    await r.child.status;
    assertThrows(() => p.configRead(0, 4), ProxyError, "dev: PCI_CFGREAD");
    p.close();
    p.close();
    assertThrows(() => p.configRead(0, 4), ProxyError, "closed");
    await r.finish();
  });
});

Deno.test("proxy: a 64-bit prefetchable BAR above 4 GiB is sized, mapped and reached", async () => {
  await withTempDir("iohub-bar64-", async (dir) => {
    const mod = `${dir}/bar64.ts`;
    Deno.writeTextFileSync(
      mod,
      `export default () => {
      let scratch = 0;
      return {
        identity: { vendorId: 0x1af4, deviceId: 0x1064 },
        bars: [{ size: 0x10000, space: "memory", is64: true, prefetchable: true }, null,
               { size: 16, space: "io" }],
        read(bar, off, data) { data[0] = bar === 0 && off === 8 ? scratch : bar; },
        write(bar, off, data) { if (bar === 0 && off === 8) scratch = data[0]; },
      };
    };`,
    );
    await using r = spawnDevices(
      [mod],
      [],
      (fd) => new ProxyDevice(fd, { name: "bar64" }),
    );
    const p = r.clients[0];
    assertEquals(p.probe().bars, [
      { index: 0, size: 0x10000, memory: true, is64: true, prefetchable: true },
      { index: 2, size: 16, memory: false },
    ]);
    const high = 0x8_0000_0000;
    p.mapBars([high, 0, 0xc100]);
    assertEquals(p.configRead(0x14, 4), 0x8, "upper half of the address");
    assertEquals(p.barBase(0), high);
    p.barWrite(0, 8, 0x5an, 1);
    assertEquals(p.barRead(0, 8, 1), 0x5an);
    assertEquals(p.barRead(2, 0, 1), 2n);
    const data = new Uint8Array(1);
    assert(p.handleMmio(BigInt(high + 8), false, data));
    assertEquals(data[0], 0x5a);
    assertFalse(p.handleMmio(BigInt(high - 8), false, data));
    const { code, stderr } = await r.finish();
    assertEquals(code, 0, stderr);
  });
});

Deno.test("proxy: a remote that makes the resamplefd blocking and fills it cannot stall an EOI", () =>
  assertNoFdLeak(() => {
    const [ours, theirs] = socketpair();
    using remote = new Channel(theirs);
    using p = new ProxyDevice(ours, { name: "victim" });
    p.setupIrqfd();
    assertEquals(remote.receive(), Received.MESSAGE);
    assertEquals(remote.rx.cmd, Cmd.SET_IRQFD);
    using pair = new IrqLevelEvent(remote.rxFds[0], remote.rxFds[1]);
    // The file description is shared: clearing O_NONBLOCK here clears it
    // for the proxy too, and a full counter makes a write(2) sleep.
    setNonblocking(pair.resamplefd, false);
    writeFd(
      pair.resamplefd,
      new Uint8Array(new BigUint64Array([2n ** 64n - 2n]).buffer),
    );
    const sink = p.startUserSink();
    sink.eoi();
    sink.eoi();
    assertEquals(pair.drainResample(), 2n ** 64n - 1n, "saturated, not waited");
    sink.eoi();
    assertEquals(pair.drainResample(), 1n);
  }));
