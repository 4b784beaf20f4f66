/**
 * Options from a YAML configuration file (`--config FILE`) and from the environment, for `run` and
 * `intro-server`. Both become an argv prefix that the command's own parseArgs parses before the real
 * argv, so there is one validation path and later means higher precedence: flag > env > file.
 *
 * Keys are the long flag names (`interface: wg0`, `endpoint: [..]` for a repeatable flag, `true` for a
 * switch); environment variables are PREFIX + the flag name in upper case with - → _
 * (TUNNELBORE_NO_MANAGE_ENDPOINTS=1, TUNNELBORE_ENDPOINT="K1=H:P,K2=H:P").
 *
 * Resolution is per option, and per group of options that set one thing (`x` and `no-x`, a secret and
 * its `-file` form): the highest source that sets any option of a group replaces what lower sources
 * gave for the whole group. So a repeatable option is never merged across sources: `--endpoint` on the
 * command line replaces the file's `endpoint:` list instead of adding to it.
 *
 * Secrets are never taken from the file (it is often world-readable and kept in version control): a
 * secret key there is an error that names the `-file` key or the environment variable to use instead.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { parseArgs } from "node:util";
import type { Node } from "yaml";
import { z } from "zod";
import { ConfigError } from "../errors.js";

export interface OptionShape {
  type: "string" | "boolean";
  multiple?: boolean;
  short?: string;
}

export interface ConfigSourcesSpec {
  /** For messages: "run", "intro-server". */
  command: string;
  /** The ConfigError code the command uses for bad usage. */
  errorCode: string;
  /** Environment variable prefix, e.g. "TUNNELBORE_". */
  envPrefix: string;
  /** The command's parseArgs options (help and config are never taken from a file or the environment). */
  options: Record<string, OptionShape>;
  /** Options that set one thing: a source that sets one of them replaces the whole group from below. */
  groups?: string[][];
  /** Secret options: refused in the file, with what to use instead. */
  secrets?: Record<string, string>;
  /**
   * Options whose environment variable the command reads itself (a secret it deletes after reading):
   * not put into the prefix, but a set variable still replaces the file's values for its group.
   */
  envReadByCommand?: string[];
}

/** Where an option's value came from: "flag", "TUNNELBORE_X", or "FILE line N". */
export type Origin = string;

export interface ConfigSources {
  /** The argv to parse: prefix from the file and the environment, then the real argv. */
  argv: string[];
  /** Where each option set by the file or the environment came from. */
  origins: Map<string, Origin>;
  /** A message about `--key` gets where key came from, when not from the command line. */
  explain(message: string): string;
}

const NOT_FROM_SOURCES = new Set(["help", "config"]);
type Value = string | boolean | string[];

/** The environment variable for an option: PREFIX + NAME with - → _ in upper case. */
export function envName(prefix: string, option: string): string {
  return `${prefix}${option.toUpperCase().replaceAll("-", "_")}`;
}

/**
 * The argv to parse, with the file's (`--config FILE` in argv, or PREFIX + CONFIG) and the
 * environment's options in front. Throws a ConfigError that names the key, its line and what to fix.
 */
