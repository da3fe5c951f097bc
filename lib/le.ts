// Little-endian access bytes as numbers: how a device model reads the
// value of a write and fills a read, and how the KVM harness reads port I/O.

const TWO_32 = 0x1_0000_0000;

/**
 * Reads `data` (1 to 8 bytes) as a little-endian unsigned number: exact up
 * to 2^53 - 1, rounded to the nearest number above (a guest may write any
 * 8 bytes): read 64-bit registers with getLe64.
 */
export function getLe(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 8) - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

/**
 * Fills `data` with `value` little endian: an integer, its 8 low bytes (a
 * negative one in two's complement), zeros in any bytes past 8 and past
 * `data` dropped.
 */
export function setLe(data: Uint8Array, value: number): void {
  const high = Math.floor(value / TWO_32);
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4
      ? (value >>> (8 * i)) & 0xff
      : i < 8
      ? (high >>> (8 * (i - 4))) & 0xff
      : 0;
  }
}

/** Reads `data` (1 to 8 bytes) as a little-endian unsigned bigint. */
export function getLe64(data: Uint8Array): bigint {
  let v = 0n;
  for (let i = Math.min(data.length, 8) - 1; i >= 0; i--) {
    v = (v << 8n) | BigInt(data[i]);
  }
  return v;
}

/**
 * Fills `data` with `value` little endian: its 8 low bytes (a negative
 * value in two's complement), zeros past 8, the bytes beyond `data` dropped.
 */
export function setLe64(data: Uint8Array, value: bigint): void {
  const low = BigInt.asUintN(64, value);
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 8 ? Number((low >> BigInt(8 * i)) & 0xffn) : 0;
  }
}
