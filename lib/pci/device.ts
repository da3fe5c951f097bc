// The device API: what a device model written in TypeScript implements
// (identity, BARs, register access, reset) and what the remote gives it
// (INTx level, DMA). Models know nothing about sockets or the protocol.

import type { BarSpec, PciIdentity } from "./config.ts";

export type { BarSpec, PciIdentity };

/** What the remote offers a device model. */
export interface DeviceContext {
  /**
   * Sets the device's INTx output level. Only changes reach the IOHUB, and
   * Interrupt Disable in the command register holds the line low.
   */
  setIrq(level: boolean): void;
  /** Copies guest memory at `gpa` into `dst`; false if not all mapped. */
  dmaRead(gpa: number, dst: Uint8Array): boolean;
  /** Copies `src` to guest memory at `gpa`; false if not all mapped. */
  dmaWrite(gpa: number, src: Uint8Array): boolean;
}

/**
 * A PCI device model. BAR accesses arrive as (bar, offset, data) where
 * `data` is the 1, 2, 4 or 8 bytes of the access, little endian: read()
 * fills it, write() consumes it. `data` is only valid during the call.
 */
export interface DeviceModel {
  /** Config-space identity registers. */
  readonly identity: PciIdentity;
  /** Up to six 32-bit BARs (null for unimplemented ones). */
  readonly bars: readonly (BarSpec | null)[];
  /** A BAR read of `data.length` bytes at `offset` into BAR `bar`. */
  read(bar: number, offset: number, data: Uint8Array): void;
  /** A BAR write of `data` at `offset` into BAR `bar`. */
  write(bar: number, offset: number, data: Uint8Array): void;
  /** Restores every register to its reset value and lowers INTx. */
  reset(): void;
}

/** Builds a device model bound to the context the remote gives it. */
export type DeviceFactory = (ctx: DeviceContext) => DeviceModel;

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
