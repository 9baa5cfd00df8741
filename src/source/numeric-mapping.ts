import { encodeUnscaledBigInt, encodeUnscaledNumber } from '../events/avro-types.ts';
import { connect, occasionally, type DecimalHandlingMode, type Scalar, type Warn } from './mapping-parts.ts';
import { numericTypmod, parseScaledDecimal, textScale } from './pg-numeric.ts';
import * as pg from './pg-text.ts';

/** The column as numericFor needs it (type-mapping.ts' ColumnInfo has these). */
interface NumericColumn {
  name: string;
  typeMod: number;
  notNull: boolean;
}

/**
 * numeric. 'NaN', 'Infinity' and '-Infinity' (Postgres 14+; constrained
 * columns can only hold NaN):
 * - string: the text as Postgres prints it ('NaN', 'Infinity', '-Infinity');
 * - double: the IEEE values NaN, Infinity, -Infinity;
 * - precise: a decimal has no such values. A nullable column gets null and a
 *   warning (as Debezium); a NOT NULL column cannot, so the converter throws
 *   TypeConversionError saying to use decimal.handling.mode=string or double.
 */
export function numericFor(col: NumericColumn, mode: DecimalHandlingMode, warn: Warn): Scalar {
  const tm = numericTypmod(col.typeMod);
  const label = tm ? `numeric(${tm.precision},${tm.scale})` : 'numeric';
  if (mode === 'string') return { avroType: 'string', semanticType: `string (${label})` };
  if (mode === 'double') {
    const overflow = occasionally(warn, `column ${col.name}: a ${label} value is beyond the range of a double and becomes ±Infinity`, {
      column: col.name,
      type: label,
    });
    return {
      avroType: 'double',
      parse: (t) => {
        const n = pg.parseFloatText(t);
        if ((n === Infinity || n === -Infinity) && t !== 'Infinity' && t !== '-Infinity') overflow(t);
        return n;
      },
      semanticType: `double (${label})`,
    };
  }
  const special = occasionally(
    warn,
    `column ${col.name}: ${label} value has no decimal form and is sent as null (decimal.handling.mode=precise)`,
    {
      column: col.name,
      type: label,
    },
  );
  const onSpecial = (t: string): null => {
    if (col.notNull) {
      throw new pg.PgTextError(
        `has no decimal form, and the column is NOT NULL so it cannot be sent as null. Set decimal.handling.mode to string or double to carry NaN and ±Infinity`,
      );
    }
    special(t);
    return null;
  };
  const isSpecial = (t: string): boolean => t === 'NaN' || t === 'Infinity' || t === '-Infinity';
  const bytes = (n: number | bigint): Buffer => (typeof n === 'number' ? encodeUnscaledNumber(n) : encodeUnscaledBigInt(n));
  if (!tm) {
    // Unconstrained: every value has its own scale. Debezium's VariableScaleDecimal keeps it (and Postgres' display scale: '1.50' -> 150, scale 2).
    return {
      avroType: {
        type: 'record',
        name: 'VariableScaleDecimal',
        namespace: 'io.debezium.data',
        fields: [
          { name: 'scale', type: 'int' },
          { name: 'value', type: 'bytes' },
        ],
        'connect.doc': 'Variable scaled decimal',
        'connect.version': 1,
        'connect.name': 'io.debezium.data.VariableScaleDecimal',
      },
      parse: (t) => {
        if (isSpecial(t)) return onSpecial(t);
        const scale = textScale(t);
        return { scale, value: bytes(parseScaledDecimal(t, scale, Infinity)) };
      },
      semanticType: 'io.debezium.data.VariableScaleDecimal',
    };
  }
  // Avro wants 0 <= scale <= precision; Postgres 15 also allows numeric(3,-2) (hundreds: 12300)
  // and numeric(2,5) (0.000nn). Both fit a wider Avro decimal exactly: (5,0) and (5,5).
  const scale = Math.max(tm.scale, 0);
  const precision = tm.scale < 0 ? tm.precision - tm.scale : Math.max(tm.precision, tm.scale);
  const maxIntDigits = precision - scale;
  return {
    avroType: connect('bytes', 'org.apache.kafka.connect.data.Decimal', {
      logicalType: 'decimal',
      precision,
      scale,
      'connect.parameters': { scale: String(scale), 'connect.decimal.precision': String(precision) },
    }),
    parse: (t) => (isSpecial(t) ? onSpecial(t) : bytes(parseScaledDecimal(t, scale, maxIntDigits))),
    semanticType: `decimal(${precision},${scale})`,
    fast: { kind: 'decimal', scale, maxIntDigits },
  };
}
