// The usual end-to-end setup around a pair of namespaces: the pair made once per file or describe
// (`create`), Tunnelbore's run and state directories, and the Tunnelbores a test starts, stopped with
// SIGTERM after each test (a test that stops one itself empties `running`); everything torn down after.
import { afterAll, afterEach, beforeAll } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { type TunnelboreDirs, type TunnelboreProcess, tunnelboreDirs } from "../lab/tunnelbore.js";

export interface TunnelboreFixture<P> {
  /** The pair `create` made (set before the first test). */
  readonly pair: P;
  readonly dirs: TunnelboreDirs;
  /** Tunnelbores to stop after the current test. */
  readonly running: TunnelboreProcess[];
}

export function useTunnelbores<P>(create: () => Promise<P>): TunnelboreFixture<P> {
  let pair: P | undefined;
  let dirs: TunnelboreDirs | undefined;
  const running: TunnelboreProcess[] = [];
  beforeAll(async () => {
    pair = await create();
    dirs = tunnelboreDirs();
  });
  afterEach(async () => {
    for (const tb of running.splice(0)) await tb.stop("SIGTERM");
  });
  afterAll(async () => {
    await teardownAll();
    dirs?.cleanup();
  });
  return {
    get pair(): P {
      if (pair === undefined) throw new Error("the pair is made in beforeAll");
      return pair;
    },
    get dirs(): TunnelboreDirs {
      if (!dirs) throw new Error("the directories are made in beforeAll");
      return dirs;
    },
    running,
  };
}
