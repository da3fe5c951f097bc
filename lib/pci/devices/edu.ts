// QEMU's educational PCI device `edu` (hw/misc/edu.c, docs/specs/edu.rst),
// register for register: the device every PCI driver course uses, served by
// iohub where QEMU 7.2's own remote refuses it (edu there insists on MSI).

import type { DeviceContext, DeviceModel, PciIdentity } from "../device.ts";

/** Register offsets in BAR0. */
export const EduReg = {
  /** RO: identification, EDU_ID. */
  ID: 0x00,
  /** RW: reads back the bitwise inversion of the last value written. */
  LIVENESS: 0x04,
  /** RW: write n to compute n! (mod 2^32) off the access path; read it. */
  FACTORIAL: 0x08,
  /** RW: bit 0 computing (RO), bit 7 raise IRQ_FACT when done (RW). */
  STATUS: 0x20,
  /** RO: pending interrupt causes; INTx is high while any is set. */
  IRQ_STATUS: 0x24,
  /** WO: bits written are set in IRQ_STATUS. */
  IRQ_RAISE: 0x60,
  /** WO: bits written are cleared in IRQ_STATUS. */
  IRQ_ACK: 0x64,
  /** RW, 64-bit: DMA source address. */
  DMA_SRC: 0x80,
  /** RW, 64-bit: DMA destination address. */
  DMA_DST: 0x88,
  /** RW, 64-bit: DMA byte count. */
  DMA_COUNT: 0x90,
  /** RW, 64-bit: DMA command, DMA_* bits. */
  DMA_CMD: 0x98,
} as const;

/** Value of the ID register: version 1.0, 0xed. */
export const EDU_ID = 0x010000ed;
/** STATUS: a factorial is being computed (read-only). */
export const STATUS_COMPUTING = 0x01;
/** STATUS: raise IRQ_FACT when a factorial is done (writable). */
export const STATUS_IRQFACT = 0x80;
/** IRQ_STATUS cause: factorial done. */
export const IRQ_FACT = 0x001;
/** IRQ_STATUS cause: DMA done. */
export const IRQ_DMA = 0x100;
/** DMA_CMD: start a transfer; cleared by the device when it is done. */
export const DMA_RUN = 0x1;
/** DMA_CMD direction: set for device -> RAM, clear for RAM -> device. */
export const DMA_TO_RAM = 0x2;
/** DMA_CMD: raise IRQ_DMA when the transfer is done. */
export const DMA_IRQ = 0x4;
/** Device-side address of the DMA buffer (not a BAR offset). */
export const DMA_BUFFER = 0x40000;
/** Size of the DMA buffer. */
export const DMA_BUFFER_SIZE = 4096;
/** The RAM side of a transfer is masked to 28 bits, as QEMU's default. */
export const DMA_MASK = (1 << 28) - 1;
/** How long a DMA transfer takes, as QEMU's edu (virtual-clock) timer. */
export const DMA_DELAY_MS = 100;
/** Size of BAR0. */
export const EDU_BAR_SIZE = 1 << 20;

/** PCI identity of edu, including the subsystem ids QEMU's PCI core gives it. */
export const EDU_IDENTITY: PciIdentity = {
  vendorId: 0x1234,
  deviceId: 0x11e8,
  revision: 0x10,
  classCode: 0x00ff00,
  subsystemVendorId: 0x1af4,
  subsystemId: 0x1100,
  interruptPin: 1,
};

// Registers below this offset take only 4-byte accesses, from it 4 or 8.
const WIDE_FROM = 0x80;
// How many DMA registers there are: 8 bytes apart, DMA_SRC to DMA_CMD.
const DMA_REGS = (EduReg.DMA_CMD - EduReg.DMA_SRC) / 8 + 1;
const U64 = (1n << 64n) - 1n;
// 34! holds 2^32 as a factor: every factorial from there is 0 mod 2^32, so
// a guest's 0xffffffff costs no four billion multiplications.
const FACT_ZERO_FROM = 34;

// Where DMA register `offset` is kept in Edu's #dma; -1 where none is.
function dmaIndex(offset: number): number {
  const i = (offset - EduReg.DMA_SRC) / 8;
  return Number.isInteger(i) && i >= 0 && i < DMA_REGS ? i : -1;
}

const SRC = dmaIndex(EduReg.DMA_SRC);
const DST = dmaIndex(EduReg.DMA_DST);
const COUNT = dmaIndex(EduReg.DMA_COUNT);
const CMD = dmaIndex(EduReg.DMA_CMD);

