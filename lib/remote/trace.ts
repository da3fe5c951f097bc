// `--trace FILE`: one JSON object per line for every message a device
// serves, every INTx edge and resample, and every channel opened or
// closed. Lines are buffered and written in batches; nothing is done at
// all when tracing is off (the remote holds no Tracer then).
//
// The trace must never cost a device its service: the file is written
// without blocking (a pipe whose reader lags gets what fits, the rest waits
// in a bounded queue and is dropped past it), a failed write (a full disk)
// ends tracing with one log line, and so does reaching the size limit,
// which a peer flooding requests would otherwise push without end. What is
// not written is counted and said when the trace closes.

import {
  O_CREAT,
  O_NONBLOCK,
  O_TRUNC,
  O_WRONLY,
  openPath,
  OwnedFd,
  WOULD_BLOCK,
  writeSome,
} from "../../ffi/mod.ts";
import type { LogSink } from "../log.ts";
import { Cmd, cmdName, type Message } from "../mpqemu/mod.ts";

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;
/** What Linux writes to a pipe atomically. */
const PIPE_BUF = 4096;
/** Bytes waiting for a lagging reader beyond which records are dropped. */
const MAX_QUEUED = 4 * 1024 * 1024;
/** The trace's size limit unless TracerOptions.maxBytes says otherwise. */
export const TRACE_MAX_BYTES = 1024 * 1024 * 1024;

/** How a Tracer writes and where it reports trouble. */
export interface TracerOptions {
  /** Where the trace says it stopped or dropped records. */
  log?: LogSink;
  /** Bytes after which tracing stops (default TRACE_MAX_BYTES). */
  maxBytes?: number;
}

