import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { StackServiceError } from '../errors.ts';
import type { StackContext } from './service.ts';

/**
 * Throwaway certificates for the secured local stack, made with `openssl` (Debian's, on every machine
 * here): one CA that signs the servers' certificate and a client certificate, plus the bad ones the
 * tests need. Generated once into `.stack/certs/` and kept, so a restarted service keeps trusting the
 * same CA. Nothing here is a secret worth guarding: the keys exist only for the local stack.
 *
 * The server certificate names only `localhost` (DNS) in its subjectAltName, not 127.0.0.1: the secured
 * services are reached as `localhost`, and a client that connects to `127.0.0.1` under host-name
 * checking (`verify-full`, `kafka.ssl.endpoint.identification.algorithm=https`) sees a real mismatch.
 */
export interface StackCerts {
  dir: string;
  /** The stack CA's certificate (PEM): what clients trust. */
  ca: string;
  /** The servers' certificate and key (PEM), signed by the CA, SAN DNS:localhost. */
  serverCert: string;
  serverKey: string;
  /** The same certificate and key in one PKCS#12 file (password `STORE_PASSWORD`), for Java servers. */
  serverP12: string;
  /** A client certificate and key signed by the CA (CN=tide-client), for mutual TLS. */
  clientCert: string;
  clientKey: string;
  /** A client certificate signed by the CA that expired in the past. */
  expiredClientCert: string;
  expiredClientKey: string;
  /** A CA the stack does not trust, and a client certificate it signed. */
  otherCa: string;
  untrustedClientCert: string;
  untrustedClientKey: string;
  /** The PKCS#12 truststore holding the CA (password `STORE_PASSWORD`), for Java servers that check clients. */
  truststoreP12: string;
}

/** The password of the PKCS#12 stores: local and throwaway, like the keys they hold. */
export const STORE_PASSWORD = 'tide-stack';

export function stackCertPaths(ctx: Pick<StackContext, 'stackDir'>): StackCerts {
  const dir = join(ctx.stackDir, 'certs');
  const f = (name: string) => join(dir, name);
  return {
    dir,
    ca: f('ca.pem'),
    serverCert: f('server.pem'),
    serverKey: f('server.key'),
    serverP12: f('server.p12'),
    clientCert: f('client.pem'),
    clientKey: f('client.key'),
    expiredClientCert: f('client-expired.pem'),
    expiredClientKey: f('client-expired.key'),
    otherCa: f('other-ca.pem'),
    untrustedClientCert: f('client-untrusted.pem'),
    untrustedClientKey: f('client-untrusted.key'),
    truststoreP12: f('truststore.p12'),
  };
}

