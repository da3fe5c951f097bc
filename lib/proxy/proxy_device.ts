// The proxy side of mpqemu: what QEMU's x-pci-proxy-dev does, for any
// remote (ours or QEMU's -machine x-remote). It sends guest memory and the
// irqfd pair, sizes the BARs like probe_pci_info, keeps its own PciConfig
// of the device's header to decode guest accesses (as QEMU's proxy runs
// pci_default_write_config), forwards config, BAR and reset requests, and
// routes the INTx pair into KVM or a user-space sink.

import {
  closePeerFd,
  type EventFd,
  EventfdSignaller,
  pollReadable,
  waitReadable,
} from "../../ffi/mod.ts";
import { PollWindow } from "../mpqemu/poll_window.ts";
import {
  type BarSpec,
  CMD_IO,
  CMD_MEMORY,
  NUM_BARS,
  NUM_REGIONS,
  PCI_BAR0,
  PCI_COMMAND,
  PCI_ROM_ADDRESS,
  PciConfig,
  ROM_ADDRESS_MASK,
  ROM_ENABLE,
  ROM_REGION,
} from "../pci/config.ts";
import {
  Channel,
  Cmd,
  cmdName,
  IrqLevelEvent,
  Received,
  type SysmemRegion,
  UINT64_MAX,
} from "../mpqemu/mod.ts";

/** The two KVM VM operations the proxy needs (lib/kvm.ts's Vm has them). */
export interface IrqfdRegistrar {
  /** KVM_IRQFD with KVM_IRQFD_FLAG_RESAMPLE: `irqfd` raises `gsi` as a level. */
  registerIrqfdWithResample(
    irqfd: EventFd,
    resamplefd: EventFd,
    gsi: number,
  ): void;
  /** KVM_IRQFD with KVM_IRQFD_FLAG_DEASSIGN. */
  unregisterIrqfd(irqfd: EventFd, gsi: number): void;
}

/** One implemented BAR as the sizing probe found it. */
export interface BarInfo {
  /** BAR number, 0-5. */
  index: number;
  /** Size in bytes (a power of two). */
  size: number;
  /** Memory space (true) or I/O space (false). */
  memory: boolean;
  /** Present (true) for a 64-bit BAR, which takes the next register too. */
  is64?: true;
  /** Present (true) for a prefetchable memory BAR. */
  prefetchable?: true;
}

/** What probe() learned, the same fields QEMU's probe_pci_info reads. */
export interface ProbeInfo {
  /** Config 0x00. */
  vendorId: number;
  /** Config 0x02. */
  deviceId: number;
  /** Config 0x0a: base class << 8 | sub-class. */
  classId: number;
  /** Config 0x2e. */
  subsystemId: number;
  /** The implemented BARs, in index order. */
  bars: BarInfo[];
  /** The expansion ROM's size in bytes, 0 without one. */
  romSize: number;
}

/** A failed proxy request: names the device, the command and the cause. */
export class ProxyError extends Error {
  /** Builds "NAME: CMD: detail". */
  constructor(name: string, cmd: string, detail: string) {
    super(`${name}: ${cmd}: ${detail}`);
    this.name = "ProxyError";
  }
}

/** Options of a ProxyDevice. */
export interface ProxyOptions {
  /** Name used in errors (default "proxy"). */
  name?: string;
  /**
   * Busy-poll this many microseconds for a reply before sleeping in
   * recvmsg; 0 never polls, as QEMU's x-pci-proxy-dev waits. Unset:
   * adaptive up to 32, so a remote that answers fast costs this side no
   * wake-up (the vCPU waits for the reply either way; KVM's halt polling
   * makes the same trade).
   */
  replyPollMicros?: number;
}

// QEMU probes PCI_NUM_REGIONS (7) registers from 0x10: six BARs plus 0x28,
// which a type 0 header does not decode; we send the same sequence.
const PROBE_REGIONS = 7;
const BAR_TYPE_64 = 0x4;
const BAR_PREFETCH = 0x8;

