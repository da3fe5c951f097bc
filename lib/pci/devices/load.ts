// Device types by name: a built-in (a bare name) or a device module (a
// path or URL whose default export is a DeviceFactory or a DeviceModel
// class). The one rule the CLI, the launcher and the remote follow to turn
// `--device TYPE` into a factory.

import type { DeviceContext, DeviceFactory, DeviceModel } from "../device.ts";
import { BUILTIN_DEVICES, builtinNames } from "./mod.ts";
import { within } from "../../timer.ts";

/** A device type that cannot be used: names the type and the problem. */
export class DeviceTypeError extends Error {
  /** Builds "TYPE: detail". */
  constructor(type: string, detail: string) {
    super(`${type}: ${detail}`);
    this.name = "DeviceTypeError";
  }
}

/**
 * Whether `type` names a device module rather than a built-in: it contains
 * a `/`, ends in `.ts`/`.js`/`.mjs`, or is a `file:`, `http:` or `https:`
 * URL.
 */
export function isModuleType(type: string): boolean {
  return type.includes("/") || /\.(ts|js|mjs)$/.test(type) ||
    /^(file|https?):/.test(type);
}

/**
 * The URL a module type loads from: URLs as they are, paths resolved
 * against the current directory.
 */
export function moduleUrl(type: string): URL {
  if (/^(file|https?):/.test(type)) return new URL(type);
  const cwd = Deno.cwd().replace(/\/?$/, "/");
  return new URL(type, new URL(`file://${encodeURI(cwd)}`));
}

// How long a device module may take to load, top-level awaits included.
const LOAD_TIMEOUT_MS = 20_000;

/**
 * Resolves `type` to its factory: a built-in by name, or the default
 * export of a device module (loaded once per URL). Throws DeviceTypeError
 * for an unknown name, a module that fails to load, or does not finish
 * loading within `timeoutMs`, or exports no factory.
 */
export async function resolveDeviceType(
  type: string,
  timeoutMs = LOAD_TIMEOUT_MS,
): Promise<DeviceFactory> {
  if (!isModuleType(type)) {
    const factory = Object.hasOwn(BUILTIN_DEVICES, type)
      ? BUILTIN_DEVICES[type]
      : undefined;
    if (factory === undefined) {
      throw new DeviceTypeError(
        type,
        `unknown device type (built-ins: ${builtinNames()}; a module is a path or URL)`,
      );
    }
    return factory;
  }
  const url = moduleUrl(type);
  const mod = await importWithin(type, url, timeoutMs);
  if (!("default" in mod)) {
    throw new DeviceTypeError(
      type,
      "the module has no default export (export default a function ctx => model, or a class constructed with ctx)",
    );
  }
  const factory = mod.default;
  if (typeof factory !== "function") {
    throw new DeviceTypeError(
      type,
      "the module's default export is not a device factory (a function ctx => model, or a class constructed with ctx)",
    );
  }
  if (isClass(factory)) {
    // A class implementing DeviceModel is a factory too, called with `new`.
    const model = factory as new (ctx: DeviceContext) => DeviceModel;
    return (ctx) => new model(ctx);
  }
  return factory as DeviceFactory;
}

// A top-level await that never settles leaves nothing for the event loop to
// do, and Deno then ends the whole process with its own multi-line message;
// the pending timer keeps the loop alive so the load fails as any other.
async function importWithin(
  type: string,
  url: URL,
  timeoutMs: number,
): Promise<Record<string, unknown>> {
  const loading = import(url.href);
  try {
    if (!await within(loading, timeoutMs)) {
      throw new DeviceTypeError(
        type,
        `the module did not finish loading within ${
          timeoutMs / 1000
        } s (a top-level await that never settles?)`,
      );
    }
    return await loading;
  } catch (e) {
    if (e instanceof DeviceTypeError) throw e;
    // "./dev.ts,step" reads as one path: an option without "=" joined it.
    const hint = type.includes(",") && /not found/i.test(String(e))
      ? " (options after the module are KEY=VALUE; the rest is its path)"
      : "";
    throw new DeviceTypeError(
      type,
      `cannot load the module: ${loadError(e)}${hint}`,
    );
  }
}

// Deno's message for a module that does not parse spans lines: the error,
// the source line with a marker, and last where it is ("at file:...:2:12",
// which may be a module the device imports). One line keeps the first and
// the last. Deno colours parts of it even when stderr is not a terminal.
function loadError(e: unknown): string {
  if (!(e instanceof Error)) return String(e);
  const lines = e.message.replace(ANSI_SGR, "").split("\n");
  const at = lines.at(-1)!.trim();
  return lines.length > 1 && at.startsWith("at ")
    ? `${lines[0]} ${at}`
    : lines[0];
}

// Select Graphic Rendition escapes: colours and bold.
// deno-lint-ignore no-control-regex
const ANSI_SGR = /\x1b\[[0-9;]*m/g;

// Calling a class without `new` throws, so a class must be told apart from
// a function; only its source text says which it is.
function isClass(f: unknown): boolean {
  return /^class\b/.test(Function.prototype.toString.call(f));
}
