// One device of the remote: its model, config space, guest memory, INTx
// wiring into the IOHUB and BAR decoding, plus the dispatch switch that
// validates each request of its mpqemu channel and answers it the way QEMU
// 7.2's remote does.

import { closePeerFd } from "../../ffi/mod.ts";
import type { DeviceContext, DeviceModel } from "../pci/device.ts";
import { isThenable } from "../pci/validate.ts";
import { DeviceStats } from "./device_stats.ts";
import { GuestMemory } from "./guest_memory.ts";
import type { Iohub } from "./iohub.ts";
import {
  BAR_UNMAPPED,
  CMD_INTX_DISABLE,
  CONFIG_SIZE,
  ConfigEffect,
  IO_SPACE_SIZE,
  NUM_REGIONS,
  PciConfig,
  ROM_REGION,
} from "../pci/config.ts";
import {
  type Channel,
  Cmd,
  cmdName,
  IrqLevelEvent,
  ProtocolError,
  type SysmemRegion,
  UINT64_MAX,
} from "../mpqemu/mod.ts";

/** What handle() asks of the loop after a message. */
export const Outcome = {
  /** Keep serving. */
  OK: 0,
  /** An access was refused (answered with UINT64_MAX); keep serving. */
  REFUSED: 1,
} as const;

const SIZE_INDEX = [-1, 0, 1, -1, 2, -1, -1, -1, 3];
const SIZES = [1, 2, 4, 8];
const REGIONS = Array.from({ length: NUM_REGIONS }, (_, i) => i);

/** What a DeviceHost is built from. */
export interface DeviceHostOptions {
  /** The device's name in logs. */
  id: string;
  /** Its PIRQ in the IOHUB. */
  pirq: number;
  /** Builds the model (the factory, validated) from its context. */
  build: (ctx: DeviceContext) => DeviceModel;
  /** The IOHUB its INTx goes to. */
  iohub: Iohub;
  /** Where the model's own lines go (prefixed with the id). */
  log?: (line: string) => void;
  /** The module's own --device options (ctx.params). */
  params?: Readonly<Record<string, string>>;
  /** Told about every INTx edge, the factory's own included (tracing). */
  onIntx?: (level: boolean) => void;
}

/**
 * A device model plus everything the remote keeps for it. The model lives
 * as long as the remote; a channel is attached once its peer is there.
 * handle() answers the message in the channel's `rx`; it throws
 * ProtocolError for messages that must close the channel, after releasing
 * any fds they carried.
 */
export class DeviceHost implements Disposable {
  /** The device's name in logs. */
  readonly id: string;
  /** Its PIRQ in the IOHUB. */
  readonly pirq: number;
  /** Its config space. */
  readonly config: PciConfig;
  /** The model. */
  readonly model: DeviceModel;
  /** Guest RAM from SYNC_SYSMEM. */
  readonly memory: GuestMemory = new GuestMemory();
  /** How many accesses were refused since the channel opened. */
  get refusals(): number {
    return this.stats.refusals;
  }

  /** The last refused access, for the log. */
  lastRefusal = "";
  /**
   * The region (BAR index, ROM_REGION for the ROM) and offset the last BAR
   * access decoded to; region -1 when it hit none. For the trace.
   */
  lastRegion = -1;
  /** See lastRegion. */
  lastOffset = 0;
  /** Requests, refusals and service times, for the control socket. */
  readonly stats: DeviceStats = new DeviceStats();

  readonly #iohub: Iohub;
  readonly #barBase = new Array<number>(NUM_REGIONS).fill(BAR_UNMAPPED);
  readonly #barSize: number[];
  readonly #barMemory: boolean[];
  #channel: Channel | null = null;
  #rxData: Uint8Array[] = [];
  #txData: Uint8Array[] = [];
  #level = false;
  #closed = false;
  #line = false;
  // False while the factory runs: its config space is built from what the
  // factory returns, so a level it sets meanwhile waits for it.
  #built = false;
  #warnedLateRead = false;
  readonly #log: ((line: string) => void) | undefined;
  readonly #onIntx: ((level: boolean) => void) | undefined;

