import { describe, expect, it } from 'vitest';
import {
  createLogger,
  MIN_SECRET_LENGTH,
  registerConfigSecrets,
  registerEnvironmentSecrets,
  registerSecret,
  scrubSecrets,
} from '../../src/log.ts';

/** A logger with Tide's settings writing into an array, one parsed JSON object per line. */
function capture(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const logger = createLogger({ write: (s: string) => void lines.push(s) }, 'debug');
  return { logger, lines };
}

describe('secrets in logs', () => {
  it('registers the registry credentials: user.info (key:secret, and the secret alone) and the bearer token', () => {
    registerConfigSecrets({
      'schema.registry.basic.auth.user.info': 'SRKEY123:sr-secret-part-0001',
      'schema.registry.bearer.auth.token': 'sr-bearer-token-0002',
    });
    expect(scrubSecrets('sent SRKEY123:sr-secret-part-0001; secret sr-secret-part-0001; token sr-bearer-token-0002')).toBe(
      'sent [redacted]; secret [redacted]; token [redacted]',
    );
  });

  it('censors secret-bearing keys of logged objects, at any depth pino allows', () => {
    const { logger, lines } = capture();
    logger.info(
      { config: { 'database.password': 'k3y-in-config-1', 'mask.hash.salt': 'k3y-in-config-2', 'database.user': 'tide' } },
      'config',
    );
    logger.info({ password: 'k3y-top-level-3', azure: { connectionString: 'k3y-nested-4', accountKey: 'k3y-nested-5' } }, 'x');
    const text = lines.join('');
    for (const s of ['k3y-in-config-1', 'k3y-in-config-2', 'k3y-top-level-3', 'k3y-nested-4', 'k3y-nested-5'])
      expect(text).not.toContain(s);
    expect(JSON.parse(lines[0]!).config).toEqual({
      'database.password': '[redacted]',
      'mask.hash.salt': '[redacted]',
      'database.user': 'tide',
    });
  });

  it('scrubs registered secret values from any text: messages, error messages, causes, stacks; also JSON-escaped and URL-encoded', () => {
    const secret = 'Wh1sper"of/the\\deep';
    registerSecret(secret);
    const { logger, lines } = capture();
    const cause = new Error(`auth failed for ${secret}`);
    logger.error(
      { err: new Error(`connect to postgres://u:${encodeURIComponent(secret)}@db/x failed`, { cause }) },
      `while using ${secret}`,
    );
    const line = lines.join('');
    expect(line).not.toContain(JSON.stringify(secret).slice(1, -1));
    expect(line).not.toContain(encodeURIComponent(secret));
    expect(line).not.toContain('Wh1sper');
    const parsed = JSON.parse(line) as { msg: string; err: { message: string } };
    expect(parsed.msg).toBe('while using [redacted]');
    expect(parsed.err.message).toContain('auth failed for [redacted]');
  });

  it('scrubs credential shapes whatever their value: URL userinfo, Azure keys and SAS signatures, libpq password=', () => {
    expect(scrubSecrets('cannot reach http://svc:s3cr3t@registry:8081/apis/ccompat/v7 (ECONNREFUSED)')).toBe(
      'cannot reach http://svc:[redacted]@registry:8081/apis/ccompat/v7 (ECONNREFUSED)',
    );
    expect(scrubSecrets('DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=abc+/def==;EndpointSuffix=core.windows.net')).toBe(
      'DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=[redacted];EndpointSuffix=core.windows.net',
    );
    expect(scrubSecrets('GET https://acct.blob.core.windows.net/c/x?sv=2024&sig=AbC%2Bdef&se=1')).toBe(
      'GET https://acct.blob.core.windows.net/c/x?sv=2024&sig=[redacted]&se=1',
    );
    expect(scrubSecrets("host=db user=tide password='it s' dbname=x")).toBe('host=db user=tide password=[redacted] dbname=x');
    expect(scrubSecrets('no secret here: postgres://db:5432/orders, 10/20 rows')).toBe(
      'no secret here: postgres://db:5432/orders, 10/20 rows',
    );
  });

  it('registers the secrets of connector configs and of the environment, but not short values that are ordinary words', () => {
    registerConfigSecrets({
      'database.password': 'cfg-password-123',
      'mask.hash.salt': 'cfg-salt-4567890',
      'schema.registry.url': 'https://reg:url%2Fpass%40word@registry.example.com/',
      'database.user': 'tide-user-name-long',
      'database.hostname': 'db.example.com',
    });
    registerEnvironmentSecrets({
      PGPASSWORD: 'env-pg-password',
      AZURE_STORAGE_CONNECTION_STRING: 'AccountName=a;AccountKey=env-account-key==',
      TIDE_MASK_SALT: 'tide',
    });
    const text = scrubSecrets(
      'cfg-password-123 cfg-salt-4567890 url/pass@word env-pg-password env-account-key== tide-user-name-long db.example.com tide',
    );
    expect(text).toBe('[redacted] [redacted] [redacted] [redacted] [redacted] tide-user-name-long db.example.com tide');
    expect(MIN_SECRET_LENGTH).toBe(8);
  });
});
