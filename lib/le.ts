// Little-endian access bytes as numbers: how a device model reads the
// value of a write and fills a read, and how the KVM harness reads port I/O.

const TWO_32 = 0x1_0000_0000;

/**
 * Reads `data` (1 to 8 bytes) as a little-endian unsigned number. Throws
 * RangeError for a value above 2^53 - 1, which a number cannot hold
 * exactly: read such 8-byte accesses with getLe64.
 */
export function getLe(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 8) - 1; i >= 0; i--) v = v * 256 + data[i];
  if (v > Number.MAX_SAFE_INTEGER) {
    throw new RangeError(
      `getLe: the ${data.length}-byte value is above 2^53 - 1: use getLe64`,
    );
  }
  return v;
}

/**
 * Fills `data` (1 to 8 bytes) with `value` little endian: an integer, the
 * bytes beyond `data` dropped; a negative one in two's complement.
 */
export function setLe(data: Uint8Array, value: number): void {
  const high = Math.floor(value / TWO_32);
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4
      ? (value >>> (8 * i)) & 0xff
      : (high >>> (8 * (i - 4))) & 0xff;
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
 * Fills `data` (1 to 8 bytes) with `value` little endian, the bytes beyond
 * `data` dropped (a negative value in two's complement).
 */
export function setLe64(data: Uint8Array, value: bigint): void {
  for (let i = 0; i < data.length; i++) {
    data[i] = Number(BigInt.asUintN(8, value >> BigInt(8 * i)));
  }
}
