import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { TurnBatch } from "../../intro-server/cluster/turn-batch.js";

/** A stream that records each write it is given: one entry per write or writev, with its chunks. */
function recordingStream(): { stream: Writable; writes: string[][] } {
  const writes: string[][] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      writes.push([chunk.toString()]);
      done();
    },
    writev(chunks, done) {
      writes.push(chunks.map(({ chunk }) => (chunk as Buffer).toString()));
      done();
    },
  });
  return { stream, writes };
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));

describe("TurnBatch", () => {
  it("sends what one turn writes in one write, in order", async () => {
    const { stream, writes } = recordingStream();
    const batch = new TurnBatch(() => stream);
    for (let i = 0; i < 100; i++) {
      batch.hold();
      stream.write(`command ${i}\n`);
    }
    expect(writes).toEqual([]);
    await nextTurn();
    expect(writes).toHaveLength(1);
    expect(writes[0]).toEqual(Array.from({ length: 100 }, (_, i) => `command ${i}\n`));
  });

  it("writes each turn's commands apart, and writes at once without a hold", async () => {
    const { stream, writes } = recordingStream();
    const batch = new TurnBatch(() => stream);
    batch.hold();
    stream.write("a");
    stream.write("b");
    await nextTurn();
    batch.hold();
    stream.write("c");
    await nextTurn();
    stream.write("d");
    expect(writes).toEqual([["a", "b"], ["c"], ["d"]]);
  });

  it("holds nothing while there is no writable stream", async () => {
    let current: Writable | undefined;
    const batch = new TurnBatch(() => current);
    batch.hold();
    const { stream, writes } = recordingStream();
    current = stream;
    stream.write("now");
    expect(writes).toEqual([["now"]]);
    await nextTurn();
  });
});
