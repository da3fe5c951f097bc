// PCI configuration space of a type 0 function: register bytes plus masks
// of writable and write-1-to-clear bits, BARs (32/64-bit, prefetchable, an
// expansion ROM) whose size falls out of the write mask, a capability list
// with device hooks, and writes that report their side effects as values.

import { checkLayout } from "./validate.ts";

/** Size of conventional PCI config space. */
export const CONFIG_SIZE = 256;
/** Size of the I/O port space (QEMU's `io` region): ports below it exist. */
export const IO_SPACE_SIZE = 0x10000;
/** Config register offsets iohub touches. */
export const PCI_VENDOR_ID = 0x00;
/** Device ID register. */
export const PCI_DEVICE_ID = 0x02;
/** Command register. */
export const PCI_COMMAND = 0x04;
/** Status register. */
export const PCI_STATUS = 0x06;
/** Revision ID register. */
export const PCI_REVISION_ID = 0x08;
/** Class code (3 bytes: prog-if, subclass, class). */
export const PCI_CLASS_PROG = 0x09;
/** Capability list pointer. */
export const PCI_CAPABILITY_LIST = 0x34;
/** Expansion ROM base address register. */
export const PCI_ROM_ADDRESS = 0x30;
/** Header type register. */
export const PCI_HEADER_TYPE = 0x0e;
/** First BAR register. */
export const PCI_BAR0 = 0x10;
/** Subsystem vendor ID register. */
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
/** Subsystem ID register. */
export const PCI_SUBSYSTEM_ID = 0x2e;
/** Interrupt line register. */
export const PCI_INTERRUPT_LINE = 0x3c;
/** Interrupt pin register. */
export const PCI_INTERRUPT_PIN = 0x3d;

/** Command: I/O space decode. */
export const CMD_IO = 0x1;
/** Command: memory space decode. */
export const CMD_MEMORY = 0x2;
/** Command: bus master (DMA). */
export const CMD_MASTER = 0x4;
/** Command: INTx disable (PCI 2.3). */
export const CMD_INTX_DISABLE = 0x400;
/** Status: INTx pending (PCI 2.3). */
export const STATUS_INTERRUPT = 0x8;
/** Status: the capability list pointer is valid. */
export const STATUS_CAP_LIST = 0x10;

/** Number of BAR registers in a type 0 header. */
export const NUM_BARS = 6;
/** Region index of the expansion ROM, after the six BARs. */
export const ROM_REGION = 6;
/** Regions a device decodes: six BARs and the expansion ROM. */
export const NUM_REGIONS = 7;
/** Marks an unmapped BAR in decoded addresses. */
export const BAR_UNMAPPED = -1;
/** Where the first capability goes: right after the type 0 header. */
export const CAPABILITIES_START = 0x40;

const BAR_IO = 0x1;
const BAR_MEM_64 = 0x4;
const BAR_PREFETCH = 0x8;
/** Expansion ROM register: the ROM decodes (with memory space enabled). */
export const ROM_ENABLE = 0x1;
/** Expansion ROM register: the address bits (the ROM is at least 2 KiB). */
export const ROM_ADDRESS_MASK = 0xfffff800;
// BAR decoding compares addresses as numbers: exact below 2^53.
const MAX_DECODED = 2 ** 53;

/** Identity registers of a function; all but the IDs have defaults. */
export interface PciIdentity {
  /** Vendor ID. */
  vendorId: number;
  /** Device ID. */
  deviceId: number;
  /** Revision ID (default 0). */
  revision?: number;
  /**
   * 24-bit class code: class << 16 | subclass << 8 | prog-if (default
   * 0xff0000, "unassigned class").
   */
  classCode?: number;
  /** Subsystem vendor ID (default: the vendor ID). */
  subsystemVendorId?: number;
  /** Subsystem ID (default 0). */
  subsystemId?: number;
  /** Interrupt pin: 0 none, 1 INTA# (default) ... 4 INTD#. */
  interruptPin?: number;
}

/** One BAR: its size (a power of two) and address space. */
export interface BarSpec {
  /** Size in bytes, a power of two (memory >= 16, I/O >= 4 and <= 256). */
  size: number;
  /** "memory" or "io". */
  space: "memory" | "io";
  /**
   * A 64-bit memory BAR: it also takes the next BAR register (which must
   * be null) for the upper half of the address.
   */
  is64?: boolean;
  /** A prefetchable memory BAR. */
  prefetchable?: boolean;
}

/** An expansion ROM: read through region ROM_REGION when enabled. */
export interface RomSpec {
  /** Size in bytes, a power of two >= 2048. */
  size: number;
}

