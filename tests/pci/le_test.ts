// getLe/setLe and their bigint twins on every access size, 8 included.

import { assertEquals } from "@std/assert";
import { getLe, getLe64, setLe, setLe64 } from "../../lib/pci/mod.ts";

Deno.test("le: numbers round-trip on 1, 2, 4 and 8 bytes, the high half of 8 included", () => {
  const cases: [number, number][] = [
    [1, 0xab],
    [2, 0xabcd],
    [4, 0xdeadbeef],
    [8, 0x0011_2233_4455_6677],
    [8, Number.MAX_SAFE_INTEGER],
  ];
  for (const [size, value] of cases) {
    const data = new Uint8Array(size);
    setLe(data, value);
    assertEquals(getLe(data), value, `${size} bytes`);
  }
  const data = new Uint8Array(8);
  setLe(data, 0x1122_3344_5566);
  assertEquals([...data], [0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0, 0]);
  // Narrower data keeps the low bytes; a negative value is two's complement.
  const two = new Uint8Array(2);
  setLe(two, 0x12345);
  assertEquals(getLe(two), 0x2345);
  setLe(data, -1);
  assertEquals(getLe64(data), 0xffff_ffff_ffff_ffffn);
});

Deno.test("le: an 8-byte value a number cannot hold is rounded, never an error; getLe64 reads it exactly", () => {
  const data = new Uint8Array(8);
  setLe64(data, 0x1122_3344_5566_7788n);
  assertEquals([...data], [0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11]);
  // A guest may write any 8 bytes: a device reading them must not fail.
  assertEquals(getLe(data), Number(0x1122_3344_5566_7788n));
  assertEquals(getLe64(data), 0x1122_3344_5566_7788n);
  assertEquals(getLe64(data.subarray(0, 4)), 0x5566_7788n);
  setLe64(data, -2n);
  assertEquals(getLe64(data), 0xffff_ffff_ffff_fffen);
});

Deno.test("le: bytes past 8 are zeros", () => {
  const wide = new Uint8Array(12).fill(0xee);
  setLe(wide, -1);
  assertEquals([...wide], [...new Array(8).fill(0xff), 0, 0, 0, 0]);
  wide.fill(0xee);
  setLe64(wide, -1n);
  assertEquals([...wide], [...new Array(8).fill(0xff), 0, 0, 0, 0]);
});
