import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { parseConnectorFile } from '../../src/config/source-config.ts';
import { sinkConfigSchema } from '../../src/config/sink-config.ts';
import { ConnectionError } from '../../src/errors.ts';
import { s3Settings } from '../../src/lake/storage/open-store.ts';
import { s3Failure, S3StoreError } from '../../src/lake/storage/s3-errors.ts';

const base = {
  topics: 't.public.orders',
  'kafka.bootstrap.servers': '127.0.0.1:9092',
  'schema.registry.url': 'http://127.0.0.1:8081/apis/ccompat/v7',
};
const parse = (config: Record<string, unknown>) =>
  parseConnectorFile({ name: 'lake', config: { ...base, ...config } }, sinkConfigSchema, 'lake.json');

describe('the sink config s3.* keys', () => {
  it('are read for an s3:// lake and passed to the store as its S3 settings', () => {
    const c = parse({
      'lake.uri': 's3://tide-lake/prod',
      's3.region': 'eu-west-1',
      's3.endpoint': 'http://127.0.0.1:59000',
      's3.force.path.style': 'false',
    }).config;
    expect(s3Settings(c)).toEqual({ region: 'eu-west-1', endpoint: 'http://127.0.0.1:59000', forcePathStyle: false });
    expect(s3Settings(parse({ 'lake.uri': 's3a://tide-lake' }).config)).toEqual({});
  });

  it('are refused for a lake that is not on S3, naming the key', () => {
    expect(() => parse({ 'lake.uri': '.lake', 's3.endpoint': 'http://127.0.0.1:59000' })).toThrow(
      's3.endpoint: applies only to a lake on S3, but lake.uri is ".lake": use s3://<bucket>/<prefix> or drop s3.endpoint',
    );
  });
});

/** What the SDK throws for an S3 error answer: an S3ServiceException named after S3's error code. */
function s3Error(name: string, status: number, message = name): S3ServiceException {
  return new S3ServiceException({ name, $fault: 'client', $metadata: { httpStatusCode: status }, message });
}

describe('s3Failure', () => {
  const uri = 's3://tide-lake/prod';
  const fail = (err: unknown) => s3Failure(uri, 'tide-lake', 'get', 'silver/orders/_delta_log/00000000000000000000.json', err);

  it('turns credential, bucket and region errors into ConnectionErrors of kind lake that name the store and the fix', () => {
    const cases: [unknown, string, string][] = [
      [s3Error('SignatureDoesNotMatch', 403), 'auth', 'the secret access key does not belong to the access key id'],
      [s3Error('InvalidAccessKeyId', 403), 'auth', 'the access key id is not known to the store'],
      [s3Error('AccessDenied', 403), 'auth', 'Grant s3:ListBucket on the bucket tide-lake'],
      [s3Error('NoSuchBucket', 404), 'no-bucket', 'the bucket tide-lake does not exist'],
      [s3Error('PermanentRedirect', 301), 'region', 'Set s3.region'],
      [
        Object.assign(new Error('Could not load credentials from any providers'), { name: 'CredentialsProviderError' }),
        'auth',
        'AWS_PROFILE',
      ],
      [Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' }), 'unreachable', 's3.endpoint'],
    ];
    for (const [err, code, text] of cases) {
      const e = fail(err) as ConnectionError;
      expect(e, code).toBeInstanceOf(ConnectionError);
      expect(e.kind).toBe('lake');
      expect(e.code).toBe(code);
      expect(e.retriable).toBe(code === 'unreachable');
      expect(e.message.startsWith(`lake (${uri}): `)).toBe(true);
      expect(e.message).toContain(text);
    }
    expect(fail(s3Error('SignatureDoesNotMatch', 403)).message).toMatchInlineSnapshot(
      `"lake (s3://tide-lake/prod): the request signature was refused (SignatureDoesNotMatch): the secret access key does not belong to the access key id. Check the secret key (AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key). Tide takes credentials from the AWS SDK default chain: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), AWS_PROFILE, web identity (IRSA) or the instance role"`,
    );
  });

  it('marks busy and failing answers retriable and names the object; other errors are not retriable', () => {
    const busy = fail(s3Error('SlowDown', 503, 'Please reduce your request rate.')) as S3StoreError;
    expect(busy).toBeInstanceOf(S3StoreError);
    expect(busy.retriable).toBe(true);
    expect(busy.message).toContain('get s3://tide-lake/prod/silver/orders/_delta_log/00000000000000000000.json: SlowDown (HTTP 503)');
    const bad = fail(s3Error('InvalidArgument', 400)) as S3StoreError;
    expect(bad.retriable).toBe(false);
    expect(bad.code).toBe('InvalidArgument');
  });
});
