import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { connectionStringAccount, parseStoreUri, resolveAzureAuth, type StoreLocation } from '../../src/lake/storage/open-store.ts';

const AZURITE_CS =
  'DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:50000/devstoreaccount1';
const PROD_CS = 'DefaultEndpointsProtocol=https;AccountName=prodlake;AccountKey=cHJvZA==;EndpointSuffix=core.windows.net';
const azure = (uri: string) => parseStoreUri(uri) as Extract<StoreLocation, { kind: 'azure' }>;

describe('parseStoreUri', () => {
  it('reads local paths and file:// URLs as the local filesystem', () => {
    expect(parseStoreUri('.lake', { cwd: '/work/main' })).toEqual({ kind: 'local', dir: '/work/main/.lake' });
    expect(parseStoreUri('/data/lake')).toEqual({ kind: 'local', dir: '/data/lake' });
    expect(parseStoreUri('file:///data/my%20lake')).toEqual({ kind: 'local', dir: '/data/my lake' });
  });

  it('reads az:// with and without the account, and abfss:// with its endpoint suffix', () => {
    expect(parseStoreUri('az://tide/lake/prod/')).toEqual({ kind: 'azure', container: 'tide', prefix: 'lake/prod' });
    expect(parseStoreUri('az://tide@devstoreaccount1')).toEqual({
      kind: 'azure',
      container: 'tide',
      prefix: '',
      account: 'devstoreaccount1',
    });
    expect(parseStoreUri('abfss://lake@prodlake.dfs.core.windows.net/tide')).toEqual({
      kind: 'azure',
      container: 'lake',
      prefix: 'tide',
      account: 'prodlake',
      endpointSuffix: 'core.windows.net',
    });
    expect(parseStoreUri('abfss://lake@cnlake.dfs.core.chinacloudapi.cn/')).toMatchObject({
      account: 'cnlake',
      endpointSuffix: 'core.chinacloudapi.cn',
      prefix: '',
    });
  });

  it('rejects other schemes with a ConfigError that names the URI and lists the accepted forms', () => {
    const err = (() => {
      try {
        parseStoreUri('gs://bucket/lake');
      } catch (e) {
        return e;
      }
    })() as ConfigError;
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.key).toBe('lake.uri');
    expect(err.message).toMatchInlineSnapshot(`
      "lake.uri: "gs://bucket/lake" uses the scheme gs://, which Tide does not support. Accepted forms:
        <directory> or file:///<absolute directory>   (local filesystem)
        az://<container>/<prefix>                      (Azure Blob Storage, account from the credentials)
        az://<container>@<account>/<prefix>
        abfss://<container>@<account>.dfs.core.windows.net/<prefix>   (ADLS Gen2)
        s3://<bucket>/<prefix> or s3a://<bucket>/<prefix>       (Amazon S3 and S3-compatible stores)"
    `);
  });

  it('reads s3:// and s3a:// (as Spark writes it) as a bucket and a prefix', () => {
    expect(parseStoreUri('s3://tide-lake/prod/lake/')).toEqual({ kind: 's3', bucket: 'tide-lake', prefix: 'prod/lake', scheme: 's3' });
    expect(parseStoreUri('s3a://tide.lake')).toEqual({ kind: 's3', bucket: 'tide.lake', prefix: '', scheme: 's3a' });
    expect(() => parseStoreUri('s3://Tide_Lake/x')).toThrow(
      'lake.uri: "s3://Tide_Lake/x" names the bucket "Tide_Lake"; S3 bucket names are 3-63 lowercase letters, digits, dots and hyphens',
    );
    expect(() => parseStoreUri('s3:///x')).toThrow(/names the bucket ""/);
  });

  it('rejects bad container and account names, a malformed abfss host and an empty URI', () => {
    expect(() => parseStoreUri('az://My_Container/x')).toThrow(/container "My_Container"; Azure container names are 3-63 lowercase/);
    expect(() => parseStoreUri('az://tide@Prod-Lake/x')).toThrow(/account "Prod-Lake"/);
    expect(() => parseStoreUri('abfss://lake/tide')).toThrow(/is not abfss:\/\/<container>@<account>/);
    expect(() => parseStoreUri('  ')).toThrow(/is empty/);
    expect(() => parseStoreUri('az://x/y', { configKey: 'target' })).toThrow(/^target: /);
  });
});