/** n! modulo 2^32, as the 32-bit arithmetic of QEMU's edu computes it. */
export function factorial32(n: number): number {
  if (n >= FACT_ZERO_FROM) return 0;
  let r = 1;
  for (let i = n; i > 0; i--) r = Math.imul(r, i);
  return r >>> 0;
}

/**
 * The edu register file, its factorial unit and its DMA engine. INTx only:
 * QEMU 7.2's proxy carries no MSI, so the capability is left out.
 */
export class Edu implements DeviceModel {
  /** Vendor 0x1234, device 0x11e8, class "other", revision 0x10. */
  readonly identity: PciIdentity = EDU_IDENTITY;
  /** BAR0: 1 MiB of 32-bit memory. */
  readonly bars = [{ size: EDU_BAR_SIZE, space: "memory" }] as const;

  readonly #ctx: DeviceContext;
  readonly #buffer = new Uint8Array(DMA_BUFFER_SIZE);
  #liveness = 0;
  #fact = 0;
  #status = 0;
  #irqStatus = 0;
  // The DMA registers, read and written by dmaIndex(offset).
  readonly #dma = new BigUint64Array(DMA_REGS);
  #level = false;
  #factTimer: ReturnType<typeof setTimeout> | undefined;
  #dmaTimer: ReturnType<typeof setTimeout> | undefined;
  // What was already logged since reset: a guest repeating a bad transfer
  // must not flood the remote's log.
  readonly #logged = new Set<string>();

  /** An edu in its power-on state, raising INTx and doing DMA via `ctx`. */
  constructor(ctx: DeviceContext) {
    this.#ctx = ctx;
  }