/**
 * A capability in the list: its ID, its registers after the 2-byte header,
 * which bits the guest may write, and optional hooks for registers the
 * device computes or acts on. Offsets are from the capability's start.
 */
export interface CapabilitySpec {
  /** Capability ID (e.g. 0x09, vendor specific). */
  id: number;
  /** Length in bytes including the ID and next-pointer bytes (2..192). */
  length: number;
  /** Initial values of bytes 2.. (index 0 is the byte at offset 2). */
  init?: ArrayLike<number>;
  /** Writable-bit masks of bytes 2.., indexed as `init` (default: none). */
  writable?: ArrayLike<number>;
  /** Returns what a read of `len` bytes at `offset` gives, from `value`. */
  read?(offset: number, len: number, value: number): number;
  /** Told about a write of `value` (`len` bytes at `offset`), after masking. */
  write?(offset: number, value: number, len: number): void;
}

/** Optional parts of a function's config layout. */
export interface ConfigExtras {
  /** An expansion ROM. */
  rom?: RomSpec | null;
  /** Capabilities, laid out from 0x40 in this order. */
  capabilities?: readonly CapabilitySpec[];
}

/** What a config write changed, for the owner to act on. */
export const ConfigEffect = {
  /** Nothing that needs acting on. */
  NONE: 0,
  /** A BAR address or a decode enable changed: re-decode addresses. */
  BARS: 1,
  /** Interrupt Disable changed: recompute the INTx output. */
  INTX: 2,
} as const;

/**
 * The config space of one function. Reads and writes take the QEMU
 * semantics: bytes outside the write mask keep their value, write-1-to-clear
 * bits clear, and a BAR's mask makes the all-ones sizing write read back
 * `~(size - 1)` with the type bits.
 */
export class PciConfig {
  readonly #bytes = new Uint8Array(CONFIG_SIZE);
  readonly #view = new DataView(this.#bytes.buffer);
  readonly #defaults = new Uint8Array(CONFIG_SIZE);
  readonly #wmask = new Uint8Array(CONFIG_SIZE);
  readonly #w1cmask = new Uint8Array(CONFIG_SIZE);
  readonly #bars: readonly (BarSpec | null)[];
  readonly #rom: RomSpec | null;
  readonly #caps: { start: number; spec: CapabilitySpec }[] = [];
  readonly #capOf = new Int16Array(CONFIG_SIZE).fill(-1);

