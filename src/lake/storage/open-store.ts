import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { StoragePipelineOptions } from '@azure/storage-blob';
import { ConfigError } from '../../errors.ts';
import type { AzureAuth, AzureStoreOptions } from './azure-store.ts';
import type { ObjectStore } from './object-store.ts';
import type { S3StoreOptions } from './s3-store.ts';

/**
 * Where the lake lives, from one URI (the sink's `lake.uri`):
 *
 *   .lake, /data/lake, file:///data/lake
 *       the local filesystem (a relative path is relative to the working directory)
 *   az://<container>/<prefix>
 *       Azure Blob Storage; the account comes from the credentials
 *   az://<container>@<account>/<prefix>
 *       the same, naming the account (what AzureStore.uri prints)
 *   abfss://<container>@<account>.dfs.core.windows.net/<prefix>
 *       ADLS Gen2 in the form Spark and Databricks use (same account, via its Blob endpoint)
 *   s3://<bucket>/<prefix>, s3a://<bucket>/<prefix>
 *       Amazon S3 or an S3-compatible store (s3a:// is how Spark's Hadoop connector writes it)
 *
 * S3 settings (`s3` options, the sink's s3.region / s3.endpoint / s3.force.path.style keys): the
 * region and endpoint fall back to the AWS SDK's own (AWS_REGION, AWS_ENDPOINT_URL_S3, the profile);
 * credentials always come from the SDK's default chain (environment, profile, web identity / IRSA,
 * instance metadata) unless a test passes them. Path-style addressing is on by default when an
 * endpoint is set (MinIO, versitygw and Ceph are usually reached as http://host:port/<bucket>).
 *
 * Azure credentials, first match wins: options (connectionString | accountKey | sasToken),
 * then the environment: AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_ACCOUNT +
 * AZURE_STORAGE_KEY, AZURE_STORAGE_SAS_TOKEN. When the URI names an account, credentials
 * for another account are skipped (so the local stack's azurite connection string in
 * .stack/env never sends a production URI to the emulator). AZURE_STORAGE_BLOB_ENDPOINT (or
 * `blobEndpoint`) overrides `https://<account>.blob.core.windows.net` for keys and SAS.
 * The prefix is taken literally (no percent-decoding).
 */
export const ACCEPTED_FORMS = [
  '<directory> or file:///<absolute directory>   (local filesystem)',
  'az://<container>/<prefix>                      (Azure Blob Storage, account from the credentials)',
  'az://<container>@<account>/<prefix>',
  'abfss://<container>@<account>.dfs.core.windows.net/<prefix>   (ADLS Gen2)',
  's3://<bucket>/<prefix> or s3a://<bucket>/<prefix>       (Amazon S3 and S3-compatible stores)',
];

export type StoreLocation =
  | { kind: 'local'; dir: string }
  | { kind: 'azure'; container: string; prefix: string; account?: string; endpointSuffix?: string }
  | { kind: 's3'; bucket: string; prefix: string; scheme: 's3' | 's3a' };

/** The S3 settings of a sink connector file (s3.region, s3.endpoint, s3.force.path.style), and test-only extras. */
export interface S3OpenOptions {
  region?: string;
  /** e.g. `http://127.0.0.1:59000` for the local stack, `https://<account>.r2.cloudflarestorage.com` for R2. */
  endpoint?: string;
  /** Address buckets as `<endpoint>/<bucket>` instead of `<bucket>.<endpoint>`. Default: true when an endpoint is set. */
  forcePathStyle?: boolean;
  /** Explicit credentials (tests); production uses the SDK's default chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
  /** The SDK's attempts per request (default 3). */
  maxAttempts?: number;
  store?: Omit<S3StoreOptions, 'client' | 'bucket' | 'prefix' | 'scheme'>;
}

export interface OpenStoreOptions {
  /** Base for a relative local path. Default: process.cwd(). */
  cwd?: string;
  /** Where AZURE_STORAGE_* are read from. Default: process.env. */
  env?: NodeJS.ProcessEnv;
  connectionString?: string;
  account?: string;
  accountKey?: string;
  /** A SAS token (`sv=…&sig=…`, with or without the leading `?`). */
  sasToken?: string;
  blobEndpoint?: string;
  /** Tuning for AzureStore (cache dir, block size, logger) and the SDK's pipeline (retries, proxy). */
  azure?: Omit<AzureStoreOptions, 'container' | 'prefix'> & { pipelineOptions?: StoragePipelineOptions };
  /** The config key named in errors. Default `lake.uri`. */
  configKey?: string;
  s3?: S3OpenOptions;
  /**
   * What the caller will do, checked at open so that a wrong key, a missing bucket, a store without
   * conditional writes or a read-only lake directory fails at once. S3: `read` lists the prefix;
   * `write` (default) also checks that conditional puts are enforced. Local: `write` creates the
   * directory and checks that a file can be written there. Azure ignores it.
   */
  access?: 'read' | 'write';
}

