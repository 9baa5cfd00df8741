import { PgTextError } from './pg-text.ts';

/**
 * numeric text output ('-123.45', '0.0001', '100000000000000000000'; never an
 * exponent) -> the unscaled integer of the value at `scale`, i.e. value × 10^scale.
 *
 * Fraction digits beyond `scale` must be zeros and at most `maxIntDigits`
 * significant integer digits are allowed: a value that does not fit is an error,
 * never rounded. Small values (up to 15 significant digits, which covers
 * numeric(12,2) and friends) are computed as a JS number without allocating;
 * longer ones become a bigint.
 *
 * 'NaN', 'Infinity' and '-Infinity' are not handled here (the caller decides
 * per decimal.handling.mode).
 */
export function parseScaledDecimal(text: string, scale: number, maxIntDigits: number): number | bigint {
  const len = text.length;
  const neg = text.charCodeAt(0) === 45;
  const intStart = neg ? 1 : 0;
  let i = intStart;
  let n = 0;
  let sig = 0; // significant digits accumulated into n so far
  for (; i < len; i++) {
    const c = text.charCodeAt(i);
    if (c === 46) break;
    const d = c - 48;
    if (d < 0 || d > 9) throw new PgTextError('is not a valid numeric');
    if (sig > 0 || d !== 0) sig++;
    n = n * 10 + d;
  }
  const dot = i;
  if (dot === intStart) throw new PgTextError('is not a valid numeric');
  if (sig > maxIntDigits) throw new PgTextError(`has ${sig} integer digits; the column allows ${maxIntDigits}`);
  let fracLen = 0;
  if (dot < len) {
    for (i = dot + 1; i < len; i++, fracLen++) {
      const d = text.charCodeAt(i) - 48;
      if (d < 0 || d > 9) throw new PgTextError('is not a valid numeric');
      if (fracLen < scale) {
        if (sig > 0 || d !== 0) sig++;
        n = n * 10 + d;
      } else if (d !== 0) {
        throw new PgTextError(`has more than ${scale} fraction digits`);
      }
    }
    if (fracLen === 0) throw new PgTextError('is not a valid numeric');
  }
  const kept = fracLen < scale ? fracLen : scale;
  if (sig > 0) sig += scale - kept;
  if (sig <= 15) {
    for (let k = kept; k < scale; k++) n *= 10;
    return neg && n !== 0 ? -n : n;
  }
  // Too many digits for a double: let BigInt read them.
  const digitsText = text.slice(intStart, dot) + (kept > 0 ? text.slice(dot + 1, dot + 1 + kept) : '') + '0'.repeat(scale - kept);
  const b = BigInt(digitsText);
  return neg ? -b : b;
}

/** The number of fraction digits in numeric text (its display scale). */
export function textScale(text: string): number {
  const dot = text.indexOf('.');
  return dot < 0 ? 0 : text.length - dot - 1;
}

/** numeric typmod -> (precision, scale); -1 (unconstrained) -> undefined. Postgres 15 stores scale as 11-bit signed. */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < 4) return undefined;
  const t = typmod - 4; // VARHDRSZ
  return { precision: (t >> 16) & 0xffff, scale: ((t & 0x7ff) ^ 1024) - 1024 };
}
