import { TideError } from '../errors.ts';

/** A gold report failed to build or is not valid; names the report. */
export class GoldReportError extends TideError {
  constructor(
    readonly report: string,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`gold report ${report}: ${message}`, options);
    this.name = 'GoldReportError';
  }
}

/** Something wrong at a line of a report file (`gold.reports.dir`): `<file>:<line>: <what>`, as compilers print it. */
export class ReportFileError extends TideError {
  constructor(
    readonly file: string,
    readonly line: number,
    message: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${file}:${line}: ${message}`, options);
    this.name = 'ReportFileError';
  }
}

/**
 * DuckDB's error for a report's SQL, as a ReportFileError at the file's line. DuckDB prints the position
 * of a parser, catalog or binder error as `LINE <n>:` counted in the query it was given; Tide runs the
 * file's text with nothing added before its first line, so n is the file's line (after a pivot's
 * {{attribute_columns}} line, which expands to one line per key, it counts the expanded text).
 */
export function reportSqlError(file: string, err: unknown): ReportFileError {
  const cause = (err as { cause?: unknown }).cause;
  const text = cause instanceof Error ? cause.message : (err as Error).message;
  const line = /\bLINE (\d+):/.exec(text);
  // The first line of DuckDB's message says what is wrong ("Catalog Error: Table with name x does not exist!").
  const what = text.replace(/^query SQL: /, '').split('\n')[0]!;
  const hint = /Did you mean "([^"]+)"/.exec(text)?.[1];
  return new ReportFileError(
    file,
    line ? Number(line[1]) : 1,
    `${what}${hint && !/^pg_|^duckdb_/.test(hint) ? ` (did you mean ${hint}?)` : ''}`,
    {
      cause: err,
    },
  );
}

/** A report names a lake table (after FROM or JOIN) that does not exist yet: it waits, it did not fail. */
export class InputsMissingError extends ReportFileError {
  constructor(
    file: string,
    line: number,
    readonly missing: string[],
    lake: string,
  ) {
    super(
      file,
      line,
      `the lake ${lake} has no table ${missing.join(', ')} yet: start the sink that writes it, or check the name (\`tide lake tables\` lists the tables)`,
    );
    this.name = 'InputsMissingError';
  }
}