/**
 * The store for `uri`. Each store's module is loaded on demand, so a local lake never
 * loads the Azure SDK.
 */
export async function openStore(uri: string, opts: OpenStoreOptions = {}): Promise<ObjectStore> {
  const location = parseStoreUri(uri, opts);
  if (location.kind === 'local') {
    const { LocalStore } = await import('./local-store.ts');
    const store = new LocalStore(location.dir);
    if ((opts.access ?? 'write') === 'write') await store.checkWritable();
    return store;
  }
  if (location.kind === 's3') return openS3Store(location, opts);
  const auth = resolveAzureAuth(uri, location, opts);
  const { AzureStore, azureContainerClient } = await import('./azure-store.ts');
  const { pipelineOptions, ...storeOptions } = opts.azure ?? {};
  return new AzureStore({
    ...storeOptions,
    container: azureContainerClient(auth, location.container, pipelineOptions),
    prefix: location.prefix,
  });
}

/** The S3 settings of a sink connector file. */
export function s3Settings(config: { 's3.region'?: string; 's3.endpoint'?: string; 's3.force.path.style'?: boolean }): S3OpenOptions {
  return {
    ...(config['s3.region'] ? { region: config['s3.region'] } : {}),
    ...(config['s3.endpoint'] ? { endpoint: config['s3.endpoint'] } : {}),
    ...(config['s3.force.path.style'] !== undefined ? { forcePathStyle: config['s3.force.path.style'] } : {}),
  };
}

async function openS3Store(location: Extract<StoreLocation, { kind: 's3' }>, opts: OpenStoreOptions): Promise<ObjectStore> {
  const { S3Store, s3Client } = await import('./s3-store.ts');
  const s3 = opts.s3 ?? {};
  const env = opts.env ?? process.env;
  const endpoint = s3.endpoint || undefined;
  const hasEndpoint = endpoint !== undefined || Boolean(env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL);
  // A custom endpoint (MinIO, versitygw, Ceph) rarely cares about the region, but the SDK signs with one:
  // default to us-east-1 there when none is configured, rather than failing with "Region is missing".
  const region = s3.region || (endpoint && !env.AWS_REGION ? 'us-east-1' : undefined);
  const client = s3Client({
    ...(region ? { region } : {}),
    ...(endpoint ? { endpoint } : {}),
    forcePathStyle: s3.forcePathStyle ?? hasEndpoint,
    ...(s3.credentials ? { credentials: s3.credentials } : {}),
    ...(s3.maxAttempts ? { maxAttempts: s3.maxAttempts } : {}),
  });
  const store = new S3Store({ ...s3.store, client, bucket: location.bucket, prefix: location.prefix, scheme: location.scheme });
  try {
    await store.checkAccess();
    if ((opts.access ?? 'write') === 'write') await store.checkConditionalWrites();
  } catch (err) {
    await store.close();
    throw err;
  }
  return store;
}

