// `--trace FILE`: one JSON object per line for every message a device
// serves, every INTx edge and resample, and every channel opened or
// closed. Lines are buffered and written in batches; nothing is done at
// all when tracing is off (the remote holds no Tracer then).

import { Cmd, cmdName, type Message } from "../mpqemu/mod.ts";

const FLUSH_BYTES = 64 * 1024;
const FLUSH_MS = 200;

/** Writes trace records to a file. */
export class Tracer implements Disposable {
  readonly #file: Deno.FsFile;
  readonly #start = performance.now();
  readonly #encoder = new TextEncoder();
  #lines: string[] = [];
  #bytes = 0;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** Creates (or truncates) `path`. */
  constructor(path: string) {
    this.#file = Deno.openSync(path, {
      write: true,
      create: true,
      truncate: true,
    });
  }

  /** Microseconds since the trace began, for a record's `t`. */
  now(): number {
    return Math.round((performance.now() - this.#start) * 1000);
  }

  /**
   * Records a served request: `rx` the request, `tx` the reply (for reads),
   * `t` when it started, `us` how long it took, and whether it was refused
   * (out of range, or hitting no BAR). Addresses and values are hex strings.
   */
  message(
    dev: string,
    rx: Message,
    tx: Message,
    t: number,
    us: number,
    refused: boolean,
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
    const line = JSON.stringify(rec) + "\n";
    this.#lines.push(line);
    this.#bytes += line.length;
    if (this.#bytes >= FLUSH_BYTES) this.flush();
    else this.#timer ??= setTimeout(() => this.flush(), FLUSH_MS);
  }

  /** Writes what is queued. */
  flush(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#lines.length === 0) return;
    const bytes = this.#encoder.encode(this.#lines.join(""));
    this.#lines = [];
    this.#bytes = 0;
    let off = 0;
    while (off < bytes.length) off += this.#file.writeSync(bytes.subarray(off));
  }

  /** Flushes and closes the file. */
  close(): void {
    try {
      this.flush();
    } finally {
      this.#file.close();
    }
  }

  /** See close(). */
  [Symbol.dispose](): void {
    this.close();
  }
}

function retNumber(tx: Message): number {
  return tx.sizeNumber === 8 ? Number(tx.retValue & 0xffff_ffffn) : 0;
}

function hex(v: number): string {
  return `0x${v.toString(16)}`;
}
