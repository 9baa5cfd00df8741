/**
 * Kafka's `sasl.jaas.config` in the Java form that managed services hand out, e.g. Confluent Cloud
 * (`…PlainLoginModule required username='KEY' password='SECRET';`) and Azure Event Hubs
 * (`…PlainLoginModule required username="$ConnectionString" password="Endpoint=sb://…";`).
 *
 * Node's Kafka clients take a username and password instead, and no npm package parses this format,
 * so this small tokenizer follows what Kafka's own parser accepts (org.apache.kafka.common.security.JaasConfig,
 * a java.io.StreamTokenizer): `<login module class> <control flag> (<name>=<value>)* ;`, values bare or in
 * single or double quotes with backslash escapes. Errors never quote a value: it may be the secret.
 */

export const JAAS_LOGIN_MODULES = {
  'org.apache.kafka.common.security.plain.PlainLoginModule': 'PLAIN',
  'org.apache.kafka.common.security.scram.ScramLoginModule': 'SCRAM',
} as const;

export interface JaasLogin {
  /** The login module's class name as written. */
  module: string;
  /** PLAIN or SCRAM (either SCRAM-SHA-256 or SCRAM-SHA-512: the mechanism key says which). */
  family: 'PLAIN' | 'SCRAM';
  username: string;
  password: string;
}

/** The text is not a JAAS login the Node clients can use; `message` never holds a value from it. */
export class JaasSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JaasSyntaxError';
  }
}

const CONTROL_FLAGS = new Set(['required', 'requisite', 'sufficient', 'optional']);

type Token = { kind: 'word' | 'quoted'; text: string } | { kind: '=' | ';' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const ch = text[i]!;
    if (/\s/.test(ch)) {
      i++;
    } else if (ch === '=' || ch === ';') {
      tokens.push({ kind: ch });
      i++;
    } else if (ch === '"' || ch === "'") {
      let out = '';
      let j = i + 1;
      for (; j < text.length && text[j] !== ch; j++) {
        if (text[j] === '\\' && j + 1 < text.length) j++;
        out += text[j];
      }
      if (j >= text.length) throw new JaasSyntaxError(`a value opened with ${ch} at character ${i + 1} is never closed`);
      tokens.push({ kind: 'quoted', text: out });
      i = j + 1;
    } else {
      let j = i;
      while (j < text.length && !/[\s=;"']/.test(text[j]!)) j++;
      tokens.push({ kind: 'word', text: text.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

/** Parse one login module entry; throws JaasSyntaxError naming what is wrong (never a value). */
export function parseJaasConfig(text: string): JaasLogin {
  const tokens = tokenize(text);
  let at = 0;
  const next = () => tokens[at++];
  const module = next();
  if (module?.kind !== 'word')
    throw new JaasSyntaxError('must start with a login module class, e.g. org.apache.kafka.common.security.plain.PlainLoginModule');
  const family = JAAS_LOGIN_MODULES[module.text as keyof typeof JAAS_LOGIN_MODULES];
  if (!family)
    throw new JaasSyntaxError(
      `names the login module ${module.text}, which Tide does not support: use ${Object.keys(JAAS_LOGIN_MODULES).join(' or ')}`,
    );
  const flag = next();
  if (flag?.kind !== 'word' || !CONTROL_FLAGS.has(flag.text))
    throw new JaasSyntaxError(`needs a control flag after the login module (usually "required")`);
  const options = new Map<string, string>();
  for (;;) {
    const t = next();
    if (t === undefined) throw new JaasSyntaxError('must end with ";"');
    if (t.kind === ';') break;
    if (t.kind !== 'word') throw new JaasSyntaxError('expected an option name (e.g. username=) before a quoted value');
    if (next()?.kind !== '=') throw new JaasSyntaxError(`option ${t.text} needs "=" and a value`);
    const value = next();
    if (value?.kind !== 'word' && value?.kind !== 'quoted') throw new JaasSyntaxError(`option ${t.text} has no value`);
    options.set(t.text, value.text);
  }
  if (at < tokens.length)
    throw new JaasSyntaxError('holds more than one login module entry; a Kafka client takes exactly one (text follows the first ";")');
  const username = options.get('username');
  const password = options.get('password');
  if (!username) throw new JaasSyntaxError('has no username="…" option');
  if (password === undefined) throw new JaasSyntaxError('has no password="…" option');
  return { module: module.text, family, username, password };
}
