import { assertEquals, assertStringIncludes, assertThrows } from "@std/assert";
import { TestDev, TESTDEV_IDENTITY } from "../../lib/pci/devices/testdev.ts";
import {
  BAR_UNMAPPED,
  ConfigEffect,
  PciConfig,
  ROM_REGION,
} from "../../lib/pci/config.ts";
import { DeviceModelError } from "../../lib/pci/validate.ts";

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

/** QEMU's sizing probe of one register: all-ones written, read back, restored. */
function sizeProbe(c: PciConfig, reg: number): number {
  const orig = c.read(reg, 4);
  c.write(reg, 0xffffffff, 4);
  const mask = c.read(reg, 4);
  c.write(reg, orig, 4);
  return mask;
}

Deno.test("config: 64-bit and prefetchable BARs size and decode as QEMU does", () => {
  const c = new PciConfig({ vendorId: 0x1af4, deviceId: 1 }, [
    { size: 1 << 20, space: "memory", is64: true, prefetchable: true },
    null,
    { size: 2 ** 33, space: "memory", is64: true },
    null,
    { size: 256, space: "memory", prefetchable: true },
  ]);
  // Type bits: 64-bit (0x4) and prefetchable (0x8) read back with the mask.
  assertEquals(sizeProbe(c, 0x10), 0xfff0000c);
  assertEquals(sizeProbe(c, 0x14), 0xffffffff);
  assertEquals(sizeProbe(c, 0x18), 0x00000004);
  assertEquals(sizeProbe(c, 0x1c), 0xfffffffe);
  assertEquals(sizeProbe(c, 0x20), 0xffffff08);
  c.write(0x10, 0xfe000000, 4);
  c.write(0x14, 0x1, 4);
  c.write(0x18, 0, 4);
  c.write(0x1c, 0x4, 4);
  c.write(0x20, 0xfebf0000, 4);
  assertEquals(c.barAddress(0), BAR_UNMAPPED, "memory decode off");
  c.write(0x04, 0x2, 2);
  assertEquals(c.barAddress(0), 0x1_fe00_0000);
  assertEquals(c.barAddress(1), BAR_UNMAPPED, "the upper half is no BAR");
  assertEquals(c.barAddress(2), 0x4_0000_0000);
  assertEquals(c.barAddress(4), 0xfebf0000);
  // A sizing write in progress on the upper half leaves the BAR unmapped.
  c.write(0x1c, 0xffffffff, 4);
  assertEquals(c.barAddress(2), BAR_UNMAPPED);
});

Deno.test("config: an expansion ROM sizes, enables and decodes as region 6", () => {
  const c = new PciConfig({ vendorId: 0x1af4, deviceId: 1 }, [], {
    rom: { size: 0x8000 },
  });
  assertEquals(sizeProbe(c, 0x30), 0xffff8001);
  c.write(0x30, 0xfeb00000, 4);
  c.write(0x04, 0x2, 2);
  assertEquals(c.barAddress(ROM_REGION), BAR_UNMAPPED, "ROM not enabled");
  c.write(0x30, 0xfeb00001, 4);
  assertEquals(c.barAddress(ROM_REGION), 0xfeb00000);
  assertEquals(c.regionSize(ROM_REGION), 0x8000);
});

Deno.test("config: capabilities form a list with masks and device hooks", () => {
  const writes: [number, number, number][] = [];
  const c = new PciConfig({ vendorId: 0x1af4, deviceId: 1 }, [], {
    capabilities: [
      {
        id: 0x09,
        length: 6,
        init: [6, 0xaa, 0x55, 0x00],
        writable: [0, 0, 0xff, 0x0f],
        write: (off, value, len) => writes.push([off, value, len]),
      },
      { id: 0x05, length: 12, read: (off, _len, v) => off === 4 ? 0x1234 : v },
    ],
  });
  assertEquals(c.read(0x06, 2) & 0x10, 0x10, "status: capability list");
  // Walk the list as a guest does.
  const found: [number, number][] = [];
  for (let p = c.read(0x34, 1); p !== 0; p = c.read(p + 1, 1)) {
    found.push([p, c.read(p, 1)]);
  }
  assertEquals(found, [[0x40, 0x09], [0x48, 0x05]]);
  assertEquals(c.read(0x42, 2), 0xaa06);
  c.write(0x42, 0xffff, 2);
  assertEquals(c.read(0x42, 2), 0xaa06, "read-only bytes keep their value");
  c.write(0x44, 0xffff, 2);
  assertEquals(c.read(0x44, 2), 0x0fff);
  assertEquals(writes, [[2, 0xaa06, 2], [4, 0x0fff, 2]]);
  assertEquals(c.read(0x4c, 2), 0x1234, "read hook");
  c.write(0x44, 0, 2);
  c.reset();
  assertEquals(c.read(0x44, 2), 0x0055, "reset restores the initial values");
});