  /**
   * Lays out the header for `identity`, up to six `bars` and the `extras`;
   * throws DeviceModelError for a layout that breaks the PCI rules.
   */
  constructor(
    identity: PciIdentity,
    bars: readonly (BarSpec | null)[],
    extras: ConfigExtras = {},
  ) {
    checkLayout(identity, bars, extras);
    this.#bars = Array.from({ length: NUM_BARS }, (_, i) => bars[i] ?? null);
    this.#rom = extras.rom ?? null;
    const v = new DataView(this.#defaults.buffer);
    v.setUint16(PCI_VENDOR_ID, identity.vendorId, true);
    v.setUint16(PCI_DEVICE_ID, identity.deviceId, true);
    v.setUint8(PCI_REVISION_ID, identity.revision ?? 0);
    const classCode = identity.classCode ?? 0xff0000;
    v.setUint8(PCI_CLASS_PROG, classCode & 0xff);
    v.setUint16(PCI_CLASS_PROG + 1, classCode >>> 8, true);
    v.setUint8(PCI_HEADER_TYPE, 0);
    v.setUint16(
      PCI_SUBSYSTEM_VENDOR_ID,
      identity.subsystemVendorId ?? identity.vendorId,
      true,
    );
    v.setUint16(PCI_SUBSYSTEM_ID, identity.subsystemId ?? 0, true);
    v.setUint8(PCI_INTERRUPT_PIN, identity.interruptPin ?? 1);
    const m = new DataView(this.#wmask.buffer);
    m.setUint16(
      PCI_COMMAND,
      CMD_IO | CMD_MEMORY | CMD_MASTER | CMD_INTX_DISABLE,
      true,
    );
    m.setUint8(0x0c, 0xff); // cache line size
    m.setUint8(PCI_INTERRUPT_LINE, 0xff);
    // Error bits of the status register are write-1-to-clear.
    new DataView(this.#w1cmask.buffer).setUint16(PCI_STATUS, 0xf900, true);
    this.#bars.forEach((bar, i) => {
      if (bar === null) return;
      const reg = PCI_BAR0 + 4 * i;
      if (bar.space === "io") {
        v.setUint32(reg, BAR_IO, true);
        m.setUint32(reg, ~(bar.size - 1) & ~0x3, true);
        return;
      }
      v.setUint32(
        reg,
        (bar.is64 ? BAR_MEM_64 : 0) | (bar.prefetchable ? BAR_PREFETCH : 0),
        true,
      );
      // The size mask over 64 bits, split into the two registers.
      const low = bar.size >= 2 ** 32 ? 0 : ~(bar.size - 1) & ~0xf;
      m.setUint32(reg, low >>> 0, true);
      if (bar.is64) {
        const high = ~Math.floor((bar.size - 1) / 2 ** 32) >>> 0;
        m.setUint32(reg + 4, high, true);
      }
    });
    if (this.#rom !== null) {
      m.setUint32(
        PCI_ROM_ADDRESS,
        (~(this.#rom.size - 1) | ROM_ENABLE) >>> 0,
        true,
      );
    }
    this.#layCapabilities(extras.capabilities ?? [], v, m);
    this.reset();
  }

  #layCapabilities(
    caps: readonly CapabilitySpec[],
    v: DataView,
    m: DataView,
  ): void {
    let at = CAPABILITIES_START;
    let prev = PCI_CAPABILITY_LIST;
    for (const cap of caps) {
      v.setUint8(prev, at);
      v.setUint8(at, cap.id);
      for (let i = 0; i < cap.length - 2; i++) {
        v.setUint8(at + 2 + i, cap.init?.[i] ?? 0);
        m.setUint8(at + 2 + i, cap.writable?.[i] ?? 0);
      }
      this.#caps.push({ start: at, spec: cap });
      this.#capOf.fill(this.#caps.length - 1, at, at + cap.length);
      prev = at + 1;
      at += (cap.length + 3) & ~3;
    }
    if (caps.length > 0) {
      v.setUint16(PCI_STATUS, STATUS_CAP_LIST, true);
    }
  }

  /** Restores every register to its default (BARs unprogrammed, command 0). */
  reset(): void {
    this.#bytes.set(this.#defaults);
  }

  /** The BAR layout (six entries, null for unimplemented ones). */
  get bars(): readonly (BarSpec | null)[] {
    return this.#bars;
  }

  /** The expansion ROM, or null. */
  get rom(): RomSpec | null {
    return this.#rom;
  }

  /**
   * Reads `len` (1 to 4) bytes at `addr`, little endian; a capability's
   * read hook has the last word on its own registers (each capability the
   * access touches is asked for its part).
   */
  read(addr: number, len: number): number {
    const c = this.#capOf[addr];
    if (this.#onePart(addr, len, c)) {
      const value = this.#rawN(addr, len);
      const cap = c < 0 ? undefined : this.#caps[c];
      return cap?.spec.read === undefined
        ? value
        : lowBytes(cap.spec.read(addr - cap.start, len, value), len);
    }
    let value = 0;
    this.#eachPart(addr, len, (at, n, cap) => {
      const part = this.#rawN(at, n);
      const got = cap?.spec.read === undefined
        ? part
        : lowBytes(cap.spec.read(at - cap.start, n, part), n);
      value += got * 2 ** (8 * (at - addr));
    });
    return value;
  }

  /**
   * Writes `len` (1 to 4) bytes of `val` at `addr` through the masks, then
   * tells each capability the access touched about its part; returns the
   * ConfigEffect bits of what changed.
   */
  write(addr: number, val: number, len: number): number {
    const oldCmd = this.command;
    const oldBars = this.#barsTouched(addr, len);
    for (let i = 0; i < len; i++) {
      const a = addr + i;
      const b = (val >>> (8 * i)) & 0xff;
      const wm = this.#wmask[a];
      this.#bytes[a] = ((this.#bytes[a] & ~wm) | (b & wm)) &
        ~(b & this.#w1cmask[a]);
    }
    const c = this.#capOf[addr];
    if (this.#onePart(addr, len, c)) {
      if (c >= 0) {
        const cap = this.#caps[c];
        cap.spec.write?.(addr - cap.start, this.#rawN(addr, len), len);
      }
    } else {
      this.#eachPart(addr, len, (at, n, cap) => {
        cap?.spec.write?.(at - cap.start, this.#rawN(at, n), n);
      });
    }
    const cmd = this.command;
    let effect: number = oldBars ? ConfigEffect.BARS : ConfigEffect.NONE;
    if ((oldCmd ^ cmd) & (CMD_IO | CMD_MEMORY)) effect |= ConfigEffect.BARS;
    if ((oldCmd ^ cmd) & CMD_INTX_DISABLE) effect |= ConfigEffect.INTX;
    return effect;
  }

  // `n` bytes at `addr` as they are, little endian.
  #rawN(addr: number, n: number): number {
    let v = 0;
    for (let i = n - 1; i >= 0; i--) v = v * 256 + this.#bytes[addr + i];
    return v;
  }

