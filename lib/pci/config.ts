// PCI configuration space of a type 0 function: register bytes plus masks
// of writable and write-1-to-clear bits, BARs whose size falls out of the
// write mask, and writes that report their side effects as values.

/** Size of conventional PCI config space. */
export const CONFIG_SIZE = 256;
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

/** Number of BAR registers in a type 0 header. */
export const NUM_BARS = 6;
const BAR_IO = 0x1;
/** Marks an unmapped BAR in decoded addresses. */
export const BAR_UNMAPPED = -1;

/** Identity registers of a function. */
export interface PciIdentity {
  /** Vendor ID. */
  vendorId: number;
  /** Device ID. */
  deviceId: number;
  /** Revision ID. */
  revision: number;
  /** 24-bit class code: class << 16 | subclass << 8 | prog-if. */
  classCode: number;
  /** Subsystem vendor ID. */
  subsystemVendorId: number;
  /** Subsystem ID. */
  subsystemId: number;
  /** Interrupt pin: 0 none, 1 INTA# ... 4 INTD#. */
  interruptPin: number;
}

/** One BAR: its size (a power of two) and address space. */
export interface BarSpec {
  /** Size in bytes, a power of two (memory >= 16, I/O >= 4). */
  size: number;
  /** "memory" (32-bit, non-prefetchable) or "io". */
  space: "memory" | "io";
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

  /** Lays out the header for `identity` with up to six 32-bit `bars`. */
  constructor(identity: PciIdentity, bars: readonly (BarSpec | null)[]) {
    if (bars.length > NUM_BARS) {
      throw new RangeError(`at most ${NUM_BARS} BARs, got ${bars.length}`);
    }
    this.#bars = Array.from({ length: NUM_BARS }, (_, i) => bars[i] ?? null);
    const v = new DataView(this.#defaults.buffer);
    v.setUint16(PCI_VENDOR_ID, identity.vendorId, true);
    v.setUint16(PCI_DEVICE_ID, identity.deviceId, true);
    v.setUint8(PCI_REVISION_ID, identity.revision);
    v.setUint8(PCI_CLASS_PROG, identity.classCode & 0xff);
    v.setUint16(PCI_CLASS_PROG + 1, identity.classCode >>> 8, true);
    v.setUint8(PCI_HEADER_TYPE, 0);
    v.setUint16(PCI_SUBSYSTEM_VENDOR_ID, identity.subsystemVendorId, true);
    v.setUint16(PCI_SUBSYSTEM_ID, identity.subsystemId, true);
    v.setUint8(PCI_INTERRUPT_PIN, identity.interruptPin);
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
      const minSize = bar.space === "memory" ? 16 : 4;
      if (bar.size < minSize || (bar.size & (bar.size - 1)) !== 0) {
        throw new RangeError(
          `BAR${i}: size ${bar.size} is not a power of two >= ${minSize}`,
        );
      }
      if (bar.space === "io") v.setUint32(PCI_BAR0 + 4 * i, BAR_IO, true);
      m.setUint32(
        PCI_BAR0 + 4 * i,
        ~(bar.size - 1) >>> 0 & (bar.space === "io" ? ~0x3 : ~0xf),
        true,
      );
    });
    this.reset();
  }

  /** Restores every register to its default (BARs unprogrammed, command 0). */
  reset(): void {
    this.#bytes.set(this.#defaults);
  }

  /** The BAR layout (six entries, null for unimplemented ones). */
  get bars(): readonly (BarSpec | null)[] {
    return this.#bars;
  }

  /** Reads `len` (1, 2 or 4) bytes at `addr`, little endian. */
  read(addr: number, len: number): number {
    switch (len) {
      case 1:
        return this.#bytes[addr];
      case 2:
        return this.#view.getUint16(addr, true);
      default:
        return this.#view.getUint32(addr, true);
    }
  }

  /**
   * Writes `len` bytes of `val` at `addr` through the masks; returns the
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
    const cmd = this.command;
    let effect: number = oldBars ? ConfigEffect.BARS : ConfigEffect.NONE;
    if ((oldCmd ^ cmd) & (CMD_IO | CMD_MEMORY)) effect |= ConfigEffect.BARS;
    if ((oldCmd ^ cmd) & CMD_INTX_DISABLE) effect |= ConfigEffect.INTX;
    return effect;
  }

  #barsTouched(addr: number, len: number): boolean {
    return addr < PCI_BAR0 + 4 * NUM_BARS && addr + len > PCI_BAR0;
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
   * The address BAR `i` decodes at, or BAR_UNMAPPED: unimplemented, its
   * space disabled in the command register, unprogrammed (0), or not
   * fitting its space (mid-sizing all-ones, I/O beyond 64 KiB).
   */
  barAddress(i: number): number {
    const bar = this.#bars[i];
    if (bar === null) return BAR_UNMAPPED;
    const raw = this.#view.getUint32(PCI_BAR0 + 4 * i, true);
    const io = bar.space === "io";
    if ((this.command & (io ? CMD_IO : CMD_MEMORY)) === 0) return BAR_UNMAPPED;
    const base = (raw & (io ? ~0x3 : ~0xf) & ~(bar.size - 1)) >>> 0;
    const last = base + bar.size - 1;
    if (base === 0 || last > (io ? 0xffff : 0xfffffffe)) return BAR_UNMAPPED;
    return base;
  }
}
