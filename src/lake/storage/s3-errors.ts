import { S3ServiceException } from '@aws-sdk/client-s3';
import { ConnectionError, TideError } from '../../errors.ts';
import { ObjectStoreError } from './object-store.ts';

/** The store cannot do `If-None-Match: *` (see checkConditionalWrites); s3Failure turns it into a ConnectionError. */
export class ConditionalWritesUnsupported extends Error {
  constructor(readonly what: string) {
    super(`the store does not enforce If-None-Match: * on PutObject: ${what}`);
    this.name = 'ConditionalWritesUnsupported';
  }
}

/**
 * What an S3 failure means for the user. Connection problems (credentials, a missing bucket, a
 * wrong region, an unreachable endpoint, a store without conditional writes) become a
 * ConnectionError of kind `lake` naming the store URI (never a key); anything else an
 * S3StoreError naming the object and S3's error code.
 */

/** A storage call failed for a reason other than the connection. Names the object, the operation and S3's error code. */
export class S3StoreError extends ObjectStoreError {
  override readonly name = 'S3StoreError';
}

export function statusOf(err: unknown): number | undefined {
  return err instanceof S3ServiceException ? err.$metadata?.httpStatusCode : undefined;
}

/** S3's error code (`NoSuchBucket`, `SignatureDoesNotMatch`, …): the SDK names the exception after it. */
export function errorCode(err: unknown): string | undefined {
  if (!(err instanceof S3ServiceException)) return undefined;
  return (err as S3ServiceException & { Code?: string }).Code ?? err.name;
}

const CREDENTIALS_FIX =
  'Tide takes credentials from the AWS SDK default chain: AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN), ' +
  'AWS_PROFILE, web identity (IRSA) or the instance role';

export function s3Failure(uri: string, bucket: string, operation: string, path: string, err: unknown): TideError {
  if (err instanceof TideError) return err;
  const lake = (problem: string, fix: string, code: string, retriable = false) =>
    new ConnectionError('lake', uri, problem, fix, { cause: err, code, retriable });
  if (err instanceof Error && err.name === 'ConditionalWritesUnsupported') {
    return lake(
      `the store does not enforce If-None-Match: * on PutObject (S3's conditional write; ${(err as ConditionalWritesUnsupported).what}), so two writers could both create the same Delta commit and one would be lost. Tide does not commit to such a store, and never falls back to an unsafe rename`,
      'Use Amazon S3 or a store that enforces conditional writes (MinIO, versitygw, Cloudflare R2), or put the lake on local disk or Azure Blob Storage',
      'no-conditional-put',
    );
  }
  const code = errorCode(err);
  const status = statusOf(err);
  const name = err instanceof Error ? err.name : '';
  const message = err instanceof Error ? err.message : String(err);
  switch (code) {
    case 'InvalidAccessKeyId':
      return lake('the access key id is not known to the store (InvalidAccessKeyId)', `Check the access key. ${CREDENTIALS_FIX}`, 'auth');
    case 'SignatureDoesNotMatch':
      return lake(
        'the request signature was refused (SignatureDoesNotMatch): the secret access key does not belong to the access key id',
        `Check the secret key (AWS_SECRET_ACCESS_KEY or the profile's aws_secret_access_key). ${CREDENTIALS_FIX}`,
        'auth',
      );
    case 'ExpiredToken':
    case 'TokenRefreshRequired':
    case 'InvalidToken':
      return lake(`the session token was refused (${code})`, `Renew the credentials. ${CREDENTIALS_FIX}`, 'auth');
    case 'AccessDenied':
    case 'AllAccessDisabled':
      return lake(
        `access denied (${code}) to ${operation}${path ? ` ${path}` : ''}`,
        `Grant s3:ListBucket on the bucket ${bucket} and s3:GetObject, s3:PutObject, s3:DeleteObject on its keys under the lake's prefix`,
        'auth',
      );
    case 'NoSuchBucket':
      return lake(
        `the bucket ${bucket} does not exist`,
        `Create it (e.g. aws s3 mb s3://${bucket}) or correct lake.uri; Tide does not create buckets`,
        'no-bucket',
      );
    case 'PermanentRedirect':
    case 'AuthorizationHeaderMalformed':
    case 'IllegalLocationConstraintException':
      return lake(`the bucket ${bucket} is in another region (${code})`, "Set s3.region (or AWS_REGION) to the bucket's region", 'region');
  }
  if (name === 'CredentialsProviderError' || /Could not load credentials/i.test(message))
    return lake('no AWS credentials were found', CREDENTIALS_FIX, 'auth');
  if (/Region is missing/i.test(message))
    return lake('no AWS region is configured', 'Set s3.region in the sink connector file, or AWS_REGION', 'region');
  if (status === 403)
    return lake(
      `the store refused the request (HTTP 403${code ? ` ${code}` : ''})`,
      `Check the credentials and the bucket policy. ${CREDENTIALS_FIX}`,
      'auth',
    );
  if (status === undefined && !(err instanceof S3ServiceException)) {
    const sys = (err as { code?: string }).code;
    if ((sys && /^(ECONNREFUSED|ENOTFOUND|EAI_AGAIN|ECONNRESET|ETIMEDOUT|EHOSTUNREACH|ENETUNREACH)$/.test(sys)) || name === 'TimeoutError')
      return lake(
        `cannot reach the store (${sys ?? name}: ${message})`,
        'Check s3.endpoint (or AWS_ENDPOINT_URL_S3) and the network; for the local stack run npm run stack:up',
        'unreachable',
        true,
      );
    return new S3StoreError(uri, path, operation, message, { cause: err });
  }
  const retriable = status === undefined || status >= 500 || status === 408 || status === 429 || status === 409;
  const what = `${code ?? 'error'}${status ? ` (HTTP ${status})` : ''}: ${message.split('\n')[0]}`;
  return new S3StoreError(uri, path, operation, `${what}${retriable ? '\n  the store is busy or failing; retry later' : ''}`, {
    cause: err,
    retriable,
    statusCode: status,
    code,
  });
}
