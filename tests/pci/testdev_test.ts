// iohub-testdev against docs/testdev.md, register by register, driven
// through the device API with an in-memory DeviceContext (the API a device
// is given; guest RAM here is a plain byte array with the same bounds
// rule as SYNC_SYSMEM memory).

import { assert, assertEquals } from "@std/assert";
import type { DeviceContext } from "../../lib/pci/device.ts";
import {
  BUFFER_OFFSET,
  BUFFER_SIZE,
  CAUSE_DMA,
  DMA_FROM_GUEST,
  DMA_TO_GUEST,
  Reg,
  TestDev,
  TESTDEV_ID,
  TESTDEV_IDENTITY,
} from "../../lib/pci/devices/testdev.ts";

const RAM_SIZE = 0x10000;

/** A DeviceContext over `ram`, recording every INTx level the device sets. */
function context(ram: Uint8Array): DeviceContext & { levels: boolean[] } {
  const levels: boolean[] = [];
  const inRam = (gpa: number, len: number): boolean =>
    gpa >= 0 && gpa + len <= ram.length;
  return {
    levels,
    setIrq: (level) => levels.push(level),
    dmaRead: (gpa, dst) => {
      if (!inRam(gpa, dst.length)) return false;
      dst.set(ram.subarray(gpa, gpa + dst.length));
      return true;
    },
    dmaWrite: (gpa, src) => {
      if (!inRam(gpa, src.length)) return false;
      ram.set(src, gpa);
      return true;
    },
  };
}

function setup(): {
  dev: TestDev;
  ctx: ReturnType<typeof context>;
  ram: Uint8Array;
} {
  const ram = new Uint8Array(RAM_SIZE);
  const ctx = context(ram);
  return { dev: new TestDev(ctx), ctx, ram };
}