/** Writes trace records to a file, never blocking and never throwing. */
export class Tracer implements Disposable {
  readonly #path: string;
  readonly #file: OwnedFd;
  readonly #log: LogSink;
  readonly #maxBytes: number;
  readonly #start = performance.now();
  readonly #encoder = new TextEncoder();
  #lines: string[] = [];
  #bytes = 0;
  // Bytes of a batch the file did not take yet (a lagging pipe reader).
  #unwritten: Uint8Array | null = null;
  #written = 0;
  #dropped = 0;
  #stopped = false;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Creates (or truncates) `path`; throws SysError naming it. A FIFO must
   * have its reader already (ENXIO otherwise).
   */
  constructor(path: string, options: TracerOptions = {}) {
    this.#path = path;
    this.#log = options.log ?? (() => {});
    this.#maxBytes = options.maxBytes ?? TRACE_MAX_BYTES;
    this.#file = new OwnedFd(
      openPath(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK, 0o644),
    );
  }

  /** Microseconds since the trace began, for a record's `t`. */
  now(): number {
    return Math.round((performance.now() - this.#start) * 1000);
  }

  /**
   * Records a served request: `rx` the request, `tx` the reply (for reads),
   * `t` when it started, `us` how long it took, whether it was refused
   * (out of range, or hitting no BAR), and for a BAR access the region and
   * offset it decoded to (region -1: none). Addresses, offsets and values
   * are hex strings.
   */
  message(
    dev: string,
    rx: Message,
    tx: Message,
    t: number,
    us: number,
    refused: boolean,
    region = -1,
    offset = 0,
  ): void {
    const rec: Record<string, unknown> = { t, dev, cmd: cmdName(rx.cmd) };
    switch (rx.cmd) {
      case Cmd.PCI_CFGREAD:
      case Cmd.PCI_CFGWRITE:
        rec.addr = hex(rx.cfgAddr);
        rec.size = rx.cfgLen;
        rec.value = rx.cmd === Cmd.PCI_CFGWRITE
          ? hex(rx.cfgVal)
          : hex(retNumber(tx));
        break;
      case Cmd.BAR_READ:
      case Cmd.BAR_WRITE:
        rec.addr = `0x${rx.barAddr.toString(16)}`;
        rec.size = rx.barSize;
        rec.space = rx.barMemory ? "memory" : "io";
        if (region >= 0) {
          rec.bar = region;
          rec.offset = hex(offset);
        }
        rec.value = `0x${
          (rx.cmd === Cmd.BAR_WRITE ? rx.barVal : tx.retValue)
            .toString(16)
        }`;
        break;
    }
    if (refused) rec.refused = true;
    rec.us = Math.round(us * 100) / 100;
    this.record(rec);
  }

  /** Records an event (`event` names it) of device `dev` with `fields`. */
  event(
    dev: string,
    event: string,
    fields: Record<string, unknown> = {},
  ): void {
    this.record({ t: this.now(), dev, event, ...fields });
  }

  /** Queues one record; written within FLUSH_MS or FLUSH_BYTES. */
  record(rec: Record<string, unknown>): void {
    if (this.#stopped) {
      this.#dropped++;
      return;
    }
    const line = JSON.stringify(rec) + "\n";
    if (this.#bytes + (this.#unwritten?.length ?? 0) >= MAX_QUEUED) {
      if (this.#dropped++ === 0) {
        this.#log(
          `trace ${this.#path}: its reader lags ${MAX_QUEUED} bytes behind: records are dropped (counted) until it catches up`,
          "error",
        );
      }
      return;
    }
    this.#lines.push(line);
    this.#bytes += line.length;
    // While a lagging reader holds a batch up, its timer retries.
    if (this.#bytes >= FLUSH_BYTES && this.#unwritten === null) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Writes what is queued, as far as the file takes it now. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    while (!this.#stopped) {
      if (this.#unwritten === null) {
        if (this.#lines.length === 0) return;
        this.#unwritten = this.#encoder.encode(this.#lines.join(""));
        this.#lines = [];
        this.#bytes = 0;
      }
      const bytes = this.#unwritten;
      let off = 0;
      try {
        while (off < bytes.length) {
          const n = writeSome(
            this.#file.fd,
            bytes.subarray(off, wholeLinesEnd(bytes, off)),
          );
          if (n === WOULD_BLOCK) break;
          off += n;
        }
      } catch (e) {
        this.#stop((e as Error).message);
        return;
      }
      this.#written += off;
      this.#unwritten = off < bytes.length ? bytes.subarray(off) : null;
      if (this.#written >= this.#maxBytes) {
        this.#stop(`reached its limit of ${this.#maxBytes} bytes`);
        return;
      }
      if (this.#unwritten !== null) {
        this.#timer = setTimeout(() => this.flush(), FLUSH_MS);
        return;
      }
    }
  }

  // Ends tracing for good: what is queued and every later record count as
  // dropped.
  #stop(why: string): void {
    this.#stopped = true;
    this.#dropQueued();
    this.#log(
      `trace ${this.#path}: ${why}: tracing stopped (the devices go on)`,
      "error",
    );
  }

  // Counts what is queued (whole lines) as dropped, and forgets it.
  #dropQueued(): void {
    this.#dropped += this.#lines.length +
      (this.#unwritten === null ? 0 : countLines(this.#unwritten));
    this.#lines = [];
    this.#bytes = 0;
    this.#unwritten = null;
  }

  /** Writes what the file takes now, says what was dropped, closes it. */
  close(): void {
    if (this.#file.closed) return;
    this.flush();
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#dropQueued();
    if (this.#dropped > 0) {
      this.#log(
        `trace ${this.#path}: ${this.#dropped} records not written`,
        "error",
      );
    }
    try {
      this.#file.close();
    } catch (e) {
      this.#log(`trace ${this.#path}: ${(e as Error).message}`, "error");
    }
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

// Where the write starting at `off` ends: after the last whole line within
// PIPE_BUF bytes (a pipe takes a write that size whole or not at all, so a
// reader never gets half a line), or after one longer line.
function wholeLinesEnd(bytes: Uint8Array, off: number): number {
  const limit = Math.min(bytes.length, off + PIPE_BUF);
  const last = bytes.lastIndexOf(0x0a, limit - 1);
  if (last >= off) return last + 1;
  const next = bytes.indexOf(0x0a, limit);
  return next < 0 ? bytes.length : next + 1;
}

function countLines(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) if (b === 0x0a) n++;
  return n;
}

function retNumber(tx: Message): number {
  return tx.sizeNumber === 8 ? Number(tx.retValue & 0xffff_ffffn) : 0;
}

function hex(v: number): string {
  return `0x${v.toString(16)}`;
}
