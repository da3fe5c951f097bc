// Interop test B: our proxy in front of QEMU 7.2's own remote
// (`-machine x-remote -device e1000`), byte for byte over mpqemu.

import { assert, assertEquals, assertFalse } from "@std/assert";
import { ProxyDevice } from "../../lib/proxy/proxy_device.ts";
import { spawnQemuRemote } from "../../lib/qemu/qemu_remote.ts";
import { assertNoFdLeak } from "../fd_check.ts";
import { guestRam } from "../proxy/guest_ram.ts";
import { haveQemu, QEMU } from "../requirements.ts";

// e1000 registers (Intel 8254x manual): device status, interrupt cause
// read (clears on read), cause set, mask set.
const STATUS = 0x08;
const ICR = 0xc0;
const ICS = 0xc8;
const IMS = 0xd0;
const ICR_TXQE = 0x2;

const E1000_BAR0 = 0xfebc0000;
const E1000_BAR1 = 0xc000;

Deno.test({
  name: "interop B: our proxy sizes, reads, interrupts and resets QEMU's e1000",
  ignore: !haveQemu(),
  fn: async () => {
    await assertNoFdLeak(async () => {
      await using qemu = await spawnQemuRemote(QEMU, [{ driver: "e1000" }]);
      using p = new ProxyDevice(qemu.fds[0], { name: "e1000" });
      using _ram = guestRam(p, 1 << 20);
      p.setupIrqfd();
      const info = p.probe();
      assertEquals(info.vendorId, 0x8086);
      assertEquals(info.deviceId, 0x100e);
      assertEquals(info.classId, 0x0200, "Ethernet controller");
      assertEquals(info.bars, [
        { index: 0, size: 128 * 1024, memory: true },
        { index: 1, size: 64, memory: false },
      ]);
      p.mapBars([E1000_BAR0, E1000_BAR1]);
      const status = Number(p.barRead(0, STATUS, 4));
      assert(status !== 0 && status !== 0xffffffff, `STATUS ${status}`);
      assertEquals(status & 0x2, 0x2, "link up");

      const sink = p.startUserSink();
      p.barRead(0, ICR, 4);
      assertFalse(sink.wait(50), "quiet before a cause is set");
      p.barWrite(0, IMS, BigInt(ICR_TXQE), 4);
      for (let i = 0; i < 10; i++) {
        p.barWrite(0, ICS, BigInt(ICR_TXQE), 4);
        assert(sink.wait(2000), `interrupt ${i}`);
        assertEquals(Number(p.barRead(0, ICR, 4)) & ICR_TXQE, ICR_TXQE);
        sink.eoi();
        assertFalse(sink.wait(50), `reading ICR acked interrupt ${i}`);
      }
      // EOI with the cause still set: QEMU's IOHUB re-asserts on resample.
      p.barWrite(0, ICS, BigInt(ICR_TXQE), 4);
      assert(sink.wait(2000));
      sink.eoi();
      assert(sink.wait(2000), "re-asserted while the level stays high");
      p.barRead(0, ICR, 4);
      sink.eoi();
      assertFalse(sink.wait(50));

      // QEMU's remote resets the device model only (e1000_reset), not its
      // config space; our proxy, like QEMU's (pci_do_device_reset), drops
      // its BAR mappings and needs them programmed again.
      p.reset();
      assertEquals(p.barBase(0), -1, "reset unprograms the BARs");
      p.mapBars([E1000_BAR0, E1000_BAR1]);
      p.barWrite(0, ICS, BigInt(ICR_TXQE), 4);
      assertFalse(sink.wait(50), "reset cleared IMS");
      assertEquals(Number(p.barRead(0, ICR, 4)) & ICR_TXQE, ICR_TXQE);
      p.close();
      const { stderr } = await qemu.finish("SIGTERM");
      assertFalse(/error/i.test(stderr), stderr);
    });
  },
});
