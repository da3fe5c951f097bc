// Little-endian access bytes as numbers: how a device model reads the
// value of a write and fills a read, and how the KVM harness reads port I/O.

/** Reads `data` (up to 4 bytes) as a little-endian unsigned number. */
export function getLe(data: Uint8Array): number {
  let v = 0;
  for (let i = Math.min(data.length, 4) - 1; i >= 0; i--) v = v * 256 + data[i];
  return v;
}

/** Fills `data` with `value` little endian (bytes past 4 become 0). */
export function setLe(data: Uint8Array, value: number): void {
  for (let i = 0; i < data.length; i++) {
    data[i] = i < 4 ? (value >>> (8 * i)) & 0xff : 0;
  }
}