/**
 * The proxy end of one mpqemu connection.
 *
 * @example
 * ```ts
 * const proxy = new ProxyDevice(sock, { name: "testdev" });
 * proxy.syncSysmem([{ fd: memfd, gpa: 0n, size: 1n << 20n, offset: 0n }]);
 * proxy.setupIrqfd();
 * const info = proxy.probe();
 * proxy.mapBars([0xfebf0000, 0xc000]);
 * const sink = proxy.startUserSink();
 * ```
 */
export class ProxyDevice implements Disposable {
  readonly #name: string;
  readonly #ch: Channel;
  readonly #replyPoll: PollWindow;
  #irq: IrqLevelEvent | null = null;
  #vm: IrqfdRegistrar | null = null;
  #gsi = -1;
  #sink: UserIrqSink | null = null;
  // What the sink signals EOIs through; made with it, closed with us.
  #signaller: EventfdSignaller | null = null;
  // The header as the proxy wrote it, with the BAR layout the probe found;
  // null before probe(), when no BAR can decode.
  #config: PciConfig | null = null;
  readonly #dataView = new DataView(new ArrayBuffer(8));

  /** Takes ownership of `sock`, a connected mpqemu stream socket. */
  constructor(sock: number, opts: ProxyOptions = {}) {
    this.#name = opts.name ?? "proxy";
    this.#ch = new Channel(sock);
    this.#replyPoll = opts.replyPollMicros === undefined
      ? new PollWindow()
      : new PollWindow({ fixedNs: opts.replyPollMicros * 1000 });
  }

  /** The device's name in errors. */
  get name(): string {
    return this.#name;
  }

  /** The irqfd/resamplefd pair sent with SET_IRQFD (null before setup). */
  get irq(): IrqLevelEvent | null {
    return this.#irq;
  }

  /** The GSI the pair is registered on with KVM (-1 when not attached). */
  get gsi(): number {
    return this.#gsi;
  }

  /** True once close() ran. */
  get closed(): boolean {
    return this.#ch.closed;
  }

