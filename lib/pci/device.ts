// The device API: what a device model written in TypeScript implements
// (identity, BARs, register access, reset) and what the remote gives it
// (INTx level, DMA). Models know nothing about sockets or the protocol.

import type {
  BarSpec,
  CapabilitySpec,
  PciIdentity,
  RomSpec,
} from "./config.ts";

export type { BarSpec, CapabilitySpec, PciIdentity, RomSpec };
export { getLe, getLe64, setLe, setLe64 } from "../le.ts";

/** What the remote offers a device model. */
export interface DeviceContext {
  /**
   * Sets the device's INTx output level. Only changes reach the IOHUB, and
   * Interrupt Disable in the command register holds the line low.
   */
  setIrq(level: boolean): void;
  /**
   * Copies guest memory at `gpa` into `dst`; false if not all of it is
   * guest memory. The remote also takes a bigint `gpa` (as getLe64 reads
   * a register) and any typed array or DataView as `dst`, and throws
   * TypeError for anything else (a plain array).
   */
  dmaRead(gpa: number, dst: Uint8Array): boolean;
  /**
   * Copies `src` to guest memory at `gpa`; false if not all of it is guest
   * memory. Takes what dmaRead takes.
   */
  dmaWrite(gpa: number, src: Uint8Array): boolean;
  /**
   * Writes one line to the remote's log, prefixed with the device's name
   * (for guest errors worth a trace; optional so hand-made contexts work).
   */
  log?(line: string): void;
  /**
   * The device's own options from its `--device` value, beyond fd, socket
   * and id: `--device ./my_dev.ts,socket=s,rate=5` gives `{ rate: "5" }`
   * (empty when none; optional so hand-made contexts work).
   */
  readonly params?: Readonly<Record<string, string>>;
}

/**
 * A PCI device model. BAR accesses arrive as (bar, offset, data) where
 * `data` is the 1, 2, 4 or 8 bytes of the access, little endian: read()
 * fills it, write() consumes it. `data` is only valid during the call.
 * Callbacks run on the remote's thread and must not block; work that takes
 * time goes on a timer or a promise, as anywhere in Deno.
 */
export interface DeviceModel {
  /** Config-space identity registers. */
  readonly identity: PciIdentity;
  /**
   * Up to six BARs (null for unimplemented ones; a 64-bit BAR also takes
   * the register after it, which must be null).
   */
  readonly bars: readonly (BarSpec | null)[];
  /**
   * An expansion ROM, read as region 6 (ROM_REGION) while enabled; writes
   * to it are dropped before they reach write(), as QEMU drops them.
   */
  readonly rom?: RomSpec | null;
  /** Capabilities, laid out in config space from 0x40 in this order. */
  readonly capabilities?: readonly CapabilitySpec[];
  /** A read of `data.length` bytes at `offset` into region `bar`. */
  read(bar: number, offset: number, data: Uint8Array): void;
  /** A write of `data` at `offset` into region `bar`. */
  write(bar: number, offset: number, data: Uint8Array): void;
  /** Restores every register to its reset value and lowers INTx. */
  reset?(): void;
  /**
   * The remote is done with the device (its channel closed, or the remote
   * stops): cancel timers and release what the model holds. From now on
   * the context's setIrq, dmaRead and dmaWrite do nothing (DMA returns
   * false); log still writes its line.
   */
  close?(): void;
}

/**
 * Builds a device model bound to the context the remote gives it. A device
 * module's default export is one, or a class implementing DeviceModel whose
 * constructor takes the context.
 */
export type DeviceFactory = (ctx: DeviceContext) => DeviceModel;