describe('resolveAzureAuth', () => {
  it('prefers explicit options, then the connection string, account + key, and SAS token from the environment', () => {
    const loc = azure('az://tide/lake');
    expect(resolveAzureAuth('u', loc, { connectionString: PROD_CS, env: { AZURE_STORAGE_CONNECTION_STRING: AZURITE_CS } })).toEqual({
      kind: 'connection-string',
      connectionString: PROD_CS,
    });
    expect(
      resolveAzureAuth('u', loc, {
        env: { AZURE_STORAGE_CONNECTION_STRING: AZURITE_CS, AZURE_STORAGE_ACCOUNT: 'a', AZURE_STORAGE_KEY: 'k' },
      }),
    ).toEqual({
      kind: 'connection-string',
      connectionString: AZURITE_CS,
    });
    expect(resolveAzureAuth('u', loc, { env: { AZURE_STORAGE_ACCOUNT: 'prodlake', AZURE_STORAGE_KEY: 'k' } })).toEqual({
      kind: 'account-key',
      account: 'prodlake',
      accountKey: 'k',
      blobEndpoint: 'https://prodlake.blob.core.windows.net',
    });
    expect(resolveAzureAuth('u', azure('az://tide@prodlake/x'), { env: { AZURE_STORAGE_SAS_TOKEN: '?sv=1&sig=2' } })).toEqual({
      kind: 'sas',
      sasToken: '?sv=1&sig=2',
      blobEndpoint: 'https://prodlake.blob.core.windows.net',
    });
  });

  it('derives the Blob endpoint from an abfss host, and lets AZURE_STORAGE_BLOB_ENDPOINT override it', () => {
    const loc = azure('abfss://lake@cnlake.dfs.core.chinacloudapi.cn/tide');
    expect(resolveAzureAuth('u', loc, { accountKey: 'k' })).toMatchObject({ blobEndpoint: 'https://cnlake.blob.core.chinacloudapi.cn' });
    expect(
      resolveAzureAuth('u', loc, { env: { AZURE_STORAGE_KEY: 'k', AZURE_STORAGE_BLOB_ENDPOINT: 'http://127.0.0.1:1/cnlake' } }),
    ).toEqual({
      kind: 'account-key',
      account: 'cnlake',
      accountKey: 'k',
      blobEndpoint: 'http://127.0.0.1:1/cnlake',
    });
  });

  it("skips the environment's credentials for another account, so a production URI never reaches the local emulator", () => {
    const loc = azure('abfss://lake@prodlake.dfs.core.windows.net/tide');
    const env = { AZURE_STORAGE_CONNECTION_STRING: AZURITE_CS, AZURE_STORAGE_ACCOUNT: 'prodlake', AZURE_STORAGE_KEY: 'k' };
    expect(resolveAzureAuth('u', loc, { env })).toMatchObject({ kind: 'account-key', account: 'prodlake' });
    expect(() => resolveAzureAuth('abfss://…', loc, { env: { AZURE_STORAGE_CONNECTION_STRING: AZURITE_CS } })).toThrow(
      'no Azure credentials for the account prodlake (skipped, other account: AZURE_STORAGE_CONNECTION_STRING (account devstoreaccount1))',
    );
  });

  it('fails with a ConfigError when explicit credentials name another account, or when there are none', () => {
    const loc = azure('az://tide@prodlake/x');
    expect(() => resolveAzureAuth('az://tide@prodlake/x', loc, { connectionString: AZURITE_CS })).toThrow(
      'names the account prodlake, but the connection string is for the account devstoreaccount1',
    );
    expect(() => resolveAzureAuth('u', azure('az://tide/x'), { accountKey: 'k' })).toThrow(/needs an account name/);
    const none = (() => {
      try {
        resolveAzureAuth('az://tide/x', azure('az://tide/x'), { env: {} });
      } catch (e) {
        return e;
      }
    })();
    expect(none).toBeInstanceOf(ConfigError);
    expect((none as Error).message).toContain('Set AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT + AZURE_STORAGE_KEY');
  });

  it('reads the account of a connection string, including the emulator shorthand', () => {
    expect(connectionStringAccount(PROD_CS)).toBe('prodlake');
    expect(connectionStringAccount('UseDevelopmentStorage=true')).toBe('devstoreaccount1');
    expect(connectionStringAccount('BlobEndpoint=https://x.blob.core.windows.net;SharedAccessSignature=sv=1')).toBeUndefined();
  });
});
