import { readFileSync, statSync } from "node:fs";
import { ConfigError } from "../errors.js";

/**
 * A secret the command line takes (`--NAME`): from `--NAME-file FILE` or the environment variable
 * `env`, since any user can read a process's argv (ps, /proc/PID/cmdline). `--NAME VALUE` still
 * works, with a warning. Neither errors nor warnings ever hold the value or the file's bytes.
 */
export interface SecretOption {
  /** The flag without dashes, e.g. "turn-password"; the file form is NAME-file. */
  name: string;
  env: string;
}

export interface ResolvedSecret {
  value: string | undefined;
  /** What the user should change (a secret in argv, a file others can read); never the secret. */
  warnings: string[];
}

/** The secret from `--NAME` (`inArgv`), `--NAME-file` (`file`) or the environment, in that order. */
export function resolveSecret(
  option: SecretOption,
  inArgv: string | undefined,
  file: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedSecret {
  const flag = `--${option.name}`;
  const fileFlag = `--${option.name}-file`;
  if (inArgv !== undefined && file !== undefined) {
    throw new ConfigError("bad-usage", `give either ${flag} or ${fileFlag}, not both`);
  }
  if (inArgv !== undefined) {
    return {
      value: inArgv,
      warnings: [
        `${flag} shows the secret to every user of this host (ps, /proc/PID/cmdline): use ${fileFlag} FILE or ${option.env} instead`,
      ],
    };
  }
  if (file !== undefined) return readSecretFile(fileFlag, file);
  const fromEnv = env[option.env];
  // Read once: the programs we start (wg, tc, bpftool) need not inherit it.
  delete env[option.env];
  return { value: fromEnv === "" ? undefined : fromEnv, warnings: [] };
}

function readSecretFile(fileFlag: string, file: string): ResolvedSecret {
  let text: string;
  let mode: number;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (err) {
    throw new ConfigError(
      "bad-usage",
      `cannot read ${fileFlag} ${file} (${(err as NodeJS.ErrnoException).code ?? "error"})`,
      { file },
    );
  }
  const value = text.replace(/\r?\n$/, "");
  if (value === "") throw new ConfigError("bad-usage", `${fileFlag} ${file} is empty`, { file });
  const warnings =
    (mode & 0o077) !== 0
      ? [`${fileFlag} ${file} is readable by other users (mode ${(mode & 0o777).toString(8)}): chmod 600 it`]
      : [];
  return { value, warnings };
}
