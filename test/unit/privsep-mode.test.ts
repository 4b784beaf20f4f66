// When `tunnelbore run` separates privileges, as whom, and what it says when it cannot.
import { describe, expect, it } from "vitest";
import { workerMessageSchema } from "../../src/privsep/ipc-protocol.js";
import { describePrivileges } from "../../src/privsep/privilege-status.js";
import { choosePrivileges, parsePasswd } from "../../src/privsep/privsep-mode.js";

const PASSWD = [
  "root:x:0:0:root:/root:/bin/bash",
  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
  "# a comment line",
  "broken:x:notanumber:1::/:/bin/false",
  "toor:x:0:0::/:/bin/sh",
].join("\n");

describe("choosePrivileges", () => {
  it("separates as nobody by default, as tunnelbore when that user exists, or as --user", async () => {
    const byDefault = await choosePrivileges({ disabled: false, passwd: PASSWD, uid: 0 });
    expect(byDefault).toMatchObject({ separate: true, user: { name: "nobody", uid: 65534, gid: 65534 } });
    expect(describePrivileges(byDefault.status)).toBe(
      "privilege separation: worker runs as nobody (uid 65534) with no capabilities",
    );
    // Once the worker runs, the line says whether its syscall filter is on, and why not.
    expect(describePrivileges({ ...byDefault.status, syscallFilter: { on: true, reason: null } })).toBe(
      "privilege separation: worker runs as nobody (uid 65534) with no capabilities and a syscall filter",
    );
    expect(
      describePrivileges({
        ...byDefault.status,
        syscallFilter: { on: false, reason: "not built for this architecture" },
      }),
    ).toBe(
      "privilege separation: worker runs as nobody (uid 65534) with no capabilities; no syscall filter: not built for this architecture",
    );
    const withOwnUser = `${PASSWD}\ntunnelbore:x:990:990::/:/usr/sbin/nologin`;
    expect(await choosePrivileges({ disabled: false, passwd: withOwnUser, uid: 0 })).toMatchObject({
      user: { name: "tunnelbore", uid: 990 },
    });
    expect(
      await choosePrivileges({ disabled: false, user: "nobody", passwd: withOwnUser, uid: 0 }),
    ).toMatchObject({ user: { name: "nobody" } });
  });

  it("runs as one process, saying why, when it cannot or is told not to", async () => {
    const cases = [
      [{ uid: 1000 }, "not root (cannot switch to another user)"],
      [{ uid: 0, user: "ghost" }, "no user ghost"],
      [{ uid: 0, user: "toor" }, "user toor is root"],
      [{ uid: 0, user: "broken" }, "no user broken"],
    ] as const;
    for (const [request, reason] of cases) {
      const choice = await choosePrivileges({ disabled: false, passwd: PASSWD, ...request });
      expect(choice).toEqual({
        separate: false,
        status: { mode: "one process", user: null, uid: null, reason },
      });
      expect(describePrivileges(choice.status)).toBe(
        `privilege separation unavailable: ${reason}; running as one process`,
      );
    }
    const off = await choosePrivileges({ disabled: true, passwd: PASSWD, uid: 0 });
    expect(off.separate).toBe(false);
    expect(describePrivileges(off.status)).toBe("privilege separation off: running as one process");
  });

  it("parses /etc/passwd, skipping lines that are not users", () => {
    expect([...parsePasswd(PASSWD).keys()]).toEqual(["root", "nobody", "toor"]);
  });
});

describe("worker messages", () => {
  it("anything that is not a known message is refused by the schema, never thrown", () => {
    for (const junk of [null, 1, "x", [], {}, { t: "req" }, { t: "req", id: -1, req: {} }, { t: "failed" }])
      expect(workerMessageSchema.safeParse(junk).success).toBe(false);
    expect(workerMessageSchema.safeParse({ t: "req", id: 1, req: { op: "readInterface" } }).success).toBe(
      true,
    );
  });
});