function read(dev: TestDev, bar: number, offset: number, size = 4): number {
  const data = new Uint8Array(size);
  dev.read(bar, offset, data);
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

function write(
  dev: TestDev,
  bar: number,
  offset: number,
  value: number,
  size = 4,
): void {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.floor(value / 256 ** i) & 0xff;
  dev.write(bar, offset, data);
}

/** Every register with its value after reset, as docs/testdev.md gives it. */
const RESET_VALUES: [number, number][] = [
  [Reg.ID, TESTDEV_ID],
  [Reg.SCRATCH, 0],
  [Reg.IRQ_STATUS, 0],
  [Reg.IRQ_RAISE, 0],
  [Reg.IRQ_ACK, 0],
  [Reg.IRQ_MASK, 0xffffffff],
  [Reg.IRQ_COUNT, 0],
  [Reg.DMA_ADDR_LO, 0],
  [Reg.DMA_ADDR_HI, 0],
  [Reg.DMA_LEN, 0],
  [Reg.DMA_CMD, 0],
  [Reg.DMA_STATUS, 0],
];

/** Asserts every register of `dev` in `bar` holds its reset value. */
function assertResetValues(dev: TestDev, bar: number): void {
  for (const [off, v] of RESET_VALUES) {
    assertEquals(
      read(dev, bar, off),
      v,
      `bar ${bar} reg 0x${off.toString(16)}`,
    );
  }
}

Deno.test("testdev: identity and BARs as docs/testdev.md specifies", () => {
  const { dev } = setup();
  assertEquals(TESTDEV_IDENTITY.vendorId, 0x1234);
  assertEquals(TESTDEV_IDENTITY.deviceId, 0x10b1);
  assertEquals(TESTDEV_IDENTITY.classCode, 0x00ff00);
  assertEquals(TESTDEV_IDENTITY.interruptPin, 1);
  assertEquals(dev.bars.length, 2);
  assertEquals(dev.bars.map((b) => [b.size, b.space]), [
    [4096, "memory"],
    [64, "io"],
  ]);
});

Deno.test("testdev: every register, in BAR0 and BAR1, with its reset value", () => {
  for (const bar of [0, 1]) {
    const { dev } = setup();
    assertResetValues(dev, bar);
    // Read-write registers keep what is written.
    for (
      const off of [Reg.SCRATCH, Reg.DMA_ADDR_LO, Reg.DMA_ADDR_HI, Reg.DMA_LEN]
    ) {
      write(dev, bar, off, 0xdeadbeef);
      assertEquals(read(dev, bar, off), 0xdeadbeef);
    }
    // Read-only ones ignore writes.
    write(dev, bar, Reg.ID, 0);
    write(dev, bar, Reg.IRQ_COUNT, 7);
    write(dev, bar, Reg.DMA_STATUS, 1);
    assertEquals(read(dev, bar, Reg.ID), TESTDEV_ID);
    assertEquals(read(dev, bar, Reg.IRQ_COUNT), 0);
    assertEquals(read(dev, bar, Reg.DMA_STATUS), 0);
  }
});

Deno.test("testdev: registers take only aligned 4-byte accesses", () => {
  const { dev } = setup();
  write(dev, 0, Reg.SCRATCH, 0x11223344);
  assertEquals(read(dev, 0, Reg.SCRATCH, 2), 0xffff);
  assertEquals(read(dev, 0, Reg.SCRATCH, 1), 0xff);
  assertEquals(read(dev, 0, Reg.SCRATCH + 1), 0xffffffff);
  assertEquals(read(dev, 1, Reg.ID, 8), 0xffffffff * 2 ** 32 + 0xffffffff);
  write(dev, 0, Reg.SCRATCH, 0, 2);
  write(dev, 0, Reg.SCRATCH + 2, 0);
  assertEquals(read(dev, 0, Reg.SCRATCH), 0x11223344);
});

Deno.test("testdev: INTx follows IRQ_STATUS & IRQ_MASK; IRQ_COUNT counts rising edges", () => {
  const { dev, ctx } = setup();
  write(dev, 0, Reg.IRQ_RAISE, 0b101);
  assertEquals(read(dev, 0, Reg.IRQ_STATUS), 0b101);
  assertEquals(ctx.levels, [true]);
  // Raising more while high is no new edge.
  write(dev, 1, Reg.IRQ_RAISE, 0b10);
  assertEquals(ctx.levels, [true]);
  write(dev, 0, Reg.IRQ_ACK, 0b001);
  assertEquals(read(dev, 0, Reg.IRQ_STATUS), 0b110);
  assertEquals(ctx.levels, [true]);
  // Masking the pending causes lowers the line; unmasking raises it again.
  write(dev, 0, Reg.IRQ_MASK, 0b001);
  assertEquals(read(dev, 0, Reg.IRQ_MASK), 0b001);
  assertEquals(ctx.levels, [true, false]);
  write(dev, 0, Reg.IRQ_MASK, 0xffffffff);
  assertEquals(ctx.levels, [true, false, true]);
  write(dev, 0, Reg.IRQ_ACK, 0xffffffff);
  assertEquals(read(dev, 0, Reg.IRQ_STATUS), 0);
  assertEquals(ctx.levels, [true, false, true, false]);
  assertEquals(read(dev, 0, Reg.IRQ_COUNT), 2);
});

Deno.test("testdev: DMA both ways through the buffer, raising cause bit 1", () => {
  const { dev, ctx, ram } = setup();
  const gpa = 0x1000;
  for (let i = 0; i < 16; i++) write(dev, 0, BUFFER_OFFSET + i, 0xa0 + i, 1);
  write(dev, 0, Reg.DMA_ADDR_LO, gpa);
  write(dev, 0, Reg.DMA_ADDR_HI, 0);
  write(dev, 0, Reg.DMA_LEN, 16);
  write(dev, 0, Reg.DMA_CMD, DMA_TO_GUEST);
  assertEquals(read(dev, 0, Reg.DMA_STATUS), 0);
  assertEquals(
    [...ram.subarray(gpa, gpa + 16)],
    Array.from({ length: 16 }, (_, i) => 0xa0 + i),
  );
  assertEquals(read(dev, 0, Reg.IRQ_STATUS), CAUSE_DMA);
  assertEquals(ctx.levels, [true]);
  write(dev, 0, Reg.IRQ_ACK, CAUSE_DMA);

  ram.set([1, 2, 3, 4, 5, 6, 7, 8], 0x2000);
  write(dev, 1, Reg.DMA_ADDR_LO, 0x2000);
  write(dev, 1, Reg.DMA_LEN, 8);
  write(dev, 1, Reg.DMA_CMD, DMA_FROM_GUEST);
  assertEquals(read(dev, 0, Reg.DMA_STATUS), 0);
  assertEquals(read(dev, 0, BUFFER_OFFSET, 8), 0x0807060504030201);
  assertEquals(read(dev, 0, Reg.IRQ_STATUS), CAUSE_DMA);
});

Deno.test("testdev: refused DMA sets DMA_STATUS 1, moves nothing, still raises", () => {
  const cases: [string, number, number, number, number][] = [
    ["length 0", 0x1000, 0, 0, DMA_TO_GUEST],
    ["length over the buffer", 0x1000, 0, BUFFER_SIZE + 1, DMA_TO_GUEST],
    ["range past guest RAM", RAM_SIZE - 4, 0, 8, DMA_TO_GUEST],
    ["address above 4 GiB", 0, 1, 8, DMA_FROM_GUEST],
    ["unknown command", 0x1000, 0, 8, 3],
  ];
  for (const [what, lo, hi, len, cmd] of cases) {
    const { dev, ram } = setup();
    write(dev, 0, BUFFER_OFFSET, 0x5a, 1);
    write(dev, 0, Reg.DMA_ADDR_LO, lo);
    write(dev, 0, Reg.DMA_ADDR_HI, hi);
    write(dev, 0, Reg.DMA_LEN, len);
    write(dev, 0, Reg.DMA_CMD, cmd);
    assertEquals(read(dev, 0, Reg.DMA_STATUS), 1, what);
    assertEquals(read(dev, 0, Reg.IRQ_STATUS), CAUSE_DMA, what);
    assert(ram.every((b) => b === 0), what);
  }
});

Deno.test("testdev: the 2 KiB buffer takes 1, 2, 4 and 8 byte accesses anywhere", () => {
  const { dev } = setup();
  write(dev, 0, BUFFER_OFFSET + 3, 0xab, 1);
  write(dev, 0, BUFFER_OFFSET + 5, 0xcdef, 2);
  write(dev, 0, BUFFER_OFFSET + 0x7f8, 0x12345678, 4);
  write(dev, 0, BUFFER_OFFSET + 0x7fc, 0x9abcdef0, 4);
  assertEquals(read(dev, 0, BUFFER_OFFSET + 3, 1), 0xab);
  assertEquals(read(dev, 0, BUFFER_OFFSET + 5, 2), 0xcdef);
  assertEquals(read(dev, 0, BUFFER_OFFSET + 4, 4), 0xcdef00);
  assertEquals(
    read(dev, 0, BUFFER_OFFSET + 0x7f8, 8),
    0x9abcdef0 * 2 ** 32 + 0x12345678,
  );
  // BAR1 has no buffer: the same offsets are outside its registers.
  assertEquals(read(dev, 1, 0x3c), 0);
});

Deno.test("testdev: reset restores every register, zeroes the buffer, lowers INTx", () => {
  const { dev, ctx } = setup();
  write(dev, 0, Reg.SCRATCH, 9);
  write(dev, 0, Reg.IRQ_MASK, 1);
  write(dev, 0, Reg.IRQ_RAISE, 1);
  write(dev, 0, Reg.DMA_ADDR_LO, 0x100);
  write(dev, 0, Reg.DMA_LEN, 4000);
  write(dev, 0, Reg.DMA_CMD, DMA_TO_GUEST);
  write(dev, 0, BUFFER_OFFSET + 100, 0xff, 1);
  assertEquals(read(dev, 0, Reg.DMA_STATUS), 1);
  dev.reset();
  assertEquals(ctx.levels.at(-1), false);
  assertResetValues(dev, 0);
  assertEquals(read(dev, 0, BUFFER_OFFSET + 100, 1), 0);
});