  // The reply, polled for during the window before sleeping for it.
  #awaitReply(): number {
    const ch = this.#ch;
    const start = performance.now();
    const until = start + this.#replyPoll.ns / 1e6;
    let got: number = ch.receive(true);
    while (got === Received.AGAIN && performance.now() < until) {
      got = ch.receive(true);
    }
    if (got === Received.AGAIN) got = ch.receive();
    this.#replyPoll.update((performance.now() - start) * 1e6);
    return got;
  }

  #request(cmd: string): bigint | null {
    const ch = this.#ch;
    if (ch.closed) throw new ProxyError(this.#name, cmd, "proxy is closed");
    let got: number;
    try {
      ch.send(ch.tx);
      got = this.#awaitReply();
    } catch (e) {
      throw new ProxyError(this.#name, cmd, (e as Error).message);
    }
    if (got !== Received.MESSAGE) {
      throw new ProxyError(this.#name, cmd, "remote closed the connection");
    }
    // A RET carries no fds; any that came are ours to close.
    for (let i = 0; i < ch.rxNumFds; i++) closePeerFd(ch.rxFds[i]);
    if (ch.rx.cmd !== Cmd.RET) {
      throw new ProxyError(
        this.#name,
        cmd,
        `reply is ${cmdName(ch.rx.cmd)}, expected RET`,
      );
    }
    return ch.rx.sizeNumber === 8 ? ch.rx.retValue : null;
  }

  /** SYNC_SYSMEM: hands the remote the guest memory map (no reply). */
  syncSysmem(regions: readonly SysmemRegion[]): void {
    const ch = this.#ch;
    ch.send(ch.tx.encodeSyncSysmem(regions), regions.map((r) => r.fd));
  }

  /**
   * Creates the irqfd/resamplefd pair and sends it with SET_IRQFD. Called
   * again, it replaces the pair: the remote closes its old copies, and a
   * KVM route or user sink moves to the new pair.
   */
  setupIrqfd(): void {
    const fresh = IrqLevelEvent.create();
    try {
      const ch = this.#ch;
      ch.send(ch.tx.encodeEmpty(Cmd.SET_IRQFD), [
        fresh.irqfd,
        fresh.resamplefd,
      ]);
    } catch (e) {
      fresh.close();
      throw e;
    }
    const old = this.#irq;
    const vm = this.#vm;
    const gsi = this.#gsi;
    if (vm !== null && old !== null) vm.unregisterIrqfd(old.irqEvent, gsi);
    this.#irq = fresh;
    old?.close();
    if (vm !== null) {
      vm.registerIrqfdWithResample(fresh.irqEvent, fresh.resampleEvent, gsi);
    }
  }

  #pair(what: string): IrqLevelEvent {
    if (this.#irq === null) {
      throw new ProxyError(this.#name, what, "setupIrqfd() has not run");
    }
    return this.#irq;
  }

  /**
   * Registers the pair with KVM on `gsi`, the GSI of the device's INTx
   * route, so the remote's irqfd writes raise the guest's line directly.
   */
  attachKvm(vm: IrqfdRegistrar, gsi: number): void {
    const irq = this.#pair("attachKvm");
    if (this.#sink !== null) {
      throw new ProxyError(this.#name, "attachKvm", "a user sink is active");
    }
    if (this.#vm !== null) this.detachKvm();
    vm.registerIrqfdWithResample(irq.irqEvent, irq.resampleEvent, gsi);
    this.#vm = vm;
    this.#gsi = gsi;
  }

  /**
   * Follows a change of the INTx route as QEMU's proxy_intx_update does:
   * deassign from the old GSI, assign on the new one.
   */
  moveRoute(gsi: number): void {
    const vm = this.#vm;
    if (vm === null) {
      throw new ProxyError(this.#name, "moveRoute", "not attached to KVM");
    }
    const irq = this.#pair("moveRoute");
    vm.unregisterIrqfd(irq.irqEvent, this.#gsi);
    this.#gsi = -1;
    vm.registerIrqfdWithResample(irq.irqEvent, irq.resampleEvent, gsi);
    this.#gsi = gsi;
  }

  /** Removes the pair from KVM (no-op when not attached). */
  detachKvm(): void {
    const vm = this.#vm;
    if (vm === null || this.#irq === null) return;
    this.#vm = null;
    const gsi = this.#gsi;
    this.#gsi = -1;
    vm.unregisterIrqfd(this.#irq.irqEvent, gsi);
  }

  /**
   * Delivers interrupts to the caller instead of KVM, for machines without
   * /dev/kvm: see UserIrqSink.
   */
  startUserSink(): UserIrqSink {
    this.#pair("startUserSink");
    if (this.#vm !== null) {
      throw new ProxyError(this.#name, "startUserSink", "attached to KVM");
    }
    if (this.#sink === null) {
      const signaller = new EventfdSignaller();
      this.#signaller = signaller;
      this.#sink = new UserIrqSink(this, signaller);
    }
    return this.#sink;
  }

  /** PCI_CFGREAD: the value, or 0xffffffff when the remote refused. */
  configRead(addr: number, len: number): number {
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGREAD, addr, 0, len);
    const ret = this.#request("PCI_CFGREAD");
    // Like QEMU, a failed read (UINT64_MAX) truncates to all ones.
    return ret === null ? 0xffffffff : Number(ret & 0xffffffffn);
  }

  /**
   * PCI_CFGWRITE, after applying the write to the local config so BAR and
   * command changes take effect in the decoder.
   */
  configWrite(addr: number, val: number, len: number): void {
    if (
      addr >= 0 && (len === 1 || len === 2 || len === 4) && addr + len <= 256
    ) {
      this.#config?.write(addr, val, len);
    }
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, addr, val, len);
    this.#request("PCI_CFGWRITE");
  }

  /**
   * Reads identity registers and sizes every BAR exactly as QEMU's
   * probe_pci_info does: read, write all ones, read back, restore. Unlike
   * QEMU 7.2's proxy it reads a 64-bit BAR's type and pairs the registers,
   * and sizes the expansion ROM (0x30) too, which QEMU 7.2's never reaches.
   */
  probe(): ProbeInfo {
    const info: ProbeInfo = {
      vendorId: this.configRead(0x00, 2),
      deviceId: this.configRead(0x02, 2),
      classId: this.configRead(0x0a, 2),
      subsystemId: this.configRead(0x2e, 2),
      bars: [],
      romSize: 0,
    };
    const orig: number[] = [];
    const masks: number[] = [];
    for (let i = 0; i < PROBE_REGIONS; i++) {
      const sized = this.#size(PCI_BAR0 + 4 * i, 0xffffffff);
      orig.push(sized.orig);
      masks.push(sized.mask);
    }
    const rom = this.#size(PCI_ROM_ADDRESS, ROM_ADDRESS_MASK);
    const romMask = (rom.mask & ROM_ADDRESS_MASK) >>> 0;
    if (romMask !== 0) info.romSize = (~romMask + 1) >>> 0;
    const bars: (BarSpec | null)[] = new Array(NUM_BARS).fill(null);
    for (let i = 0; i < NUM_BARS; i++) {
      const mask = masks[i];
      const memory = (mask & 1) === 0;
      const is64 = memory && (mask & 0x6) === BAR_TYPE_64 && i + 1 < NUM_BARS;
      const low = (mask & 0xfffffff0) >>> 0;
      const size = is64 ? size64(low, masks[i + 1]) : (~low + 1) >>> 0;
      if (size === 0) continue;
      const bar: BarInfo = { index: i, size, memory };
      if (is64) bar.is64 = true;
      if (memory && (mask & BAR_PREFETCH) !== 0) bar.prefetchable = true;
      info.bars.push(bar);
      bars[i] = {
        size,
        space: memory ? "memory" : "io",
        is64: bar.is64,
        prefetchable: bar.prefetchable,
      };
      if (is64) i++;
    }
    const config = new PciConfig(
      { vendorId: info.vendorId || 1, deviceId: info.deviceId },
      bars,
      { rom: info.romSize === 0 ? null : { size: info.romSize } },
    );
    orig.slice(0, NUM_BARS).forEach((v, i) =>
      config.write(PCI_BAR0 + 4 * i, v, 4)
    );
    config.write(PCI_ROM_ADDRESS, rom.orig, 4);
    config.write(PCI_COMMAND, this.configRead(PCI_COMMAND, 2), 2);
    this.#config = config;
    return info;
  }

  // One register sized as probe_pci_info does: read it, write `ones`, read
  // back what sticks, restore it. Past the local config, which probe()
  // builds from the result.
  #size(reg: number, ones: number): { orig: number; mask: number } {
    const orig = this.configRead(reg, 4);
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, reg, ones, 4);
    this.#request("PCI_CFGWRITE");
    const mask = this.configRead(reg, 4);
    this.#ch.tx.encodeCfg(Cmd.PCI_CFGWRITE, reg, orig, 4);
    this.#request("PCI_CFGWRITE");
    return { orig, mask };
  }

  /**
   * Programs each probed BAR with its base from `bases` (by BAR index) and
   * enables I/O and memory decoding, as firmware would. The expansion ROM
   * is mapped and enabled when `bases[6]` (ROM_REGION) gives it a base.
   */
  mapBars(bases: readonly (number | undefined)[]): void {
    const config = this.#probed("mapBars");
    let command = config.command;
    for (let i = 0; i < NUM_BARS; i++) {
      const bar = config.bars[i];
      if (bar === null) continue;
      const base = bases[i];
      if (base === undefined) {
        throw new ProxyError(this.#name, "mapBars", `BAR${i} needs a base`);
      }
      if (base % bar.size !== 0) {
        throw new ProxyError(
          this.#name,
          "mapBars",
          `BAR${i} needs a base aligned to its size 0x${bar.size.toString(16)}`,
        );
      }
      this.configWrite(PCI_BAR0 + 4 * i, base % 2 ** 32, 4);
      if (bar.is64) {
        this.configWrite(PCI_BAR0 + 4 * i + 4, Math.floor(base / 2 ** 32), 4);
      }
      command |= bar.space === "memory" ? CMD_MEMORY : CMD_IO;
    }
    const rom = config.rom;
    const romBase = bases[ROM_REGION];
    if (rom !== null && romBase !== undefined) {
      if (romBase % rom.size !== 0 || romBase >= 2 ** 32) {
        throw new ProxyError(
          this.#name,
          "mapBars",
          `the ROM needs a 32-bit base aligned to its size 0x${
            rom.size.toString(16)
          }`,
        );
      }
      this.configWrite(PCI_ROM_ADDRESS, (romBase | ROM_ENABLE) >>> 0, 4);
      command |= CMD_MEMORY;
    }
    this.configWrite(PCI_COMMAND, command, 2);
  }

  #probed(cmd: string): PciConfig {
    if (this.#config === null) {
      throw new ProxyError(this.#name, cmd, "probe() has not run");
    }
    return this.#config;
  }

  /**
   * Where BAR `index` (or the ROM, ROM_REGION) decodes now: its base, or -1
   * when not decoding.
   */
  barBase(index: number): number {
    return this.#config?.barAddress(index) ?? -1;
  }

  /** BAR_READ at `offset` into BAR `index` or the ROM (must be decoding). */
  barRead(index: number, offset: number, size: number): bigint {
    const base = this.#decodingBase(index, "BAR_READ");
    this.#ch.tx.encodeBar(
      Cmd.BAR_READ,
      BigInt(base + offset),
      0n,
      size,
      this.#config!.regionIsMemory(index),
    );
    return this.#request("BAR_READ") ?? UINT64_MAX;
  }

  /** BAR_WRITE of `value` at `offset` into BAR `index` (must be decoding). */
  barWrite(index: number, offset: number, value: bigint, size: number): void {
    const base = this.#decodingBase(index, "BAR_WRITE");
    this.#ch.tx.encodeBar(
      Cmd.BAR_WRITE,
      BigInt(base + offset),
      value,
      size,
      this.#config!.regionIsMemory(index),
    );
    this.#request("BAR_WRITE");
  }

  #decodingBase(index: number, cmd: string): number {
    const base = this.barBase(index);
    if (base < 0) {
      throw new ProxyError(
        this.#name,
        cmd,
        `BAR${index} is not implemented or not decoding`,
      );
    }
    return base;
  }

  #access(
    addr: number,
    memory: boolean,
    isWrite: boolean,
    data: Uint8Array,
  ): boolean {
    const config = this.#config;
    if (config === null) return false;
    for (let i = 0; i < NUM_REGIONS; i++) {
      if (config.regionIsMemory(i) !== memory) continue;
      const base = config.barAddress(i);
      if (base < 0 || addr < base || addr >= base + config.regionSize(i)) {
        continue;
      }
      const len = data.length;
      const dv = this.#dataView;
      const tx = this.#ch.tx;
      if (isWrite) {
        dv.setBigUint64(0, 0n);
        for (let b = 0; b < len; b++) dv.setUint8(b, data[b]);
        tx.encodeBar(
          Cmd.BAR_WRITE,
          BigInt(addr),
          dv.getBigUint64(0, true),
          len,
          memory,
        );
        this.#request("BAR_WRITE");
      } else {
        tx.encodeBar(Cmd.BAR_READ, BigInt(addr), 0n, len, memory);
        dv.setBigUint64(0, this.#request("BAR_READ") ?? UINT64_MAX, true);
        for (let b = 0; b < len; b++) data[b] = dv.getUint8(b);
      }
      return true;
    }
    return false;
  }

  /**
   * Forwards a guest MMIO access if it falls in a decoding memory BAR;
   * reads fill `data`. False when no BAR claims the address.
   */
  handleMmio(addr: bigint, isWrite: boolean, data: Uint8Array): boolean {
    return this.#access(Number(addr), true, isWrite, data);
  }

  /** Forwards a guest port access if it falls in a decoding I/O BAR. */
  handlePio(port: number, isWrite: boolean, data: Uint8Array): boolean {
    return this.#access(port, false, isWrite, data);
  }

  /**
   * DEVICE_RESET, awaiting the reply; the local config is reset as the
   * device's is (BARs unprogrammed, command 0).
   */
  reset(): void {
    this.#ch.tx.encodeEmpty(Cmd.DEVICE_RESET);
    this.#request("DEVICE_RESET");
    this.#config?.reset();
  }

  /**
   * Detaches from KVM, closes the socket, the irqfd pair and the user
   * sink's EOI signaller; idempotent.
   */
  close(): void {
    try {
      this.detachKvm();
    } finally {
      this.#sink = null;
      this.#signaller?.close();
      this.#signaller = null;
      this.#irq?.close();
      this.#irq = null;
      if (!this.#ch.closed) this.#ch.close();
    }
  }

  /** Closes (for `using`). */
  [Symbol.dispose](): void {
    this.close();
  }
}

/**
 * Interrupt delivery without KVM: waits for the remote to assert the irqfd
 * and lets the caller signal end-of-interrupt on the resamplefd, the way
 * KVM's level-triggered irqfd does after the guest's EOI. The remote then
 * re-asserts if its level is still high.
 */
export class UserIrqSink {
  readonly #proxy: ProxyDevice;
  readonly #signaller: EventfdSignaller;
  #delivered = 0;

  /**
   * Use ProxyDevice.startUserSink(): the proxy owns the sink and the
   * `signaller` its EOIs go through, and closes both.
   */
  constructor(proxy: ProxyDevice, signaller: EventfdSignaller) {
    this.#proxy = proxy;
    this.#signaller = signaller;
  }

  /** Assertions delivered so far. */
  get delivered(): number {
    return this.#delivered;
  }

  #irq(): IrqLevelEvent {
    const irq = this.#proxy.irq;
    if (irq === null) {
      throw new ProxyError(this.#proxy.name, "sink", "proxy is closed");
    }
    return irq;
  }

  /** Non-blocking: true (and consumed) if an assertion is pending. */
  poll(): boolean {
    return this.#take(this.#irq());
  }

  #take(irq: IrqLevelEvent): boolean {
    // drainIrq never waits: O_NONBLOCK lives in the file description we
    // share with the remote, and QEMU's remote clears it on fds it receives
    // (qio_channel_socket).
    if (irq.drainIrq() === 0n) return false;
    this.#delivered++;
    return true;
  }

  /** Blocks up to `timeoutMs` for an assertion; true when one came. */
  wait(timeoutMs: number): boolean {
    const irq = this.#irq();
    if (this.#take(irq)) return true;
    return waitReadable(irq.irqfd, timeoutMs) && this.#take(irq);
  }

  /** Like wait() without blocking the JS thread. */
  async waitAsync(timeoutMs: number): Promise<boolean> {
    const irq = this.#irq();
    if (this.#take(irq)) return true;
    return await pollReadable(irq.irqfd, timeoutMs) && this.#take(irq);
  }

  /** End of interrupt: the line is lowered; the remote re-asserts if needed. */
  eoi(): void {
    this.#irq().signalResample(this.#signaller);
  }
}

// The size a 64-bit BAR's two sizing masks give: 2^64 minus the address
// bits they keep, computed without BigInt (exact for the sizes PCI allows
// below 2^53).
function size64(low: number, high: number): number {
  return (0x1_0000_0000 - high) * 0x1_0000_0000 - low;
}