export function withConfigSources(
  argv: string[],
  spec: ConfigSourcesSpec,
  env: NodeJS.ProcessEnv = process.env,
): ConfigSources {
  const options = { ...spec.options, config: { type: "string" as const } };
  const fromArgv = argvOptions(argv, options);
  const inArgv = fromArgv.get("config");
  const configFile = typeof inArgv === "string" ? inArgv : nonEmpty(env[envName(spec.envPrefix, "config")]);
  const file =
    configFile !== undefined ? readConfigFile(configFile, spec) : { values: new Map(), lines: new Map() };
  const fromEnv = envValues(spec, env);
  const groupOf = (option: string): string[] =>
    spec.groups?.find((group) => group.includes(option)) ?? [option];

  // Resolve per group: the highest source that sets any of its options wins the group.
  const merged = new Map<string, Value>();
  const origins = new Map<string, Origin>();
  const setBy = (values: Map<string, Value>, option: string) => groupOf(option).some((o) => values.has(o));
  const envSet = new Map<string, Value>(fromEnv);
  for (const option of spec.envReadByCommand ?? []) {
    if (nonEmpty(env[envName(spec.envPrefix, option)]) !== undefined) envSet.set(option, true);
  }
  const argvSet = fromArgv;
  for (const [option, value] of file.values) {
    if (setBy(envSet, option) || setBy(argvSet, option)) continue;
    merged.set(option, value);
    origins.set(option, `${configFile} line ${file.lines.get(option)}`);
  }
  for (const [option, value] of fromEnv) {
    if (setBy(argvSet, option)) continue;
    merged.set(option, value);
    origins.set(option, envName(spec.envPrefix, option));
  }

  const prefix: string[] = [];
  for (const [option, value] of merged) {
    if (value === false) {
      // A switch turned off: its opposite, when the command has one (wait-for-interface: false).
      const opposite = option.startsWith("no-") ? option.slice(3) : `no-${option}`;
      if (spec.options[opposite]?.type === "boolean") prefix.push(`--${opposite}`);
    } else if (value === true) prefix.push(`--${option}`);
    else for (const item of Array.isArray(value) ? value : [value]) prefix.push(`--${option}=${item}`);
  }
  return {
    argv: [...prefix, ...argv],
    origins,
    explain(message) {
      // The option a message names: --flag, else a value from the file or the environment, quoted.
      const flag = /--([a-z][a-z0-9-]*)/.exec(message)?.[1];
      const named =
        flag !== undefined && origins.has(flag)
          ? flag
          : [...merged].find(([, value]) =>
              [value].flat().some((item) => typeof item === "string" && message.includes(`"${item}"`)),
            )?.[0];
      const origin = named !== undefined ? origins.get(named) : undefined;
      return origin !== undefined ? `${message} (set by ${origin})` : message;
    },
  };
}

/** The options the command line sets (not validated here: the command's own parse does that). */
function argvOptions(argv: string[], options: Record<string, OptionShape>): Map<string, Value> {
  const { tokens } = parseArgs({ args: argv, options, strict: false, allowPositionals: true, tokens: true });
  const set = new Map<string, Value>();
  for (const token of tokens) {
    if (token.kind === "option") set.set(token.name, token.value ?? true);
  }
  return set;
}

function nonEmpty(text: string | undefined): string | undefined {
  return text === undefined || text === "" ? undefined : text;
}

function envValues(spec: ConfigSourcesSpec, env: NodeJS.ProcessEnv): Map<string, Value> {
  const values = new Map<string, Value>();
  for (const [option, shape] of Object.entries(spec.options)) {
    if (NOT_FROM_SOURCES.has(option) || spec.envReadByCommand?.includes(option)) continue;
    const name = envName(spec.envPrefix, option);
    const text = nonEmpty(env[name]);
    if (text === undefined) continue;
    if (shape.type === "boolean") {
      if (/^(1|true|yes|on)$/i.test(text)) values.set(option, true);
      else if (/^(0|false|no|off)$/i.test(text)) values.set(option, false);
      else {
        throw new ConfigError(
          spec.errorCode,
          `${name}=${JSON.stringify(text)}: a switch wants 1 or 0 (true/false, yes/no, on/off)`,
        );
      }
    } else if (shape.multiple) {
      values.set(
        option,
        text.split(/[\s,]+/).filter((item) => item !== ""),
      );
    } else values.set(option, text);
  }
  return values;
}

interface FileValues {
  values: Map<string, Value>;
  lines: Map<string, number>;
}