/** Make the certificates if any is missing. Idempotent: existing ones are kept. */
export function ensureStackCerts(ctx: Pick<StackContext, 'stackDir'>): StackCerts {
  const c = stackCertPaths(ctx);
  const all = Object.entries(c)
    .filter(([k]) => k !== 'dir')
    .map(([, v]) => v);
  if (all.every((p) => existsSync(p))) return c;
  mkdirSync(c.dir, { recursive: true });
  const log = join(c.dir, 'openssl.log');
  const ssl = (...args: string[]) => {
    try {
      execFileSync('openssl', args, { cwd: c.dir, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      const e = err as { stderr?: Buffer; message: string };
      writeFileSync(log, `openssl ${args.join(' ')}\n${e.stderr?.toString() ?? e.message}\n`, { flag: 'a' });
      throw new StackServiceError('certs', log, `openssl ${args[0]} failed: ${e.stderr?.toString().trim() ?? e.message}`, { cause: err });
    }
  };
  const key = (path: string) => ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', path);
  const ca = (certPath: string, keyPath: string, cn: string) => {
    key(keyPath);
    ssl('req', '-x509', '-new', '-key', keyPath, '-sha256', '-days', '3650', '-subj', `/CN=${cn}`, '-out', certPath);
  };
  /** A leaf signed by `caCert`; `days` < 0 makes one that has already expired (via -not_before/-not_after). */
  const leaf = (certPath: string, keyPath: string, cn: string, ext: string, caCert: string, caKey: string, expired = false) => {
    key(keyPath);
    const csr = `${certPath}.csr`;
    const extFile = `${certPath}.ext`;
    writeFileSync(join(c.dir, extFile.slice(c.dir.length + 1)), `${ext}\n`);
    ssl('req', '-new', '-key', keyPath, '-subj', `/CN=${cn}`, '-out', csr);
    if (!expired) {
      ssl(
        'x509',
        '-req',
        '-in',
        csr,
        '-CA',
        caCert,
        '-CAkey',
        caKey,
        '-CAcreateserial',
        '-sha256',
        '-days',
        '3650',
        '-extfile',
        extFile,
        '-out',
        certPath,
      );
      return;
    }
    // OpenSSL 3.0's x509 cannot set dates in the past; its `ca` command can, with a minimal database.
    const caDir = join(c.dir, 'expired-ca');
    mkdirSync(caDir, { recursive: true });
    writeFileSync(join(caDir, 'index.txt'), '');
    writeFileSync(join(caDir, 'serial'), '1000\n');
    const conf = join(caDir, 'ca.cnf');
    writeFileSync(
      conf,
      `[ca]\ndefault_ca=tide\n[tide]\ndatabase=${caDir}/index.txt\nserial=${caDir}/serial\nnew_certs_dir=${caDir}\n` +
        `default_md=sha256\npolicy=any\ncopy_extensions=none\n[any]\ncommonName=supplied\n`,
    );
    ssl(
      'ca',
      '-batch',
      '-config',
      conf,
      '-in',
      csr,
      '-cert',
      caCert,
      '-keyfile',
      caKey,
      '-startdate',
      '20200101000000Z',
      '-enddate',
      '20200102000000Z',
      '-extfile',
      extFile,
      '-notext',
      '-out',
      certPath,
    );
  };

  const caKey = join(c.dir, 'ca.key');
  const otherCaKey = join(c.dir, 'other-ca.key');
  ca(c.ca, caKey, 'Tide local stack CA');
  ca(c.otherCa, otherCaKey, 'Some other CA');
  const serverExt =
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost';
  const clientExt = 'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth';
  leaf(c.serverCert, c.serverKey, 'localhost', serverExt, c.ca, caKey);
  leaf(c.clientCert, c.clientKey, 'tide-client', clientExt, c.ca, caKey);
  leaf(c.expiredClientCert, c.expiredClientKey, 'tide-client-expired', clientExt, c.ca, caKey, true);
  leaf(c.untrustedClientCert, c.untrustedClientKey, 'tide-client-untrusted', clientExt, c.otherCa, otherCaKey);
  ssl(
    'pkcs12',
    '-export',
    '-in',
    c.serverCert,
    '-inkey',
    c.serverKey,
    '-certfile',
    c.ca,
    '-name',
    'server',
    '-out',
    c.serverP12,
    '-passout',
    `pass:${STORE_PASSWORD}`,
  );
  // A truststore needs a trusted-certificate entry; OpenSSL 3.0 cannot write one (-jdktrust is 3.2+), Java's keytool can.
  try {
    execFileSync(
      'keytool',
      [
        '-importcert',
        '-noprompt',
        '-alias',
        'tide-ca',
        '-file',
        c.ca,
        '-keystore',
        c.truststoreP12,
        '-storetype',
        'PKCS12',
        '-storepass',
        STORE_PASSWORD,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
  } catch (err) {
    throw new StackServiceError('certs', log, `keytool -importcert failed: ${(err as { stderr?: Buffer }).stderr?.toString().trim()}`, {
      cause: err,
    });
  }
  return c;
}

/** The CA's PEM text, for clients built in tests. */
export function stackCaPem(ctx: Pick<StackContext, 'stackDir'>): string {
  return readFileSync(stackCertPaths(ctx).ca, 'utf8');
}
