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
import { ROW_GROUP_ROWS } from './file-writer.ts';

/**
 * Rows given as column readers (`cells[c](r)`), scanned by DuckDB itself: a table function
 * (`tide_columns(<id>)`) whose every call fills the next data chunk of 2,048 rows with column-chunk.ts'
 * fillers. A `COPY (SELECT … FROM tide_columns(7)) TO …` then writes Parquet straight from the JS
 * values, without the temp table `ParquetEngine.stageColumns` builds (the Appender's flush into it and
 * the COPY's read of it: in a 100k-row bronze append that route took ~390 ms of process CPU against
 * ~220 ms for this one, bench/sink-lake.ts).
 *
 * @duckdb/node-api runs table function callbacks on the JS thread (its README, "Table Functions"), so
 * the JS event loop turns between chunks and the chunks are filled one at a time. The rows are cut into
 * segments (contiguous runs of whole chunks, `segmentRows` each, the last one shorter) that DuckDB's
 * scanning threads take in turn (max_threads = the number of segments): a thread whose chunk JS has
 * filled goes on in DuckDB (the COPY's sink) while JS fills the other thread's next chunk. With the
 * COPY's ROW_GROUP_SIZE equal to `segmentRows` (file-writer.ts, `writeScanLocalFile`) a thread's
 * buffer reaches a row group exactly at the end of its segment, so it encodes and compresses that
 * row group itself, in parallel with the other thread: each row group is one segment, its rows in
 * the readers' order. One segment is the single-threaded scan the rows' order comes from.
 * A reader's value that does not fit its column stops the scan; the StageValueError the filler threw
 * first is kept and `close` hands it back, so the caller reports it instead of DuckDB's text.
 */

const FUNCTION_NAME = 'tide_columns';

/** Scans of fewer rows stay one segment: one thread, one row group (a small flush keeps a single group). */
export const PARALLEL_SCAN_MIN_ROWS = 32_768;

/**
 * The segment (and row group) size for a scan of `rowCount` rows: all of them below
 * PARALLEL_SCAN_MIN_ROWS; otherwise half of them rounded up to whole chunks, at most ROW_GROUP_ROWS
 * (the row group every other write uses), so two threads always have a segment each.
 */
export function scanSegmentRows(rowCount: number): number {
  if (rowCount < PARALLEL_SCAN_MIN_ROWS) return Math.max(rowCount, 1);
  return Math.min(ROW_GROUP_ROWS, Math.ceil(rowCount / 2 / CHUNK_ROWS) * CHUNK_ROWS);
}

interface ScanSource {
  columns: LakeColumn[];
  rowCount: number;
  cells: Cell[];
  fillers: ColumnFiller[];
  /** [start, end) of each segment, in row order; a thread takes the next one when its own is done. */
  segments: [number, number][];
  error?: unknown;
}

/** One scan's segments handed out so far (all threads' callbacks run on the JS thread: no lock). */
interface ScanState {
  nextSegment: number;
}

/** One scanning thread's position: rows [next, end) of the segment it holds. */
interface ThreadState {
  next: number;
  end: number;
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
          const { source } = info.bindData as { source: ScanSource };
          info.setInitData({ nextSegment: 0 } satisfies ScanState);
          info.setMaxThreads(Math.max(1, source.segments.length));
        },
        localInitFunction: (info) => {
          info.setInitData({ next: 0, end: 0 } satisfies ThreadState);
        },
        mainFunction: (info, out: DuckDBDataChunk) => {
          const { source } = info.bindData as { source: ScanSource };
          const thread = info.localInitData as ThreadState;
          if (thread.next >= thread.end) {
            const state = info.initData as ScanState;
            const segment = source.segments[state.nextSegment];
            if (segment) {
              state.nextSegment++;
              [thread.next, thread.end] = segment;
            }
          }
          const count = Math.max(0, Math.min(CHUNK_ROWS, thread.end - thread.next));
          out.rowCount = count;
          if (count === 0) return;
          try {
            for (let c = 0; c < source.columns.length; c++) source.fillers[c]!.fill(out, c, source.cells[c]!, thread.next, count);
          } catch (e) {
            source.error ??= e;
            out.rowCount = 0;
            return info.setError((e as Error).message ?? String(e));
          }
          thread.next += count;
        },
      }),
    );
  }

  /**
   * Open a scan of `rowCount` rows in segments of `segmentRows` (a multiple of CHUNK_ROWS; default:
   * one segment); `sql` is what to put in a FROM clause, `segments` how many there are. Call `close`
   * when the statement has run.
   */
  open(
    columns: LakeColumn[],
    rowCount: number,
    cells: Cell[],
    segmentRows = rowCount,
  ): { sql: string; segments: number; close: () => unknown } {
    if (segmentRows < rowCount && (segmentRows < CHUNK_ROWS || segmentRows % CHUNK_ROWS !== 0))
      throw new RangeError(`${FUNCTION_NAME}: segments of ${segmentRows} rows are not whole chunks of ${CHUNK_ROWS}`);
    const segments: [number, number][] = [];
    for (let start = 0; start < rowCount; start += segmentRows) segments.push([start, Math.min(rowCount, start + segmentRows)]);
    const id = ++this.counter;
    const source: ScanSource = { columns, rowCount, cells, fillers: columnFillers(columns), segments };
    this.sources.set(id, source);
    return {
      sql: `${FUNCTION_NAME}(${id})`,
      segments: segments.length,
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
