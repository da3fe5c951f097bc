// Builds the tiny guests iohub runs (KVM harness guests, the QEMU boot
// image) from GNU assembler sources with binutils, into flat binaries under
// build/. Binaries are never committed: they are rebuilt when the source
// changes, keyed by a hash of the source text (with the files it includes)
// and the link origin. A
// compiled binary carries them prebuilt (scripts/compile.sh) and never runs
// binutils.

import { runTool, type ToolOutput } from "../run_tool.ts";
import { BUILD_DIR } from "./dirs.ts";

/** How a guest source is linked. */
export interface GuestBuildOptions {
  /** Guest-physical address the first byte is loaded at (the link origin). */
  origin: number;
  /** Symbols defined for the assembler (`as --defsym NAME=VALUE`). */
  symbols?: Record<string, number>;
}

/** A failure of `as` or `ld`, carrying the tool's own diagnostics. */
export class GuestBuildError extends Error {
  /** Names the tool, the source and what the tool printed. */
  constructor(tool: string, source: string, output: string) {
    super(`${tool} failed on ${source}: ${output.trim()}`);
    this.name = "GuestBuildError";
  }
}

async function run(
  tool: string,
  args: string[],
  source: string,
): Promise<void> {
  let out: ToolOutput;
  try {
    out = await runTool(tool, args);
  } catch (e) {
    throw new GuestBuildError(
      tool,
      source,
      `${(e as Error).message} (install binutils)`,
    );
  }
  if (out.code !== 0) {
    throw new GuestBuildError(tool, source, out.stderr + out.stdout);
  }
}

/** A short content hash (16 hex digits of SHA-256) naming a build product. */
export async function digest(
  content: string | Uint8Array<ArrayBuffer>,
): Promise<string> {
  const bytes = typeof content === "string"
    ? new TextEncoder().encode(content)
    : content;
  const hash = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(hash).slice(0, 8))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

// Where `.include "common/x.inc"` looks: the parent of the source's folder
// (guest/ for guest/boot/boot.S), so guests share guest/common.
function includeDir(source: string): string {
  const parts = source.split("/");
  return parts.length > 2 ? parts.slice(0, -2).join("/") || "/" : ".";
}

/**
 * `source` and the files it includes (`.include "…"`, transitively), in the
 * order they are read: what its binary is built from, so what its cache key
 * hashes and what a compiled iohub must carry to find the binary.
 */
export async function guestSources(source: string): Promise<string[]> {
  const dir = includeDir(source);
  const seen: string[] = [];
  const visit = async (path: string) => {
    if (seen.includes(path)) return;
    seen.push(path);
    const text = await Deno.readTextFile(path);
    for (const m of text.matchAll(/^\s*\.include\s+"([^"]+)"/gm)) {
      await visit(`${dir}/${m[1]}`);
    }
  };
  await visit(source);
  return seen;
}

/** The path buildGuest() gives the binary of `source` linked at `origin`. */
export async function guestBinaryPath(
  source: string,
  opts: GuestBuildOptions,
  dir: string = BUILD_DIR,
): Promise<string> {
  const texts = await Promise.all(
    (await guestSources(source)).map((path) => Deno.readTextFile(path)),
  );
  const text = texts.join("\n");
  const name = source.split("/").pop()!.replace(/\.[Ss]$/, "");
  const key = await digest(
    `${opts.origin}\n${defsymArgs(opts).join(" ")}\n${text}`,
  );
  return `${dir}${name}-${key}.bin`;
}

// The assembler's --defsym arguments for `opts.symbols`.
function defsymArgs(opts: GuestBuildOptions): string[] {
  return Object.entries(opts.symbols ?? {}).flatMap((
    [k, v],
  ) => ["--defsym", `${k}=${v}`]);
}

/**
 * Assembles `source` (a path to a .S file) with `as --32` and links it with
 * `ld -m elf_i386 --oformat binary` at `opts.origin`; returns the path of the
 * flat binary. Sources choose their mode themselves (`.code16`). A compiled
 * binary (`standalone`) only finds the binaries it carries: the machine it
 * runs on may lack binutils, and its embedded build/ is read-only.
 */
export async function buildGuest(
  source: string,
  opts: GuestBuildOptions,
  standalone: boolean = Deno.build.standalone,
  dir: string = BUILD_DIR,
): Promise<string> {
  const defsyms = defsymArgs(opts);
  const bin = await guestBinaryPath(source, opts, dir);
  try {
    await Deno.stat(bin);
    return bin;
  } catch {
    // Not built yet for this source text.
  }
  if (standalone) {
    throw new Error(
      `${source}: not among the guests this compiled iohub carries (rebuild it with 'deno task compile')`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const obj = `${bin.slice(0, -".bin".length)}.${Deno.pid}.o`;
  const tmp = `${bin}.${Deno.pid}.tmp`;
  try {
    await run("as", [
      "--32",
      "-I",
      includeDir(source),
      ...defsyms,
      "-o",
      obj,
      source,
    ], source);
    await run("ld", [
      "-m",
      "elf_i386",
      "--oformat",
      "binary",
      "-e",
      "0",
      `-Ttext=0x${opts.origin.toString(16)}`,
      "-o",
      tmp,
      obj,
    ], source);
    // Concurrent builders each write their own temp file; rename is atomic.
    await Deno.rename(tmp, bin);
  } finally {
    await Deno.remove(obj).catch(() => {});
    await Deno.remove(tmp).catch(() => {});
  }
  return bin;
}

/** Builds `source` like buildGuest and returns the binary's bytes. */
export async function buildGuestBytes(
  source: string,
  opts: GuestBuildOptions,
): Promise<Uint8Array> {
  return await Deno.readFile(await buildGuest(source, opts));
}