/** Reads and validates FILE; every error names the file, the line and what to fix. */
export function readConfigFile(file: string, spec: ConfigSourcesSpec): FileValues {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(
      spec.errorCode,
      `cannot read --config ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      { file },
    );
  }
  return parseConfigText(text, file, spec);
}

let yaml: typeof import("yaml") | undefined;
function yamlLibrary(): typeof import("yaml") {
  yaml ??= createRequire(import.meta.url)("yaml") as typeof import("yaml");
  return yaml;
}

/** Parses YAML `text` (named `file` in messages) against the command's options. */
export function parseConfigText(text: string, file: string, spec: ConfigSourcesSpec): FileValues {
  // Loaded only when there is a file to parse: ~9 MiB of RSS a process without one need not keep.
  const { isMap, isScalar, isSeq, LineCounter, parseDocument } = yamlLibrary();
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: true });
  const fail = (line: number | undefined, message: string): never => {
    throw new ConfigError(spec.errorCode, `${file}${line !== undefined ? `:${line}` : ""}: ${message}`, {
      file,
      line,
    });
  };
  const lineOf = (node: Node | null | undefined): number | undefined =>
    node?.range ? lineCounter.linePos(node.range[0]).line : undefined;
  const firstError = doc.errors[0];
  if (firstError) {
    const line = firstError.linePos?.[0]?.line ?? lineCounter.linePos(firstError.pos[0]).line;
    fail(line, `not valid YAML: ${firstError.message.split("\n")[0]}`);
  }
  const root = doc.contents;
  const lines = new Map<string, number>();
  const values = new Map<string, Value>();
  if (root === null || (isScalar(root) && root.value === null)) return { values, lines };
  if (!isMap(root)) return fail(lineOf(root), "wants a mapping of option: value (e.g. interface: wg0)");

  const known = Object.keys(spec.options).filter((o) => !NOT_FROM_SOURCES.has(o));
  const keyNodes = new Map<string, Node>();
  const valueNodes = new Map<string, Node | null>();
  for (const pair of root.items) {
    const keyNode = pair.key as Node | null;
    const key = isScalar(keyNode) ? String(keyNode.value) : undefined;
    if (key === undefined) return fail(lineOf(keyNode), "a key must be an option name");
    keyNodes.set(key, keyNode as Node);
    valueNodes.set(key, pair.value as Node | null);
    lines.set(key, lineOf(keyNode) ?? 0);
  }
  for (const key of keyNodes.keys()) {
    const where = lines.get(key);
    if (key in (spec.secrets ?? {})) {
      fail(where, `"${key}" is a secret and does not belong in the config file: ${spec.secrets?.[key]}`);
    }
    if (!known.includes(key)) {
      const near = closest(key, known);
      fail(
        where,
        `unknown key "${key}"${near ? `: did you mean "${near}"?` : ""} (keys are the long flags of tunnelbore ${spec.command} --help)`,
      );
    }
  }

  const schema = z.strictObject(
    Object.fromEntries(
      known.map((option) => {
        const shape = spec.options[option] as OptionShape;
        const scalar = z.union([z.string(), z.number()]).transform(String);
        const type =
          shape.type === "boolean"
            ? z.boolean()
            : shape.multiple
              ? z.preprocess((v) => (Array.isArray(v) ? v : [v]), z.array(scalar))
              : scalar;
        return [option, type.optional()];
      }),
    ),
  );
  const parsed = schema.safeParse(doc.toJS());
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const key = String(issue?.path[0] ?? "");
    const shape = spec.options[key];
    const valueNode = valueNodes.get(key);
    const itemNode =
      typeof issue?.path[1] === "number" && isSeq(valueNode)
        ? (valueNode.items[issue.path[1]] as Node)
        : valueNode;
    const wants =
      shape?.type === "boolean"
        ? "true or false"
        : shape?.multiple
          ? "a list of strings (or one string)"
          : "a string or a number";
    fail(lineOf(itemNode) ?? lines.get(key), `"${key}" wants ${wants}, not ${describe(itemNode)}`);
  }
  for (const [key, value] of Object.entries(parsed.data ?? {})) {
    if (value === undefined) continue;
    values.set(key, Array.isArray(value) ? value : (value as string | boolean));
  }
  for (const [key, value] of values) {
    if (Array.isArray(value) || spec.options[key]?.multiple !== true) continue;
    values.set(key, [value as string]);
  }
  return { values, lines };
}

function describe(node: Node | null | undefined): string {
  const { isMap, isScalar, isSeq } = yamlLibrary();
  if (isSeq(node)) return "a list";
  if (isMap(node)) return "a mapping";
  if (isScalar(node)) return node.value === null ? "nothing" : JSON.stringify(node.value);
  return "nothing";
}

/** The known key nearest to `key` by edit distance, when it is near enough to be a typo. */
export function closest(key: string, known: string[]): string | undefined {
  let best: { name: string; distance: number } | undefined;
  for (const name of known) {
    const distance = editDistance(key, name);
    if (!best || distance < best.distance) best = { name, distance };
  }
  return best && best.distance <= Math.max(2, Math.floor(key.length / 3)) ? best.name : undefined;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        (previous[j] as number) + 1,
        (current[j - 1] as number) + 1,
        (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length] as number;
}
