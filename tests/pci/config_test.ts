import { assertEquals } from "@std/assert";
import { TestDev, TESTDEV_IDENTITY } from "../../lib/pci/devices/testdev.ts";
import { BAR_UNMAPPED, ConfigEffect, PciConfig } from "../../lib/pci/config.ts";

function testdevConfig(): PciConfig {
  return new PciConfig(
    TESTDEV_IDENTITY,
    new TestDev({
      setIrq: () => {},
      dmaRead: () => false,
      dmaWrite: () => false,
    }).bars,
  );
}

Deno.test("config: QEMU's sizing sequence gives BAR0/BAR1 sizes, 0 for BAR2-5", () => {
  const c = testdevConfig();
  const masks: number[] = [];
  for (let i = 0; i < 6; i++) {
    const reg = 0x10 + 4 * i;
    const orig = c.read(reg, 4);
    c.write(reg, 0xffffffff, 4);
    masks.push(c.read(reg, 4));
    c.write(reg, orig, 4);
  }
  assertEquals(masks, [0xfffff000, 0xffffffc1, 0, 0, 0, 0]);
  // Size as QEMU computes it: ~(mask & ~type bits) + 1.
  assertEquals((~(masks[0] & ~0xf) >>> 0) + 1, 4096);
  assertEquals(((~(masks[1] & ~0x3) >>> 0) & 0xffff) + 1, 64);
});

Deno.test("config: identity, read-only bytes and the live INTx status bit", () => {
  const c = testdevConfig();
  assertEquals(c.read(0, 4), 0x10b11234);
  assertEquals(c.read(0x08, 4), 0x00ff0001);
  assertEquals(c.read(0x2c, 4), 0x00011234);
  assertEquals(c.read(0x3c, 2), 0x0100);
  c.write(0x00, 0, 4);
  c.write(0x08, 0, 4);
  c.write(0x3d, 3, 1);
  assertEquals(c.read(0, 4), 0x10b11234);
  assertEquals(c.read(0x08, 4), 0x00ff0001);
  assertEquals(c.read(0x3d, 1), 1);
  c.write(0x3c, 0xab, 1);
  assertEquals(c.read(0x3c, 1), 0xab);
  c.write(0x04, 0xffff, 2);
  assertEquals(
    c.read(0x04, 2),
    0x0407,
    "only IO, MEM, MASTER, INTX_DISABLE are writable",
  );
  c.setInterruptStatus(true);
  assertEquals(c.read(0x06, 2), 0x0008);
  c.write(0x06, 0xffff, 2);
  assertEquals(c.read(0x06, 2), 0x0008, "bit 3 is live, not writable");
  c.reset();
  assertEquals(c.read(0x04, 2), 0);
  assertEquals(c.read(0x3c, 1), 0);
});

Deno.test("config: BAR decode follows programming and command enables", () => {
  const c = testdevConfig();
  assertEquals(c.write(0x10, 0xfebf0000, 4), ConfigEffect.BARS);
  assertEquals(c.barAddress(0), BAR_UNMAPPED, "memory decode off");
  assertEquals(c.write(0x04, 0x2, 2), ConfigEffect.BARS);
  assertEquals(c.barAddress(0), 0xfebf0000);
  assertEquals(c.barAddress(1), BAR_UNMAPPED, "I/O decode off");
  c.write(0x14, 0xc041, 4);
  c.write(0x04, 0x3, 2);
  assertEquals(c.barAddress(1), 0xc040);
  c.write(0x14, 0xffffffff, 4);
  assertEquals(
    c.barAddress(1),
    BAR_UNMAPPED,
    "mid-sizing: beyond the I/O space",
  );
  c.write(0x10, 0xffffffff, 4);
  assertEquals(c.barAddress(0), BAR_UNMAPPED, "mid-sizing: beyond 4 GiB");
  assertEquals(c.barAddress(2), BAR_UNMAPPED);
  assertEquals(c.write(0x04, 0x403, 2), ConfigEffect.INTX);
  assertEquals(c.write(0x3c, 5, 1), ConfigEffect.NONE);
});