  /** See DeviceModel.read. Refused widths and holes read as all ones. */
  read(_bar: number, offset: number, data: Uint8Array): void {
    data.fill(0xff);
    if (!this.#validWidth(offset, data.length)) return;
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    if (offset >= WIDE_FROM) {
      const i = dmaIndex(offset);
      if (i < 0) return;
      const v = this.#dma[i];
      if (data.length === 8) view.setBigUint64(0, v, true);
      else view.setUint32(0, Number(v & 0xffffffffn), true);
      return;
    }
    const v = this.#reg32(offset);
    if (v !== null) view.setUint32(0, v, true);
  }

  /** See DeviceModel.write. Refused widths and holes are ignored. */
  write(_bar: number, offset: number, data: Uint8Array): void {
    if (!this.#validWidth(offset, data.length)) return;
    const view = new DataView(data.buffer, data.byteOffset, data.length);
    if (offset >= WIDE_FROM) {
      this.#writeDma(
        offset,
        data.length === 8
          ? view.getBigUint64(0, true)
          : BigInt(view.getUint32(0, true)),
      );
      return;
    }
    const v = view.getUint32(0, true);
    switch (offset) {
      case EduReg.LIVENESS:
        this.#liveness = ~v >>> 0;
        break;
      case EduReg.FACTORIAL:
        // The operand stays put until the result replaces it.
        if (this.#status & STATUS_COMPUTING) break;
        this.#fact = v;
        this.#status |= STATUS_COMPUTING;
        this.#factTimer = setTimeout(() => this.#factDone(), 0);
        break;
      case EduReg.STATUS:
        this.#status = (v & STATUS_IRQFACT)
          ? this.#status | STATUS_IRQFACT
          : this.#status & ~STATUS_IRQFACT;
        break;
      case EduReg.IRQ_RAISE:
        this.#setIrqStatus(this.#irqStatus | v);
        break;
      case EduReg.IRQ_ACK:
        this.#setIrqStatus(this.#irqStatus & ~v);
        break;
    }
  }

  /** Cancels the pending completions: the remote is done with the device. */
  close(): void {
    this.reset();
  }

  /**
   * See DeviceModel.reset: power-on state, pending work dropped, INTx low.
   * (QEMU's edu has no reset handler and keeps its registers across a
   * system reset; DEVICE_RESET here means the state a fresh edu has.)
   */
  reset(): void {
    clearTimeout(this.#factTimer);
    clearTimeout(this.#dmaTimer);
    this.#factTimer = this.#dmaTimer = undefined;
    this.#liveness = this.#fact = this.#status = 0;
    this.#dma.fill(0n);
    this.#buffer.fill(0);
    this.#logged.clear();
    this.#setIrqStatus(0);
  }

  #validWidth(offset: number, n: number): boolean {
    if (n === 4) return (offset & 3) === 0;
    return n === 8 && offset >= WIDE_FROM && (offset & 7) === 0;
  }

  #reg32(offset: number): number | null {
    switch (offset) {
      case EduReg.ID:
        return EDU_ID;
      case EduReg.LIVENESS:
        return this.#liveness;
      case EduReg.FACTORIAL:
        return this.#fact;
      case EduReg.STATUS:
        return this.#status;
      case EduReg.IRQ_STATUS:
        return this.#irqStatus;
      default:
        return null;
    }
  }

  #writeDma(offset: number, v: bigint): void {
    // A transfer in flight freezes its parameters, the command included.
    if (this.#dma[CMD] & BigInt(DMA_RUN)) return;
    const i = dmaIndex(offset);
    if (i < 0) return;
    if (i === CMD) {
      if ((v & BigInt(DMA_RUN)) === 0n) return;
      this.#dmaTimer = setTimeout(() => this.#dmaDone(), DMA_DELAY_MS);
    }
    this.#dma[i] = v;
  }

  #factDone(): void {
    this.#factTimer = undefined;
    this.#fact = factorial32(this.#fact);
    this.#status &= ~STATUS_COMPUTING;
    if (this.#status & STATUS_IRQFACT) {
      this.#setIrqStatus(this.#irqStatus | IRQ_FACT);
    }
  }

  #dmaDone(): void {
    this.#dmaTimer = undefined;
    const dma = this.#dma;
    const toRam = (dma[CMD] & BigInt(DMA_TO_RAM)) !== 0n;
    const bufferSide = toRam ? dma[SRC] : dma[DST];
    const ramSide = toRam ? dma[DST] : dma[SRC];
    const count = dma[COUNT];
    const end = bufferSide + count;
    if (
      end > U64 || bufferSide < BigInt(DMA_BUFFER) ||
      end > BigInt(DMA_BUFFER + DMA_BUFFER_SIZE)
    ) {
      // QEMU's edu stops the whole emulator here (hw_error): refuse the
      // transfer but complete the command, so a driver waiting on it goes on.
      this.#logOnce(
        "range",
        `DMA of ${count} bytes at buffer address 0x${
          bufferSide.toString(16)
        } outside the buffer 0x${DMA_BUFFER.toString(16)}-0x${
          (DMA_BUFFER + DMA_BUFFER_SIZE - 1).toString(16)
        }: transfer refused`,
      );
    } else {
      this.#transfer(toRam, Number(bufferSide) - DMA_BUFFER, ramSide, count);
    }
    dma[CMD] &= ~BigInt(DMA_RUN);
    if (dma[CMD] & BigInt(DMA_IRQ)) {
      this.#setIrqStatus(this.#irqStatus | IRQ_DMA);
    }
  }

  #transfer(toRam: boolean, at: number, ram: bigint, count: bigint): void {
    const gpa = Number(ram & BigInt(DMA_MASK));
    if (BigInt(gpa) !== ram) {
      this.#logOnce(
        "clamp",
        `clamping DMA address 0x${ram.toString(16)} to 0x${gpa.toString(16)}`,
      );
    }
    if (count === 0n) return;
    const bytes = this.#buffer.subarray(at, at + Number(count));
    const ok = toRam
      ? this.#ctx.dmaWrite(gpa, bytes)
      : this.#ctx.dmaRead(gpa, bytes);
    if (ok) return;
    // Unbacked guest addresses read as zeros and swallow writes in QEMU.
    if (!toRam) bytes.fill(0);
    this.#logOnce(
      "unmapped",
      `DMA of ${count} bytes at guest address 0x${
        gpa.toString(16)
      } outside guest RAM`,
    );
  }

  #logOnce(kind: string, line: string): void {
    if (this.#logged.has(kind)) return;
    this.#logged.add(kind);
    this.#ctx.log?.(`edu: ${line} (logged once until reset)`);
  }

  /** INTx follows IRQ_STATUS != 0; only changes go to the context. */
  #setIrqStatus(v: number): void {
    this.#irqStatus = v >>> 0;
    const level = this.#irqStatus !== 0;
    if (level === this.#level) return;
    this.#level = level;
    this.#ctx.setIrq(level);
  }
}

/** The factory the remote's `--device edu` uses. */
export function createEdu(ctx: DeviceContext): DeviceModel {
  return new Edu(ctx);
}