  // Whether all of [addr, addr + len) lies in capability `c` (or in none).
  #onePart(addr: number, len: number, c: number): boolean {
    for (let i = 1; i < len; i++) if (this.#capOf[addr + i] !== c) return false;
    return true;
  }

  // Calls `fn` for each run of [addr, addr + len) that lies in one
  // capability (or in none): an access may straddle two of them.
  #eachPart(
    addr: number,
    len: number,
    fn: (
      at: number,
      n: number,
      cap: { start: number; spec: CapabilitySpec } | undefined,
    ) => void,
  ): void {
    for (let at = addr; at < addr + len;) {
      const c = this.#capOf[at];
      let end = at + 1;
      while (end < addr + len && this.#capOf[end] === c) end++;
      fn(at, end - at, c < 0 ? undefined : this.#caps[c]);
      at = end;
    }
  }

  #barsTouched(addr: number, len: number): boolean {
    return (addr < PCI_BAR0 + 4 * NUM_BARS && addr + len > PCI_BAR0) ||
      (addr < PCI_ROM_ADDRESS + 4 && addr + len > PCI_ROM_ADDRESS);
  }

  /** The command register. */
  get command(): number {
    return this.#view.getUint16(PCI_COMMAND, true);
  }

  /** Shows (or clears) the device's pending INTx in status bit 3. */
  setInterruptStatus(pending: boolean): void {
    const s = this.#view.getUint16(PCI_STATUS, true);
    this.#view.setUint16(
      PCI_STATUS,
      pending ? s | STATUS_INTERRUPT : s & ~STATUS_INTERRUPT,
      true,
    );
  }

  /**
   * The address region `i` (a BAR, or ROM_REGION) decodes at, or
   * BAR_UNMAPPED: unimplemented, its space disabled in the command
   * register, a disabled ROM, unprogrammed (0), or not fitting its space
   * (mid-sizing all-ones, I/O beyond 64 KiB, a 32-bit BAR past 4 GiB).
   */
  barAddress(i: number): number {
    if (i === ROM_REGION) return this.#romAddress();
    const bar = this.#bars[i];
    if (bar === null) return BAR_UNMAPPED;
    const raw = this.#view.getUint32(PCI_BAR0 + 4 * i, true);
    const io = bar.space === "io";
    if ((this.command & (io ? CMD_IO : CMD_MEMORY)) === 0) return BAR_UNMAPPED;
    const high = bar.is64
      ? this.#view.getUint32(PCI_BAR0 + 4 * i + 4, true)
      : 0;
    const low = (raw & (io ? ~0x3 : ~0xf)) >>> 0;
    const base = high * 2 ** 32 + low -
      (high * 2 ** 32 + low) % bar.size;
    const last = base + bar.size - 1;
    const limit = io
      ? IO_SPACE_SIZE - 1
      : bar.is64
      ? MAX_DECODED - 1
      : 0xfffffffe;
    if (base === 0 || last > limit) return BAR_UNMAPPED;
    return base;
  }

  #romAddress(): number {
    const rom = this.#rom;
    if (rom === null || (this.command & CMD_MEMORY) === 0) return BAR_UNMAPPED;
    const raw = this.#view.getUint32(PCI_ROM_ADDRESS, true);
    if ((raw & ROM_ENABLE) === 0) return BAR_UNMAPPED;
    const base = (raw & ~(rom.size - 1)) >>> 0;
    if (base === 0 || base + rom.size - 1 > 0xfffffffe) return BAR_UNMAPPED;
    return base;
  }

  /** The size of region `i` (a BAR or ROM_REGION), 0 if unimplemented. */
  regionSize(i: number): number {
    if (i === ROM_REGION) return this.#rom?.size ?? 0;
    return this.#bars[i]?.size ?? 0;
  }

  /** Whether region `i` is in memory space (the ROM is). */
  regionIsMemory(i: number): boolean {
    if (i === ROM_REGION) return this.#rom !== null;
    return this.#bars[i]?.space === "memory";
  }
}

// The `n` low bytes of a hook's answer: it may set bits beyond its width.
function lowBytes(v: number, n: number): number {
  return n >= 4 ? v >>> 0 : (v >>> 0) % 2 ** (8 * n);
}
