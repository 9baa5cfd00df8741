import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../errors.ts';
import type { PrismaClient } from './db.ts';
import type { OrderStatus } from './generated/prisma/enums.ts';

/**
 * Live app traffic through Prisma at a target rate, with a configurable mix
 * of the writes the squad's app makes. Used for demos, tests and benchmarks.
 */
export const TRAFFIC_OPS = ['new-order', 'status', 'item-quantity', 'attributes', 'cancel', 'delete-draft', 'price', 'email'] as const;
export type TrafficOp = (typeof TRAFFIC_OPS)[number];
export type TrafficMix = Record<TrafficOp, number>;

export const DEFAULT_MIX: TrafficMix = {
  'new-order': 30,
  status: 20,
  'item-quantity': 10,
  attributes: 10,
  cancel: 5,
  'delete-draft': 5,
  price: 10,
  email: 10,
};

/** Parse "new-order=5,status=2": unnamed ops get weight 0 when any is named. */
export function parseMix(text: string | undefined): TrafficMix {
  if (!text) return { ...DEFAULT_MIX };
  const mix = Object.fromEntries(TRAFFIC_OPS.map((op) => [op, 0])) as TrafficMix;
  for (const part of text.split(',').filter(Boolean)) {
    const [name, weight] = part.split('=');
    if (!TRAFFIC_OPS.includes(name as TrafficOp)) {
      throw new ConfigError('--mix', `unknown operation "${name}". Allowed: ${TRAFFIC_OPS.join(', ')}`);
    }
    const w = Number(weight);
    if (!Number.isFinite(w) || w < 0) throw new ConfigError('--mix', `weight of "${name}" must be a number >= 0, got "${weight}"`);
    mix[name as TrafficOp] = w;
  }
  if (Object.values(mix).every((w) => w === 0)) throw new ConfigError('--mix', 'at least one operation needs a weight > 0');
  return mix;
}

export interface TrafficOptions {
  /** Target operations per second. */
  rate: number;
  durationMs?: number;
  mix?: TrafficMix;
  concurrency?: number;
  signal?: AbortSignal;
  reportEveryMs?: number;
  onReport?: (stats: TrafficStats) => void;
}

export interface TrafficStats {
  ops: Record<TrafficOp, number>;
  /** Operations that found nothing to act on (e.g. no draft order to delete). */
  noops: number;
  errors: number;
  lastError?: string;
  elapsedMs: number;
  achievedRate: number;
}

interface OrderRef {
  id: bigint;
  status: OrderStatus;
}

const NEXT_STATUS: Partial<Record<OrderStatus, OrderStatus>> = { draft: 'placed', placed: 'paid', paid: 'shipped' };