/** S3 bucket names: 3-63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const CONTAINER = /^(?=.{3,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;
const ACCOUNT = /^[a-z0-9]{3,24}$/;

/** Pure: what `uri` points at. Throws ConfigError naming the URI and listing the accepted forms. */
export function parseStoreUri(uri: string, opts: Pick<OpenStoreOptions, 'cwd' | 'configKey'> = {}): StoreLocation {
  const fail = (why: string) =>
    new ConfigError(opts.configKey ?? 'lake.uri', `${JSON.stringify(uri)} ${why}. Accepted forms:\n  ${ACCEPTED_FORMS.join('\n  ')}`);
  if (uri.trim() === '') throw fail('is empty');
  if (/^file:/i.test(uri)) {
    try {
      return { kind: 'local', dir: fileURLToPath(uri) };
    } catch (err) {
      throw fail(`is not a usable file URL (${(err as Error).message})`);
    }
  }
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(uri)?.[1]?.toLowerCase();
  if (scheme === undefined) return { kind: 'local', dir: isAbsolute(uri) ? uri : resolve(opts.cwd ?? process.cwd(), uri) };

  let container: string | undefined;
  let account: string | undefined;
  let endpointSuffix: string | undefined;
  let rest: string | undefined;
  if (scheme === 'az') {
    const m = /^az:\/\/([^/?#]+)(?:\/([^?#]*))?$/i.exec(uri);
    if (!m?.[1]) throw fail('has no container');
    [container, account] = m[1].includes('@') ? m[1].split('@', 2) : [m[1], undefined];
    rest = m[2];
  } else if (scheme === 'abfss') {
    const m = /^abfss:\/\/([^@/]+)@([^./]+)\.(?:dfs|blob)\.([^/?#]+)(?:\/([^?#]*))?$/i.exec(uri);
    if (!m) throw fail('is not abfss://<container>@<account>.dfs.core.windows.net/<prefix>');
    [, container, account, endpointSuffix, rest] = m;
  } else if (scheme === 's3' || scheme === 's3a') {
    const m = /^s3a?:\/\/([^/?#]*)(?:\/([^?#]*))?$/i.exec(uri);
    const bucket = m?.[1] ?? '';
    if (!BUCKET.test(bucket))
      throw fail(`names the bucket ${JSON.stringify(bucket)}; S3 bucket names are 3-63 lowercase letters, digits, dots and hyphens`);
    return { kind: 's3', bucket, prefix: (m?.[2] ?? '').replace(/^\/+|\/+$/g, ''), scheme };
  } else {
    throw fail(`uses the scheme ${scheme}://, which Tide does not support`);
  }
  if (!container || !CONTAINER.test(container)) {
    throw fail(
      `names the container ${JSON.stringify(container ?? '')}; Azure container names are 3-63 lowercase letters, digits and single hyphens`,
    );
  }
  if (account !== undefined && !ACCOUNT.test(account)) {
    throw fail(`names the account ${JSON.stringify(account)}; Azure account names are 3-24 lowercase letters and digits`);
  }
  const prefix = (rest ?? '').replace(/^\/+|\/+$/g, '');
  return { kind: 'azure', container, prefix, ...(account ? { account } : {}), ...(endpointSuffix ? { endpointSuffix } : {}) };
}

/** Pure: which credentials to use for an Azure location (see the module comment for the order). */
export function resolveAzureAuth(uri: string, loc: Extract<StoreLocation, { kind: 'azure' }>, opts: OpenStoreOptions = {}): AzureAuth {
  const env = opts.env ?? process.env;
  const key = opts.configKey ?? 'lake.uri';
  const wanted = loc.account;
  const endpoint = (account: string) =>
    opts.blobEndpoint ?? env.AZURE_STORAGE_BLOB_ENDPOINT ?? `https://${account}.blob.${loc.endpointSuffix ?? 'core.windows.net'}`;
  const mismatch = (what: string, has: string) =>
    new ConfigError(key, `${JSON.stringify(uri)} names the account ${wanted}, but ${what} is for the account ${has}; make them agree`);
  const accountFor = (what: string, given: string | undefined): string => {
    if (given && wanted && given !== wanted) throw mismatch(what, given);
    const account = wanted ?? given;
    if (!account)
      throw new ConfigError(
        key,
        `${what} needs an account name: put it in the URI (az://<container>@<account>/…) or set AZURE_STORAGE_ACCOUNT`,
      );
    return account;
  };

  if (opts.connectionString) {
    const has = connectionStringAccount(opts.connectionString);
    if (has && wanted && has !== wanted) throw mismatch('the connection string', has);
    return { kind: 'connection-string', connectionString: opts.connectionString };
  }
  if (opts.accountKey) {
    const account = accountFor('the account key', opts.account);
    return { kind: 'account-key', account, accountKey: opts.accountKey, blobEndpoint: endpoint(account) };
  }
  if (opts.sasToken) {
    const blobEndpoint = opts.blobEndpoint ?? endpoint(accountFor('the SAS token', opts.account));
    return { kind: 'sas', sasToken: opts.sasToken, blobEndpoint };
  }

  const skipped: string[] = [];
  const cs = env.AZURE_STORAGE_CONNECTION_STRING;
  if (cs) {
    const has = connectionStringAccount(cs);
    if (!wanted || !has || has === wanted) return { kind: 'connection-string', connectionString: cs };
    skipped.push(`AZURE_STORAGE_CONNECTION_STRING (account ${has})`);
  }
  const envAccount = env.AZURE_STORAGE_ACCOUNT;
  if (env.AZURE_STORAGE_KEY && (envAccount || wanted)) {
    if (!wanted || !envAccount || envAccount === wanted) {
      const account = (wanted ?? envAccount)!;
      return { kind: 'account-key', account, accountKey: env.AZURE_STORAGE_KEY, blobEndpoint: endpoint(account) };
    }
    skipped.push(`AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY (account ${envAccount})`);
  }
  if (env.AZURE_STORAGE_SAS_TOKEN && (wanted || envAccount || opts.blobEndpoint || env.AZURE_STORAGE_BLOB_ENDPOINT)) {
    return { kind: 'sas', sasToken: env.AZURE_STORAGE_SAS_TOKEN, blobEndpoint: endpoint((wanted ?? envAccount)!) };
  }
  throw new ConfigError(
    key,
    `${JSON.stringify(uri)}: no Azure credentials${wanted ? ` for the account ${wanted}` : ''}` +
      `${skipped.length ? ` (skipped, other account: ${skipped.join('; ')})` : ''}. ` +
      'Set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY, or AZURE_STORAGE_SAS_TOKEN ' +
      '(for the local azurite, `npm run stack:up` writes the connection string to .stack/env).',
  );
}

/** The AccountName of a connection string; `UseDevelopmentStorage=true` is the emulator's devstoreaccount1. */
export function connectionStringAccount(connectionString: string): string | undefined {
  if (/(^|;)\s*UseDevelopmentStorage=true/i.test(connectionString)) return 'devstoreaccount1';
  return /(?:^|;)\s*AccountName=([^;]+)/i.exec(connectionString)?.[1]?.trim();
}
