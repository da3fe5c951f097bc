// The rules a device model must follow before the remote serves it: IDs
// that fit their registers, BARs sized as PCI sizes them, a capability list
// that fits config space. One home for them; errors name the field.

import type {
  BarSpec,
  CapabilitySpec,
  ConfigExtras,
  PciIdentity,
} from "./config.ts";
import type { DeviceModel } from "./device.ts";

/** A device model that breaks a rule: names the field and the problem. */
export class DeviceModelError extends Error {
  /** Builds "field: detail". */
  constructor(field: string, detail: string) {
    super(`${field}: ${detail}`);
    this.name = "DeviceModelError";
  }
}

const CONFIG_END = 0x100;
const CAPABILITIES_START = 0x40;

// Math.log2 is exact on powers of two, which 32-bit `&` cannot test above 2^31.
function isPow2(n: unknown): n is number {
  return typeof n === "number" && Number.isSafeInteger(n) && n > 0 &&
    Math.log2(n) % 1 === 0;
}

// A string shows its quotes: "0x1af4" is text, not the number.
function shown(v: unknown): string {
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

// What a number field holds that breaks its rule, `rule` being what it
// should be. A string (a --device option passed on as it came, say) is
// called one, or "4096 is not a power of two" would puzzle.
function notA(v: unknown, rule: string): string {
  return typeof v === "string"
    ? `${shown(v)} is a string, expected a number: ${rule}`
    : `${shown(v)} is not ${rule}`;
}

function checkInt(
  field: string,
  v: unknown,
  max: number,
  min = 0,
): void {
  if (typeof v !== "number" || !Number.isInteger(v) || v < min || v > max) {
    throw new DeviceModelError(
      field,
      notA(v, `an integer in ${min}..0x${max.toString(16)}`),
    );
  }
}

function checkIdentity(id: PciIdentity): void {
  if (typeof id !== "object" || id === null) {
    throw new DeviceModelError("identity", "missing");
  }
  checkInt("identity.vendorId", id.vendorId, 0xffff);
  if (id.vendorId === 0xffff || id.vendorId === 0) {
    throw new DeviceModelError(
      "identity.vendorId",
      `0x${id.vendorId.toString(16)} reads as no device`,
    );
  }
  checkInt("identity.deviceId", id.deviceId, 0xffff);
  if (id.revision !== undefined) {
    checkInt("identity.revision", id.revision, 0xff);
  }
  if (id.classCode !== undefined) {
    checkInt("identity.classCode", id.classCode, 0xffffff);
  }
  if (id.subsystemVendorId !== undefined) {
    checkInt("identity.subsystemVendorId", id.subsystemVendorId, 0xffff);
  }
  if (id.subsystemId !== undefined) {
    checkInt("identity.subsystemId", id.subsystemId, 0xffff);
  }
  if (id.interruptPin !== undefined) {
    checkInt("identity.interruptPin", id.interruptPin, 4);
  }
}

function checkBar(i: number, bar: BarSpec, next: BarSpec | null): void {
  const field = `bars[${i}]`;
  if (typeof bar !== "object") throw new DeviceModelError(field, "not a BAR");
  if (bar.space !== "memory" && bar.space !== "io") {
    throw new DeviceModelError(
      `${field}.space`,
      `${shown(bar.space)}, expected "memory" or "io"`,
    );
  }
  const io = bar.space === "io";
  const min = io ? 4 : 16;
  const max = io ? 256 : bar.is64 ? 2 ** 52 : 2 ** 31;
  if (!isPow2(bar.size) || bar.size < min || bar.size > max) {
    throw new DeviceModelError(
      `${field}.size`,
      notA(bar.size, `a power of two in ${min}..${max}`),
    );
  }
  if (io && (bar.is64 || bar.prefetchable)) {
    throw new DeviceModelError(
      field,
      "an I/O BAR cannot be 64-bit or prefetchable",
    );
  }
  if (bar.is64) {
    if (i === 5) {
      throw new DeviceModelError(field, "a 64-bit BAR cannot be the last one");
    }
    if (next !== null) {
      throw new DeviceModelError(
        `bars[${i + 1}]`,
        `must be null: BAR${i} is 64-bit and takes this register`,
      );
    }
  }
}

function checkCapability(i: number, cap: CapabilitySpec, at: number): number {
  const field = `capabilities[${i}]`;
  if (typeof cap !== "object" || cap === null) {
    throw new DeviceModelError(field, "not a capability");
  }
  checkInt(`${field}.id`, cap.id, 0xff);
  // At least its 2-byte header (ID, next pointer).
  checkInt(
    `${field}.length`,
    cap.length,
    CONFIG_END - CAPABILITIES_START,
    2,
  );
  if (at + cap.length > CONFIG_END) {
    throw new DeviceModelError(
      field,
      `does not fit in config space (ends at 0x${
        (at + cap.length).toString(16)
      })`,
    );
  }
  for (const key of ["init", "writable"] as const) {
    const bytes = cap[key];
    if (bytes === undefined) continue;
    if (bytes.length > cap.length - 2) {
      throw new DeviceModelError(
        `${field}.${key}`,
        `${bytes.length} bytes, the capability has ${
          cap.length - 2
        } after its header`,
      );
    }
    for (let j = 0; j < bytes.length; j++) {
      checkInt(`${field}.${key}[${j}]`, bytes[j], 0xff);
    }
  }
  return at + ((cap.length + 3) & ~3);
}

/**
 * Checks a config layout; throws DeviceModelError naming the first field
 * that breaks a rule.
 */
export function checkLayout(
  identity: PciIdentity,
  bars: readonly (BarSpec | null)[],
  extras: ConfigExtras,
): void {
  checkIdentity(identity);
  if (!Array.isArray(bars) || bars.length > 6) {
    throw new DeviceModelError("bars", "expected an array of at most 6 BARs");
  }
  for (let i = 0; i < bars.length; i++) {
    const bar = bars[i];
    if (bar !== null && bar !== undefined) {
      checkBar(i, bar, bars[i + 1] ?? null);
    }
  }
  const rom = extras.rom;
  if (rom !== undefined && rom !== null) {
    if (!isPow2(rom.size) || rom.size < 2048 || rom.size > 2 ** 31) {
      throw new DeviceModelError(
        "rom.size",
        notA(rom.size, `a power of two in 2048..${2 ** 31}`),
      );
    }
  }
  const caps = extras.capabilities ?? [];
  if (!Array.isArray(caps)) {
    throw new DeviceModelError("capabilities", "expected an array");
  }
  let at = CAPABILITIES_START;
  caps.forEach((cap, i) => {
    at = checkCapability(i, cap, at);
  });
}

/**
 * Checks what a device factory returned: the methods the remote calls and
 * a valid config layout. Returns the model; throws DeviceModelError.
 */
export function validateModel(model: DeviceModel): DeviceModel {
  if (typeof model !== "object" || model === null) {
    throw new DeviceModelError(
      "model",
      `the factory returned ${
        model === null ? "null" : typeof model
      }, not the model (a function ctx => model, or a class constructed with ctx)`,
    );
  }
  if (isThenable(model)) {
    throw new DeviceModelError(
      "model",
      "the factory returned a promise: it must return the model itself (await at the module's top level instead)",
    );
  }
  for (const m of ["read", "write"] as const) {
    if (typeof model[m] !== "function") {
      throw new DeviceModelError(m, "not a function");
    }
  }
  for (const m of ["reset", "close"] as const) {
    if (model[m] !== undefined && typeof model[m] !== "function") {
      throw new DeviceModelError(m, "not a function");
    }
  }
  checkLayout(model.identity, model.bars, model);
  return model;
}

// The fields iohub reads from each part of a model, to tell a misspelt one
// (read as missing, so silently without effect) from the ones it knows.
const FIELDS = {
  identity: [
    "vendorId",
    "deviceId",
    "revision",
    "classCode",
    "subsystemVendorId",
    "subsystemId",
    "interruptPin",
  ],
  BAR: ["size", "space", "is64", "prefetchable"],
  ROM: ["size"],
  capability: ["id", "length", "init", "writable", "read", "write"],
} as const;

// A model is often a class with fields and methods of its own: only a name
// close to an optional member the model lacks, holding what that member
// holds, is taken for a misspelling (a `ram` buffer is no `rom`).
const OPTIONAL_MEMBERS: Record<string, (v: unknown) => boolean> = {
  reset: (v) => typeof v === "function",
  close: (v) => typeof v === "function",
  rom: (v) => typeof v === "object" && v !== null && "size" in v,
  capabilities: (v) => Array.isArray(v),
};

/**
 * Fields of a valid model that iohub does not read and that look like
 * misspellings (`bars[0].prefetch`, `rest()` for reset()), one line each,
 * for the remote to log: an optional field spelt wrong is otherwise
 * silently without effect.
 */
export function modelWarnings(model: DeviceModel): string[] {
  const out: string[] = [];
  const extra = (
    field: string,
    part: object | null | undefined,
    kind: keyof typeof FIELDS,
  ): void => {
    if (typeof part !== "object" || part === null) return;
    const known: readonly string[] = FIELDS[kind];
    for (const key of Object.keys(part)) {
      if (known.includes(key)) continue;
      const near = nearest(key, known);
      out.push(
        `${field}.${key} is ignored${
          near === null
            ? ` (${kind} fields: ${known.join(", ")})`
            : `: did you mean ${near}?`
        }`,
      );
    }
  };
  extra("identity", model.identity, "identity");
  model.bars.forEach((bar, i) => extra(`bars[${i}]`, bar, "BAR"));
  extra("rom", model.rom, "ROM");
  model.capabilities?.forEach((cap, i) =>
    extra(`capabilities[${i}]`, cap, "capability")
  );
  const names = memberNames(model);
  for (const [member, holds] of Object.entries(OPTIONAL_MEMBERS)) {
    if (member in model) continue;
    const found = names.find((n) =>
      nearest(n, [member]) !== null &&
      holds((model as unknown as Record<string, unknown>)[n])
    );
    if (found !== undefined) {
      out.push(`${found} is ignored: did you mean ${member}?`);
    }
  }
  return out;
}

// Own keys and the methods of its classes (Object's excepted).
function memberNames(model: object): string[] {
  const names = new Set(Object.keys(model));
  for (
    let p = Object.getPrototypeOf(model);
    p !== null && p !== Object.prototype;
    p = Object.getPrototypeOf(p)
  ) {
    for (const n of Object.getOwnPropertyNames(p)) {
      if (n !== "constructor") names.add(n);
    }
  }
  return [...names];
}

// The name in `known` that `key` looks like a misspelling of (case, an
// underscore, a letter or two, a prefix), or null.
function nearest(key: string, known: readonly string[]): string | null {
  const k = key.toLowerCase().replaceAll("_", "");
  for (const name of known) {
    const n = name.toLowerCase();
    if (k === n || (k.length >= 4 && n.startsWith(k))) return name;
    if (editDistance(k, n) <= (n.length <= 5 ? 1 : 2)) return name;
  }
  return null;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row.push(Math.min(
        prev[j] + 1,
        row[j - 1] + 1,
        prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1),
      ));
    }
    prev = row;
  }
  return prev[b.length];
}

/** Whether `value` is a promise or promise-like (a `then` method). */
export function isThenable(value: unknown): boolean {
  return typeof (value as { then?: unknown } | null)?.then === "function";
}
