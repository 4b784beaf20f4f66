// The namespace lab for one test at a time: made by the test, torn down after it whatever happened,
// with every namespace and process the lab started (teardownAll).
import { afterEach } from "vitest";
import { teardownAll } from "../lab/netns.js";
import { ProductLab, type ProductLabSpec } from "../lab/tunnelbore-lab.js";

/** Registers the teardown (call at a file's or a describe's top level); returns the lab's maker. */
export function labPerTest(): (spec: ProductLabSpec) => Promise<ProductLab> {
  let lab: ProductLab | null = null;
  afterEach(async () => {
    await lab?.teardown();
    lab = null;
    await teardownAll();
  });
  return async (spec) => {
    lab = await ProductLab.create(spec);
    return lab;
  };
}
