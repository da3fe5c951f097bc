// iohub's version: its one home is deno.json's "version", which a compiled
// binary embeds like any other imported module.

import config from "../deno.json" with { type: "json" };

/** iohub's version, e.g. "0.1.0". */
export const VERSION: string = config.version;

/** The `iohub --version` line: iohub's version and the Deno that runs it. */
export function versionLine(): string {
  const mode = Deno.build.standalone ? ", compiled" : "";
  return `iohub ${VERSION} (deno ${Deno.version.deno}${mode})`;
}
