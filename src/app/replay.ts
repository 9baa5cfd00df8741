import { createHash } from 'node:crypto';
import type { PrismaClient } from './db.ts';
import { readOrders, type OrderLines } from './dataset.ts';

const TRANSACTION_LIMITS = { maxWait: 30_000, timeout: 60_000 };

/**
 * Loads the online-shop data set through the app's own Prisma code, one
 * database transaction per order, the way the squad's app writes: customer and
 * products if new, then the order with its items.
 *
 * Re-running is safe: orders already present (by transaction number) are skipped.
 */
export interface ReplayOptions {
  dataPath?: string;
  /** Read at most this many sale lines of the file. */
  limit?: number;
  /** Orders written in parallel. */
  concurrency?: number;
  onProgress?: (done: { rows: number; orders: number; totalRows: number }) => void;
  /** Stop after the orders in flight (each is one transaction, so an order is written whole or not at all). */
  signal?: AbortSignal;
}

export interface ReplayResult {
  orders: number;
  /** Sale lines written (skipped orders not counted). */
  rows: number;
  skippedOrders: number;
  /** The signal stopped it before the end of the data. */
  stopped: boolean;
  seconds: number;
  rowsPerSecond: number;
}

export function customerEmail(customerNo: number): string {
  return `customer${customerNo}@shop.example`;
}

/** Deterministic free-form attributes, so runs are reproducible. */
export function orderAttributes(transactionNo: string): Record<string, string> {
  const h = createHash('sha1').update(transactionNo).digest();
  const attrs: Record<string, string> = { channel: ['web', 'app', 'phone', 'marketplace'][h[0]! % 4]!, source: 'replay' };
  if (h[1]! % 5 === 0) attrs.coupon = `SAVE${5 + (h[2]! % 4) * 5}`;
  return attrs;
}

export async function replay(prisma: PrismaClient, opts: ReplayOptions = {}): Promise<ReplayResult> {
  const started = performance.now();
  const orders = await readOrders(opts.dataPath, opts.limit);
  const totalRows = orders.reduce((n, o) => n + o.lines.length, 0);

  const existing = new Set((await prisma.order.findMany({ select: { transactionNo: true } })).map((o) => o.transactionNo));
  // Keys known to be committed. Anything else is written with ON CONFLICT DO NOTHING, which also waits
  // correctly for a parallel transaction inserting the same key.
  const customers = new Set((await prisma.customer.findMany({ select: { id: true } })).map((c) => c.id));
  const products = new Set((await prisma.product.findMany({ select: { productNo: true } })).map((p) => p.productNo));

  let rows = 0;
  let writtenRows = 0;
  let written = 0;
  let skipped = 0;
  const queue = orders.filter((o) => {
    if (!existing.has(o.transactionNo)) return true;
    skipped++;
    rows += o.lines.length;
    return false;
  });

  const writeOrder = async (order: OrderLines) => {
    const first = order.lines[0]!;
    const newProducts = new Map<string, { productNo: string; name: string; price: string }>();
    for (const l of order.lines) {
      if (!products.has(l.productNo) && !newProducts.has(l.productNo)) {
        newProducts.set(l.productNo, { productNo: l.productNo, name: l.productName, price: l.price });
      }
    }
    const customerNo = first.customerNo;
    await prisma.$transaction(async (tx) => {
      if (customerNo !== null && !customers.has(customerNo)) {
        await tx.customer.createMany({
          data: [{ id: customerNo, email: customerEmail(customerNo), country: first.country }],
          skipDuplicates: true,
        });
      }
      if (newProducts.size > 0) {
        // Sorted, so two transactions never insert the same keys in opposite orders (no deadlock).
        const data = [...newProducts.values()].sort((a, b) => (a.productNo < b.productNo ? -1 : 1));
        await tx.product.createMany({ data, skipDuplicates: true });
      }
      await tx.order.create({
        data: {
          transactionNo: order.transactionNo,
          orderedAt: first.date,
          customerId: customerNo,
          status: order.transactionNo.startsWith('C') ? 'cancelled' : 'shipped',
          attributes: orderAttributes(order.transactionNo),
          items: {
            createMany: { data: order.lines.map((l) => ({ productNo: l.productNo, unitPrice: l.price, quantity: l.quantity })) },
          },
        },
      });
      // Prisma's defaults (2 s to get a connection, 5 s for the transaction) fail the replay on a busy
      // machine; an order is a handful of rows, so waiting longer is the right answer to load.
    }, TRANSACTION_LIMITS);
    if (customerNo !== null) customers.add(customerNo);
    for (const p of newProducts.keys()) products.add(p);
    rows += order.lines.length;
    writtenRows += order.lines.length;
    written++;
    opts.onProgress?.({ rows, orders: written + skipped, totalRows });
  };

  let next = 0;
  const worker = async () => {
    while (next < queue.length && !opts.signal?.aborted) await writeOrder(queue[next++]!);
  };
  await Promise.all(Array.from({ length: Math.max(1, opts.concurrency ?? 4) }, worker));

  const seconds = (performance.now() - started) / 1000;
  return {
    orders: written,
    rows: writtenRows,
    skippedOrders: skipped,
    stopped: next < queue.length,
    seconds,
    rowsPerSecond: writtenRows / seconds,
  };
}