export async function runTraffic(prisma: PrismaClient, opts: TrafficOptions): Promise<TrafficStats> {
  if (!(opts.rate > 0)) throw new ConfigError('--rate', `must be > 0 operations per second, got ${opts.rate}`);
  const mix = opts.mix ?? DEFAULT_MIX;
  const totalWeight = TRAFFIC_OPS.reduce((n, op) => n + mix[op], 0);

  // Pools of live keys. Bounded: we only need something to act on, not everything.
  const customers = (await prisma.customer.findMany({ select: { id: true }, take: 20_000 })).map((c) => c.id);
  const products = await prisma.product.findMany({ select: { productNo: true, price: true }, take: 20_000 });
  const orders: OrderRef[] = await prisma.order.findMany({
    select: { id: true, status: true },
    where: { status: { not: 'cancelled' } },
    orderBy: { id: 'desc' },
    take: 5_000,
  });
  const items = (await prisma.orderItem.findMany({ select: { id: true }, orderBy: { id: 'desc' }, take: 5_000 })).map((i) => i.id);
  const runId = Date.now().toString(36);
  let seq = 0;
  const pick = <T>(xs: T[]): T | undefined => xs[Math.floor(Math.random() * xs.length)];

  const ensureCatalog = async () => {
    if (customers.length === 0) {
      const id = 900_000 + Math.floor(Math.random() * 99_999);
      await prisma.customer.upsert({
        where: { id },
        create: { id, email: `traffic${id}@shop.example`, country: 'United Kingdom' },
        update: {},
      });
      customers.push(id);
    }
    if (products.length === 0) {
      const p = await prisma.product.upsert({
        where: { productNo: 'TRAFFIC1' },
        create: { productNo: 'TRAFFIC1', name: 'Traffic Test Product', price: '9.99' },
        update: {},
      });
      products.push({ productNo: p.productNo, price: p.price });
    }
  };

  /** Returns false when there was nothing to act on. */
  const run = async (op: TrafficOp): Promise<boolean> => {
    switch (op) {
      case 'new-order': {
        await ensureCatalog();
        const lines = Array.from({ length: 1 + Math.floor(Math.random() * 4) }, () => pick(products)!);
        const status: OrderStatus = Math.random() < 0.3 ? 'draft' : 'placed';
        const order = await prisma.order.create({
          data: {
            transactionNo: `W${runId}${(seq++).toString(36).padStart(5, '0')}`,
            orderedAt: new Date(),
            customerId: pick(customers)!,
            status,
            attributes: { channel: pick(['web', 'app', 'phone'])!, source: 'traffic' },
            items: {
              createMany: {
                data: lines.map((p) => ({ productNo: p.productNo, unitPrice: p.price, quantity: 1 + Math.floor(Math.random() * 10) })),
              },
            },
          },
          select: { id: true, items: { select: { id: true } } },
        });
        orders.push({ id: order.id, status });
        items.push(...order.items.map((i) => i.id));
        return true;
      }
      case 'status': {
        const o = orders.find((x) => NEXT_STATUS[x.status] !== undefined && Math.random() < 0.2) ?? pick(orders);
        const next = o && NEXT_STATUS[o.status];
        if (!o || !next) return false;
        const { count } = await prisma.order.updateMany({ where: { id: o.id, status: o.status }, data: { status: next } });
        o.status = next;
        return count > 0;
      }
      case 'item-quantity': {
        const id = pick(items);
        if (id === undefined) return false;
        const { count } = await prisma.orderItem.updateMany({ where: { id }, data: { quantity: 1 + Math.floor(Math.random() * 20) } });
        return count > 0;
      }
      case 'attributes': {
        const o = pick(orders);
        if (!o) return false;
        const patch = JSON.stringify(
          Math.random() < 0.5 ? { gift_wrap: Math.random() < 0.5 } : { coupon: `SAVE${5 * (1 + Math.floor(Math.random() * 4))}` },
        );
        const count =
          await prisma.$executeRaw`UPDATE orders SET attributes = attributes || ${patch}::jsonb, updated_at = now() WHERE id = ${o.id}`;
        return count > 0;
      }
      case 'cancel': {
        const o = orders.find((x) => (x.status === 'placed' || x.status === 'paid') && Math.random() < 0.1);
        if (!o) return false;
        const { count } = await prisma.order.updateMany({ where: { id: o.id, status: o.status }, data: { status: 'cancelled' } });
        orders.splice(orders.indexOf(o), 1);
        return count > 0;
      }
      case 'delete-draft': {
        const o = orders.find((x) => x.status === 'draft');
        if (!o) return false;
        orders.splice(orders.indexOf(o), 1);
        const { count } = await prisma.order.deleteMany({ where: { id: o.id, status: 'draft' } });
        return count > 0;
      }
      case 'price': {
        const p = pick(products);
        if (!p) return false;
        const factor = 0.9 + Math.random() * 0.2;
        const price = Math.max(0.01, Number(p.price) * factor).toFixed(2);
        await prisma.product.update({ where: { productNo: p.productNo }, data: { price } });
        p.price = price as unknown as typeof p.price;
        return true;
      }
      case 'email': {
        const id = pick(customers);
        if (id === undefined) return false;
        const { count } = await prisma.customer.updateMany({
          where: { id },
          data: { email: `customer${id}.${runId}${seq++}@shop.example` },
        });
        return count > 0;
      }
    }
  };

  const chooseOp = (): TrafficOp => {
    let r = Math.random() * totalWeight;
    for (const op of TRAFFIC_OPS) {
      r -= mix[op];
      if (r < 0) return op;
    }
    return 'new-order';
  };

  const stats: TrafficStats = {
    ops: Object.fromEntries(TRAFFIC_OPS.map((op) => [op, 0])) as Record<TrafficOp, number>,
    noops: 0,
    errors: 0,
    elapsedMs: 0,
    achievedRate: 0,
  };
  const started = performance.now();
  const concurrency = opts.concurrency ?? 8;
  const inflight = new Set<Promise<void>>();
  let launched = 0;
  let done = 0;
  let lastReport = started;
  const update = () => {
    stats.elapsedMs = performance.now() - started;
    stats.achievedRate = done / Math.max(stats.elapsedMs / 1000, 1e-9);
  };

  while (!opts.signal?.aborted && (opts.durationMs === undefined || performance.now() - started < opts.durationMs)) {
    const now = performance.now();
    // Open-loop pacing: launch what is due, but drop backlog older than one second.
    const expected = Math.floor(((now - started) / 1000) * opts.rate);
    if (expected - launched > opts.rate) launched = expected - Math.ceil(opts.rate);
    const due = expected - launched;
    for (let i = 0; i < due && inflight.size < concurrency; i++) {
      const op = chooseOp();
      launched++;
      const p: Promise<void> = run(op)
        .then((acted) => {
          if (acted) stats.ops[op]++;
          else stats.noops++;
        })
        .catch((err: unknown) => {
          stats.errors++;
          stats.lastError = `${op}: ${(err as Error).message.split('\n').slice(-1)[0]}`;
        })
        .finally(() => {
          done++;
          inflight.delete(p);
        });
      inflight.add(p);
    }
    if (opts.onReport && now - lastReport >= (opts.reportEveryMs ?? 5000)) {
      lastReport = now;
      update();
      opts.onReport(stats);
    }
    if (inflight.size >= concurrency) await Promise.race(inflight);
    else await sleep(Math.max(1, Math.min(20, 1000 / opts.rate)));
  }
  await Promise.all(inflight);
  update();
  return stats;
}
