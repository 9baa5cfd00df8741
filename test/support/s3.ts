import { DeleteObjectsCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import type { S3OpenOptions } from '../../src/lake/storage/open-store.ts';

/**
 * The local stack's S3 (versitygw), from the TIDE_S3_* settings `npm run stack:up` writes to
 * .stack/env: what the tests pass to openStore, to delta-rs and to child processes.
 */
export interface LocalS3 {
  endpoint: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
}

export function localS3(env: Record<string, string | undefined> = process.env): LocalS3 {
  const need = (name: string): string => {
    const v = env[name];
    if (!v) throw new Error(`${name} is not set: start the local stack (npm run stack:up writes it to .stack/env)`);
    return v;
  };
  return {
    endpoint: need('TIDE_S3_ENDPOINT'),
    region: need('TIDE_S3_REGION'),
    bucket: need('TIDE_S3_BUCKET'),
    accessKeyId: need('TIDE_S3_ACCESS_KEY_ID'),
    secretAccessKey: need('TIDE_S3_SECRET_ACCESS_KEY'),
  };
}

/** openStore's `s3` options for the local server, credentials given explicitly. */
export function s3OpenOptions(s3: LocalS3, extra: Partial<S3OpenOptions> = {}): S3OpenOptions {
  return {
    endpoint: s3.endpoint,
    region: s3.region,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    ...extra,
  };
}

/**
 * The environment a child process (the CLI) gets to reach the local S3 the way production reaches
 * AWS: credentials through the SDK's default chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY), the
 * endpoint through AWS_ENDPOINT_URL_S3, as a user of an S3-compatible store would set them.
 */
export function s3ChildEnv(s3: LocalS3): NodeJS.ProcessEnv {
  return {
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_REGION: s3.region,
    AWS_ENDPOINT_URL_S3: s3.endpoint,
  };
}

export function s3Admin(s3: LocalS3): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

/** Every key under `prefix` in the bucket. */
export async function listKeys(s3: LocalS3, prefix: string): Promise<string[]> {
  const client = s3Admin(s3);
  const keys: string[] = [];
  try {
    let token: string | undefined;
    do {
      const page = await client.send(new ListObjectsV2Command({ Bucket: s3.bucket, Prefix: prefix, ContinuationToken: token }));
      for (const o of page.Contents ?? []) if (o.Key) keys.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  } finally {
    client.destroy();
  }
  return keys;
}

/** Delete every key under `prefix` (a test's own folder in the shared bucket). */
export async function deletePrefix(s3: LocalS3, prefix: string): Promise<void> {
  const keys = await listKeys(s3, prefix);
  const client = s3Admin(s3);
  try {
    for (let i = 0; i < keys.length; i += 1000)
      await client.send(
        new DeleteObjectsCommand({ Bucket: s3.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }),
      );
  } finally {
    client.destroy();
  }
}
