/** One measured number of a benchmark, printed as a table row by the bench runners. */
export interface BenchRow {
  name: string;
  value: number;
  unit: string;
  note?: string;
}

/** Formats rows as an aligned text table. */
export function formatTable(rows: BenchRow[]): string {
  const fmt = (v: number) =>
    v >= 100
      ? Math.round(v).toLocaleString("en-US")
      : v.toLocaleString("en-US", { maximumSignificantDigits: 3 });
  const cells = rows.map((r) => [r.name, fmt(r.value), r.unit, r.note ?? ""]);
  const widths = [0, 1, 2].map((i) => Math.max(...cells.map((c) => c[i]!.length)));
  return cells
    .map((c) =>
      `${c[0]!.padEnd(widths[0]!)}  ${c[1]!.padStart(widths[1]!)} ${c[2]!.padEnd(widths[2]!)}  ${c[3]}`.trimEnd(),
    )
    .join("\n");
}
