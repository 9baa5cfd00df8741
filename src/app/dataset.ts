import { createReadStream, existsSync } from 'node:fs';
import { join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { parse } from 'csv-parse';
import { TideError } from '../errors.ts';
import { PROJECT_ROOT } from '../stack/context.ts';

/**
 * The online-shop data set (shared/data/online-shop, see its SOURCE.md):
 * 536,350 sale lines, CRLF, quoted names, `NA` customers, unsorted rows, and a
 * transaction's lines not always next to each other.
 */
export const DEFAULT_DATASET =
  process.env.TIDE_DATASET ?? join(PROJECT_ROOT, '..', 'shared', 'data', 'online-shop', 'sales-transactions.csv.gz');

export interface SaleLine {
  transactionNo: string;
  date: Date; // midnight UTC of the sale day
  productNo: string;
  productName: string;
  price: string; // 2 decimals, kept as text: never through a float
  quantity: number;
  customerNo: number | null; // null for "NA"
  country: string;
}

/** One order: the lines of one TransactionNo, in file order. */
export interface OrderLines {
  transactionNo: string;
  lines: SaleLine[];
}

export class DatasetError extends TideError {
  constructor(path: string, line: number, message: string) {
    super(`${path}:${line}: ${message}`);
    this.name = 'DatasetError';
  }
}

function parseDate(path: string, line: number, text: string): Date {
  const m = /^(\d{1,2})\/(\d{1,2})\/(\d{4})$/.exec(text);
  if (!m) throw new DatasetError(path, line, `Date "${text}" is not M/D/YYYY`);
  return new Date(Date.UTC(Number(m[3]), Number(m[1]) - 1, Number(m[2])));
}

/** Stream the first `limit` sale lines of the file. */
export async function* readSaleLines(path = DEFAULT_DATASET, limit = Infinity): AsyncGenerator<SaleLine> {
  if (!existsSync(path)) {
    throw new TideError(
      `data set not found at ${path}. Pass --data <file.csv.gz>, set TIDE_DATASET to its path, or clone the repo beside shared/.`,
    );
  }
  const input = createReadStream(path);
  const parser = (path.endsWith('.gz') ? input.pipe(createGunzip()) : input).pipe(
    parse({ columns: true, record_delimiter: ['\r\n', '\n'] }),
  );
  let n = 0;
  try {
    for await (const r of parser as AsyncIterable<Record<string, string>>) {
      if (n >= limit) break;
      n++;
      const line = n + 1;
      const quantity = Number(r.Quantity);
      if (!Number.isInteger(quantity)) throw new DatasetError(path, line, `Quantity "${r.Quantity}" is not an integer`);
      if (!/^\d+\.\d{2}$/.test(r.Price ?? '')) throw new DatasetError(path, line, `Price "${r.Price}" is not a 2-decimal number`);
      const customer = r.CustomerNo === 'NA' ? null : Number(r.CustomerNo);
      if (customer !== null && !Number.isInteger(customer))
        throw new DatasetError(path, line, `CustomerNo "${r.CustomerNo}" is neither an integer nor NA`);
      yield {
        transactionNo: r.TransactionNo!,
        date: parseDate(path, line, r.Date!),
        productNo: r.ProductNo!,
        productName: r.ProductName!,
        price: r.Price!,
        quantity,
        customerNo: customer,
        country: r.Country!,
      };
    }
  } finally {
    input.destroy();
  }
}

/** Group lines by TransactionNo, in order of first appearance (the file interleaves transactions). */
export async function readOrders(path = DEFAULT_DATASET, limit = Infinity): Promise<OrderLines[]> {
  const byNo = new Map<string, OrderLines>();
  for await (const line of readSaleLines(path, limit)) {
    let order = byNo.get(line.transactionNo);
    if (!order) byNo.set(line.transactionNo, (order = { transactionNo: line.transactionNo, lines: [] }));
    order.lines.push(line);
  }
  return [...byNo.values()];
}
