// The iohub command line: answers --version, runs the dispatch and turns
// every failure into one line on stderr and a non-zero exit. The dispatch is
// imported dynamically so a failure to load it (libc refused without
// --allow-ffi) is caught too; --version needs no permission at all.

import { describeError, exitStatusOf } from "./lib/cli/common.ts";
import { versionLine } from "./lib/version.ts";

async function main(args: string[]): Promise<number> {
  if (args[0] === "--version") {
    console.log(versionLine());
    return 0;
  }
  const { dispatch } = await import("./lib/cli/dispatch.ts");
  return await dispatch(args);
}

if (import.meta.main) {
  let status: number;
  try {
    status = await main(Deno.args);
  } catch (e) {
    console.error(`iohub: ${describeError(e)}`);
    status = exitStatusOf(e);
  }
  Deno.exit(status);
}
