// Live counters of one device, for `--control` and `iohub stats`: requests
// per command, refusals, and a latency histogram of their service time.

import { CMD_MAX, cmdName } from "../mpqemu/mod.ts";

// Service times are binned in quarter powers of two of a microsecond, from
// 1/16 us to about 1 s: a quantile read from them is within 19%.
const BINS_PER_OCTAVE = 4;
const MIN_US = 1 / 16;
const NUM_BINS = 4 * 25;

/** Service-time quantiles in microseconds (0 before any request). */
export interface LatencySummary {
  /** Median. */
  p50: number;
  /** 99th percentile. */
  p99: number;
}

/** A device's request counters as `iohub stats` shows them. */
export interface RequestStats {
  /** Requests by command name (BAR_READ, PCI_CFGWRITE...). */
  requests: Record<string, number>;
  /** Accesses refused: out of range, or hitting no BAR (logged as such). */
  refusals: number;
  /** Service time of the requests timed so far. */
  latencyUs: LatencySummary;
}

/** Counters of one device's requests. */
export class DeviceStats {
  readonly #requests = new Float64Array(CMD_MAX);
  readonly #bins = new Float64Array(NUM_BINS);
  #timed = 0;
  /** Accesses refused. */
  refusals = 0;

  /** Counts a request of command `cmd`. */
  count(cmd: number): void {
    if (cmd >= 0 && cmd < CMD_MAX) this.#requests[cmd]++;
  }

  /** Records a request's service time. */
  time(us: number): void {
    const bin = us <= MIN_US ? 0 : Math.min(
      NUM_BINS - 1,
      Math.ceil(Math.log2(us / MIN_US) * BINS_PER_OCTAVE),
    );
    this.#bins[bin]++;
    this.#timed++;
  }

  #quantile(q: number): number {
    if (this.#timed === 0) return 0;
    const rank = q * this.#timed;
    let seen = 0;
    for (let i = 0; i < NUM_BINS; i++) {
      seen += this.#bins[i];
      if (seen >= rank) return MIN_US * 2 ** (i / BINS_PER_OCTAVE);
    }
    return MIN_US * 2 ** ((NUM_BINS - 1) / BINS_PER_OCTAVE);
  }

  /** The counters as plain data. */
  snapshot(): RequestStats {
    const requests: Record<string, number> = {};
    this.#requests.forEach((n, cmd) => {
      if (n > 0) requests[cmdName(cmd)] = n;
    });
    const round = (v: number): number => Math.round(v * 100) / 100;
    return {
      requests,
      refusals: this.refusals,
      latencyUs: {
        p50: round(this.#quantile(0.5)),
        p99: round(this.#quantile(0.99)),
      },
    };
  }
}
