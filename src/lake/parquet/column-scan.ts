import {
  BIGINT,
  BLOB,
  BOOLEAN,
  DATE,
  DECIMAL,
  DOUBLE,
  DuckDBTableFunction,
  FLOAT,
  INTEGER,
  LIST,
  SMALLINT,
  TIMESTAMPTZ,
  VARCHAR,
  type DuckDBConnection,
  type DuckDBDataChunk,
  type DuckDBType,
} from '@duckdb/node-api';
import type { LakeColumn, LakeType } from '../lake-schema.ts';
import { checkDecimal } from './duckdb-sql.ts';
import { CHUNK_ROWS, columnFillers, type Cell, type ColumnFiller } from './column-chunk.ts';

/**
 * Rows given as column readers (`cells[c](r)`), scanned by DuckDB itself: a table function
 * (`tide_columns(<id>)`) whose every call fills the next data chunk of 2,048 rows with column-chunk.ts'
 * fillers. A `COPY (SELECT … FROM tide_columns(7)) TO …` then writes Parquet straight from the JS
 * values, without the temp table `ParquetEngine.stageColumns` builds (the Appender's flush into it and
 * the COPY's read of it: in a 100k-row bronze append that route took ~390 ms of process CPU against
 * ~220 ms for this one, bench/sink-lake.ts).
 *
 * @duckdb/node-api runs table function callbacks on the JS thread (its README, "Table Functions"),
 * so the JS event loop turns between chunks and the scan is single-threaded (max_threads 1, which also
 * keeps the rows in the readers' order: DuckDB preserves insertion order for a single-threaded source).
 * A reader's value that does not fit its column stops the scan; the StageValueError the filler threw
 * is kept and `take` hands it back, so the caller reports it instead of DuckDB's text.
 */

const FUNCTION_NAME = 'tide_columns';

interface ScanSource {
  columns: LakeColumn[];
  rowCount: number;
  cells: Cell[];
  fillers: ColumnFiller[];
  error?: unknown;
}

interface ScanState {
  next: number;
}

export class ColumnScans {
  private counter = 0;
  private readonly sources = new Map<number, ScanSource>();

  constructor(connection: DuckDBConnection) {
    connection.registerTableFunction(
      DuckDBTableFunction.create({
        name: FUNCTION_NAME,
        parameterTypes: [BIGINT],
        bindFunction: (info) => {
          const id = Number(info.getParameter(0));
          const source = this.sources.get(id);
          if (!source) return info.setError(`${FUNCTION_NAME}(${id}): no such scan (it is open only during its write)`);
          for (const c of source.columns) info.addResultColumn(c.name, lakeDuckDBType(c.type, c.name));
          info.setCardinality(source.rowCount, true);
          info.setBindData({ source });
        },
        initFunction: (info) => {
          info.setInitData({ next: 0 } satisfies ScanState);
          info.setMaxThreads(1);
        },
        mainFunction: (info, out: DuckDBDataChunk) => {
          const { source } = info.bindData as { source: ScanSource };
          const state = info.initData as ScanState;
          const count = Math.max(0, Math.min(CHUNK_ROWS, source.rowCount - state.next));
          out.rowCount = count;
          if (count === 0) return;
          try {
            for (let c = 0; c < source.columns.length; c++) source.fillers[c]!.fill(out, c, source.cells[c]!, state.next, count);
          } catch (e) {
            source.error = e;
            out.rowCount = 0;
            return info.setError((e as Error).message ?? String(e));
          }
          state.next += count;
        },
      }),
    );
  }

  /** Open a scan of `rowCount` rows; `sql` is what to put in a FROM clause. Call `close` when the statement has run. */
  open(columns: LakeColumn[], rowCount: number, cells: Cell[]): { sql: string; close: () => unknown } {
    const id = ++this.counter;
    const source: ScanSource = { columns, rowCount, cells, fillers: columnFillers(columns) };
    this.sources.set(id, source);
    return {
      sql: `${FUNCTION_NAME}(${id})`,
      close: () => {
        this.sources.delete(id);
        return source.error;
      },
    };
  }
}

/** The lake type as a DuckDB type object (the same types `duckdbType` spells in SQL). */
export function lakeDuckDBType(t: LakeType, column?: string): DuckDBType {
  switch (t.kind) {
    case 'string':
      return VARCHAR;
    case 'long':
      return BIGINT;
    case 'integer':
      return INTEGER;
    case 'short':
      return SMALLINT;
    case 'double':
      return DOUBLE;
    case 'float':
      return FLOAT;
    case 'boolean':
      return BOOLEAN;
    case 'binary':
      return BLOB;
    case 'date':
      return DATE;
    case 'timestamp':
      return TIMESTAMPTZ;
    case 'decimal':
      checkDecimal(t.precision, t.scale, column);
      return DECIMAL(t.precision, t.scale);
    case 'array':
      return LIST(lakeDuckDBType(t.element, column));
  }
}