  /**
   * Builds the model with `build`, given the context that wires it to the
   * IOHUB on its PIRQ and to this host's guest memory (see DeviceHostOptions).
   */
  constructor(
    { id, pirq, build, iohub, log, params = {}, onIntx }: DeviceHostOptions,
  ) {
    this.id = id;
    this.pirq = pirq;
    this.#iohub = iohub;
    this.#log = log;
    this.#onIntx = onIntx;
    this.model = build({
      setIrq: (level) => {
        if (!this.#closed) this.#setLevel(level);
      },
      dmaRead: (gpa: number | bigint, dst: ArrayBufferView) =>
        !this.#closed &&
        this.memory.read(dmaAddress(gpa), dmaBytes("dmaRead", dst)),
      dmaWrite: (gpa: number | bigint, src: ArrayBufferView) =>
        !this.#closed &&
        this.memory.write(dmaAddress(gpa), dmaBytes("dmaWrite", src)),
      log: (line) => log?.(`${id}: ${line}`),
      params: Object.freeze({ ...params }),
    });
    this.config = new PciConfig(this.model.identity, this.model.bars, {
      rom: this.model.rom,
      capabilities: this.model.capabilities,
    });
    this.#barSize = REGIONS.map((i) => this.config.regionSize(i));
    this.#barMemory = REGIONS.map((i) => this.config.regionIsMemory(i));
    this.#built = true;
    this.#updateLine();
  }

  /** Takes ownership of the channel to the device's proxy. */
  attach(channel: Channel): void {
    if (this.#channel !== null) throw new Error(`${this.id}: already attached`);
    this.#channel = channel;
    // Access views over the wire buffers, one per access size, so a BAR
    // access hands the model its bytes without allocating.
    this.#rxData = SIZES.map((n) => channel.rx.barValueBytes(n));
    this.#txData = SIZES.map((n) => channel.tx.retValueBytes(n));
  }

  /** The connection to the proxy (owned: closed by close()). */
  get channel(): Channel {
    if (this.#channel === null) throw new Error(`${this.id}: no channel`);
    return this.#channel;
  }

  /** Whether a channel is attached. */
  get attached(): boolean {
    return this.#channel !== null;
  }

  /** The device's own INTx level (before Interrupt Disable). */
  get level(): boolean {
    return this.#level;
  }

  /** Answers the message in the channel's `rx` (fds included). */
  handle(): number {
    const ch = this.channel;
    const rx = ch.rx;
    if (rx.cmd !== Cmd.SET_IRQFD && rx.cmd !== Cmd.SYNC_SYSMEM) {
      // QEMU's rules let other requests carry fds; nothing uses them, and
      // they are ours once received: close them before anything can throw.
      this.#closeFds();
    }
    switch (rx.cmd) {
      case Cmd.PCI_CFGREAD:
      case Cmd.PCI_CFGWRITE:
        return this.#config(rx.cmd === Cmd.PCI_CFGWRITE);
      case Cmd.BAR_READ:
      case Cmd.BAR_WRITE:
        return this.#bar(rx.cmd === Cmd.BAR_WRITE);
      case Cmd.SET_IRQFD:
        this.#iohub.setIrqfd(
          this.pirq,
          IrqLevelEvent.fromPeer(ch.rxFds[0], ch.rxFds[1]),
        );
        return Outcome.OK;
      case Cmd.SYNC_SYSMEM:
        this.#syncSysmem();
        return Outcome.OK;
      case Cmd.DEVICE_RESET:
        this.reset();
        ch.sendRet(null);
        return Outcome.OK;
      default:
        // RET is valid on the wire but is never a request.
        throw new ProtocolError(cmdName(rx.cmd), "cmd", "not a request");
    }
  }

  /** Resets the model and config space; INTx goes low. */
  reset(): void {
    this.model.reset?.();
    this.config.reset();
    this.#decodeBars();
    this.#updateLine();
  }

  #closeFds(): void {
    const ch = this.channel;
    for (let i = 0; i < ch.rxNumFds; i++) closePeerFd(ch.rxFds[i]);
  }

  #config(write: boolean): number {
    const rx = this.channel.rx;
    const addr = rx.cfgAddr;
    const len = rx.cfgLen;
    // QEMU's bound: the 4-byte value field must fit, whatever len says.
    if (addr + 4 > CONFIG_SIZE) {
      return this.#refuseConfig(
        `addr 0x${addr.toString(16)} + 4 passes ${CONFIG_SIZE}`,
      );
    }
    if (len === 1 || len === 2 || len === 4) {
      if (!write) {
        this.#retNumber(this.config.read(addr, len));
        return Outcome.OK;
      }
      this.#configEffect(this.config.write(addr, rx.cfgVal, len));
      this.#retNumber(0);
      return Outcome.OK;
    }
    return this.#oddConfig(write, addr, len, rx.cfgVal);
  }

  // Lengths other than 1, 2 and 4 are QEMU 7.2's too, byte by byte, where
  // its pci_default_read/write_config take them: a read of 0 or 3 bytes, a
  // write of len bytes (zeros past the 4 of the value, none for len <= 0)
  // whose end, computed unsigned as QEMU asserts it, stays inside config
  // space. Where QEMU would abort, the access is refused.
  #oddConfig(write: boolean, addr: number, len: number, val: number): number {
    if (!write) {
      if (len !== 0 && len !== 3) {
        return this.#refuseConfig(`len ${len} is not 1, 2 or 4`);
      }
      this.#retNumber(len === 0 ? 0 : this.config.read(addr, len));
      return Outcome.OK;
    }
    if (((addr + len) >>> 0) > CONFIG_SIZE) {
      return this.#refuseConfig(
        `len ${len} at 0x${addr.toString(16)} passes ${CONFIG_SIZE}`,
      );
    }
    for (let i = 0; i < len; i++) {
      const byte = i < 4 ? (val >>> (8 * i)) & 0xff : 0;
      this.#configEffect(this.config.write(addr + i, byte, 1));
    }
    this.#retNumber(0);
    return Outcome.OK;
  }

  #configEffect(effect: number): void {
    if (effect & ConfigEffect.BARS) this.#decodeBars();
    if (effect & ConfigEffect.INTX) this.#updateLine();
  }

  #refuseConfig(why: string): number {
    this.lastRefusal = `${cmdName(this.channel.rx.cmd)}: ${why}`;
    this.channel.sendRet(UINT64_MAX);
    this.stats.refusals++;
    return Outcome.REFUSED;
  }

  #bar(write: boolean): number {
    const ch = this.channel;
    const rx = ch.rx;
    const size = rx.barSize;
    const idx = size <= 8 ? SIZE_INDEX[size] : -1;
    const addr = rx.barAddrNumber;
    const bar = idx < 0 || addr < 0
      ? -1
      : this.#decode(addr, size, rx.barMemory);
    this.lastRegion = bar;
    if (bar < 0) {
      this.lastRefusal = `${cmdName(rx.cmd)}: ${
        idx < 0
          ? `size ${size} is not 1, 2, 4 or 8`
          : `${size} bytes at ${rx.barMemory ? "memory" : "I/O"} 0x${
            rx.barAddr.toString(16)
          } hit no BAR`
      }`;
      this.stats.refusals++;
      // QEMU's remote reads unused I/O ports as all ones of the access's
      // width (8 bytes: UINT64_MAX) and takes writes to them with 0; any
      // other access it fails with UINT64_MAX.
      const unusedPort = !rx.barMemory && idx >= 0 && addr >= 0 &&
        addr + size <= IO_SPACE_SIZE;
      if (unusedPort && write) this.#retNumber(0);
      else if (unusedPort && size < 8) this.#retNumber(2 ** (8 * size) - 1);
      else ch.sendRet(UINT64_MAX);
      return Outcome.REFUSED;
    }
    const offset = addr - this.#barBase[bar];
    this.lastOffset = offset;
    if (write) {
      // A ROM is read-only: QEMU drops writes to it, so the model never
      // sees one.
      if (bar !== ROM_REGION) this.model.write(bar, offset, this.#rxData[idx]);
      this.#retNumber(0);
    } else {
      ch.tx.encodeRetNumber(0);
      const late: unknown = this.model.read(bar, offset, this.#txData[idx]);
      ch.send(ch.tx);
      if (late !== undefined) this.#lateRead(late);
    }
    const fault = this.memory.takeFault();
    if (fault !== null) {
      // The access itself was answered; the device saw its DMA fail.
      this.lastRefusal = `${cmdName(rx.cmd)}: DMA refused: ${fault}`;
      this.stats.refusals++;
      return Outcome.REFUSED;
    }
    return Outcome.OK;
  }

  // An async read() answers with what `data` held when it returned: say
  // so once, since the peer sees no error.
  #lateRead(returned: unknown): void {
    if (this.#warnedLateRead || !isThenable(returned)) return;
    this.#warnedLateRead = true;
    this.#log?.(
      `${this.id}: read() returned a promise: the peer got what data held when it returned (a read must fill data before returning)`,
    );
  }

  /** The BAR holding all of [addr, addr+size) in the right space, or -1. */
  #decode(addr: number, size: number, memory: boolean): number {
    for (let i = 0; i < NUM_REGIONS; i++) {
      const base = this.#barBase[i];
      if (
        base !== BAR_UNMAPPED && this.#barMemory[i] === memory &&
        addr >= base &&
        addr + size <= base + this.#barSize[i]
      ) {
        return i;
      }
    }
    return -1;
  }

  #decodeBars(): void {
    for (let i = 0; i < NUM_REGIONS; i++) {
      this.#barBase[i] = this.config.barAddress(i);
    }
  }

  #retNumber(value: number): void {
    this.channel.send(this.channel.tx.encodeRetNumber(value));
  }

  #syncSysmem(): void {
    const ch = this.channel;
    const rx = ch.rx;
    const specs: SysmemRegion[] = [];
    for (let i = 0; i < ch.rxNumFds; i++) {
      specs.push({
        gpa: rx.sysmemGpa(i),
        size: rx.sysmemSize(i),
        offset: rx.sysmemOffset(i),
        fd: ch.rxFds[i],
      });
    }
    try {
      this.memory.replace(specs);
    } finally {
      // The mappings keep the memory; the fds are no longer needed.
      this.#closeFds();
    }
  }

  #setLevel(level: boolean): void {
    this.#level = level;
    if (this.#built) this.#updateLine();
  }

  /** Forwards INTx changes to the IOHUB, held low by Interrupt Disable. */
  #updateLine(): void {
    this.config.setInterruptStatus(this.#level);
    const line = this.#level && (this.config.command & CMD_INTX_DISABLE) === 0;
    if (line === this.#line) return;
    this.#line = line;
    this.#iohub.setIrq(this.pirq, line);
    this.#onIntx?.(line);
  }

  /**
   * Tells the model it is done (close(), for its timers), releases the
   * PIRQ, unmaps guest memory and closes the channel. From then on the
   * model's calls to its context do nothing, so work it left on a timer
   * cannot reach a host whose memory and PIRQ are gone.
   */
  close(): void {
    this.#closed = true;
    try {
      this.model.close?.();
    } finally {
      try {
        this.#iohub.clear(this.pirq);
      } finally {
        try {
          this.memory.close();
        } finally {
          this.#channel?.close();
          this.#channel = null;
        }
      }
    }
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

// A 64-bit register read with getLe64 is a bigint: take it as an address
// too. One past 2^53 cannot be guest memory here (a region's end is a
// safe integer), so it becomes an address no region holds.
function dmaAddress(gpa: number | bigint): number {
  if (typeof gpa === "number") return gpa;
  return gpa <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(gpa) : -1;
}

// Bytes are bytes: any typed array or DataView is viewed as a Uint8Array.
// Anything else (a plain array, whose elements DMA cannot reach) is the
// device's mistake, the same one however the peer made its guest RAM.
function dmaBytes(call: string, buf: ArrayBufferView): Uint8Array {
  if (buf instanceof Uint8Array) return buf;
  if (ArrayBuffer.isView(buf)) {
    return new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  }
  const kind = Array.isArray(buf)
    ? "an Array"
    : buf === null
    ? "null"
    : typeof buf === "object"
    ? `a ${(buf as object).constructor?.name ?? "object"}`
    : typeof buf;
  throw new TypeError(
    `${call}: the buffer must be a Uint8Array (or another typed array or DataView), not ${kind}`,
  );
}