Deno.test("config: an access across two capabilities reaches both hooks, each with its part", () => {
  const calls: string[] = [];
  const hooked = (name: string) => ({
    id: 0x09,
    length: 4,
    writable: [0xff, 0xff],
    read: (off: number, len: number, v: number) => {
      calls.push(`${name} read ${off}/${len}`);
      // A hook may answer beyond its width: only its bytes count.
      return off === 2 ? 0x5a5a5a5a : v;
    },
    write: (off: number, v: number, len: number) =>
      calls.push(`${name} write ${off}/${len}=${v.toString(16)}`),
  });
  const c = new PciConfig({ vendorId: 0x1af4, deviceId: 1 }, [], {
    capabilities: [hooked("A"), hooked("B")],
  });
  // A at 0x40..0x43, B at 0x44..0x47.
  c.write(0x43, 0x44332211, 4);
  // B's first two bytes are its ID and next pointer, read-only.
  assertEquals(calls, ["A write 3/1=11", "B write 0/3=440009"]);
  calls.length = 0;
  assertEquals(c.read(0x42, 1), 0x5a, "a hook's answer keeps to its width");
  assertEquals(c.read(0x43, 4), 0x44000911);
  assertEquals(calls, ["A read 2/1", "A read 3/1", "B read 0/3"]);
  // A header byte and a capability in one access.
  assertEquals(c.read(0x3f, 2), 0x0900 | c.read(0x3f, 1));
});

Deno.test("config: identity defaults", () => {
  const c = new PciConfig({ vendorId: 0x1af4, deviceId: 0x1000 }, []);
  assertEquals(c.read(0x08, 4), 0xff000000, "revision 0, class unassigned");
  assertEquals(c.read(0x2c, 4), 0x00001af4, "subsystem vendor = vendor");
  assertEquals(c.read(0x3d, 1), 1, "INTA#");
});

Deno.test("config: layouts that break the rules name the field", () => {
  const id = { vendorId: 0x1af4, deviceId: 1 };
  const cases: [() => unknown, string][] = [
    [() => new PciConfig(id, [{ size: 24, space: "memory" }]), "bars[0].size"],
    [() => new PciConfig(id, [{ size: 512, space: "io" }]), "bars[0].size"],
    [
      () =>
        new PciConfig(id, [{ size: 16, space: "memory", is64: true }, {
          size: 16,
          space: "memory",
        }]),
      "bars[1]: must be null",
    ],
    [
      () =>
        new PciConfig(id, [null, null, null, null, null, {
          size: 16,
          space: "memory",
          is64: true,
        }]),
      "bars[5]: a 64-bit BAR cannot be the last one",
    ],
    [
      () => new PciConfig({ vendorId: 0xffff, deviceId: 1 }, []),
      "identity.vendorId",
    ],
    [() => new PciConfig(id, [], { rom: { size: 1024 } }), "rom.size"],
    [
      () => new PciConfig(id, [], { capabilities: [{ id: 9, length: 200 }] }),
      "capabilities[0].length: 200 is not an integer in 2..0xc0",
    ],
    [
      () => new PciConfig(id, [], { capabilities: [{ id: 9, length: 1 }] }),
      "capabilities[0].length: 1 is not an integer in 2..0xc0",
    ],
    [
      () =>
        new PciConfig(
          { vendorId: "0x1af4" as unknown as number, deviceId: 1 },
          [],
        ),
      `identity.vendorId: "0x1af4" is a string, expected a number: an integer in 0..0xffff`,
    ],
    [
      () =>
        new PciConfig(id, [{ size: "4096" as unknown as number, space: "io" }]),
      `bars[0].size: "4096" is a string, expected a number: a power of two in 4..256`,
    ],
    [
      () =>
        new PciConfig(id, [], { rom: { size: "4096" as unknown as number } }),
      `rom.size: "4096" is a string, expected a number`,
    ],
    [
      () =>
        new PciConfig(id, [], {
          capabilities: [{ id: 9, length: 4, writable: [0x1ff] }],
        }),
      "capabilities[0].writable[0]: 511 is not an integer in 0..0xff",
    ],
  ];
  for (const [make, field] of cases) {
    const e = assertThrows(make, DeviceModelError);
    assertStringIncludes(e.message, field);
  }
});
