import { PgTextError } from './pg-text.ts';

/**
 * Postgres array text output -> its elements as text (null for NULL).
 *
 * array_out writes '{e1,e2,...}'. An element is double-quoted when it is
 * empty, equals NULL in any case, or contains a delimiter, brace, quote,
 * backslash or white space; inside quotes '"' and '\' are backslash-escaped.
 * An unquoted NULL is SQL NULL; a quoted "NULL" is the string. The delimiter
 * is ',' for every built-in type except box (';').
 *
 * A lower bound other than 1 is printed first: '[0:1]={a,b}'. The elements
 * are still returned and lastArrayHadBounds() says so, for the caller to warn
 * that the bound was dropped. Multi-dimensional values ('{{1,2},{3,4}}') throw
 * PgMultiDimArrayError: an Avro array of the element type cannot hold them.
 */
export class PgMultiDimArrayError extends PgTextError {
  constructor() {
    super('is a multi-dimensional array, which the one-dimensional Avro array of this column cannot hold');
    this.name = 'PgMultiDimArrayError';
  }
}

let lastHadBounds = false;

/** Whether the last value parseArrayText read had explicit bounds (kept out of the result: no object per value). */
export function lastArrayHadBounds(): boolean {
  return lastHadBounds;
}

/** The elements; the caller may overwrite them in place with converted values. */
export function parseArrayText(text: string, delimiter = 44): unknown[] {
  let i = 0;
  const len = text.length;
  lastHadBounds = false;
  if (text.charCodeAt(0) === 91) {
    // '[lo:hi]' (one per dimension) then '='
    const eq = text.indexOf('=');
    if (eq < 0) throw new PgTextError('is not a valid array (bounds without "=")');
    if (text.indexOf('][') >= 0 && text.indexOf('][') < eq) throw new PgMultiDimArrayError();
    lastHadBounds = true;
    i = eq + 1;
  }
  if (text.charCodeAt(i) !== 123) throw new PgTextError('is not a valid array (no "{")');
  i++;
  const items: unknown[] = [];
  if (text.charCodeAt(i) === 125) {
    if (i + 1 !== len) throw new PgTextError('is not a valid array (text after "}")');
    return items;
  }
  while (true) {
    const c = text.charCodeAt(i);
    if (c === 123) throw new PgMultiDimArrayError();
    if (c === 34) {
      // quoted: copy runs between escapes
      let out = '';
      let start = ++i;
      while (true) {
        if (i >= len) throw new PgTextError('is not a valid array (unterminated quote)');
        const q = text.charCodeAt(i);
        if (q === 92) {
          out += text.slice(start, i) + text.charAt(i + 1);
          i += 2;
          start = i;
        } else if (q === 34) {
          out += text.slice(start, i);
          i++;
          break;
        } else i++;
      }
      items.push(out);
    } else {
      const start = i;
      let escaped = false;
      while (i < len) {
        const u = text.charCodeAt(i);
        if (u === delimiter || u === 125) break;
        if (u === 92) {
          escaped = true;
          i++;
        }
        i++;
      }
      const raw = text.slice(start, i);
      if (raw.length === 0) throw new PgTextError('is not a valid array (empty element)');
      if (escaped) items.push(raw.replace(/\\(.)/g, '$1'));
      else items.push(raw.length === 4 && raw.toUpperCase() === 'NULL' ? null : raw);
    }
    const sep = text.charCodeAt(i);
    if (sep === delimiter) {
      i++;
      continue;
    }
    if (sep === 125 && i + 1 === len) return items;
    throw new PgTextError('is not a valid array');
  }
}
