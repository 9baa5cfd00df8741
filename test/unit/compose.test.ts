import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadSinkConfig } from '../../src/config/sink-config.ts';
import { loadSourceConfig } from '../../src/config/source-config.ts';
import { DEFAULT_PORTS } from '../../src/stack/context.ts';

/**
 * `docker compose config` needs the compose plugin, which these machines lack
 * (.ci/run runs it where it exists). This parses the file and checks what
 * Tide relies on.
 */
type Service = {
  image: string;
  command?: string[];
  environment?: Record<string, string | number>;
  ports?: string[];
  volumes?: string[];
};
const compose = parse(readFileSync(new URL('../../docker-compose.yml', import.meta.url), 'utf8')) as { services: Record<string, Service> };

describe('docker-compose.yml', () => {
  it('has the same services as the native stack', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['azurite', 'kafka', 'postgres', 'registry']);
  });

  it("runs only azurite's blob service, with the flags the native stack passes", () => {
    const azurite = compose.services.azurite!;
    expect(azurite.image).toMatch(/^mcr\.microsoft\.com\/azure-storage\/azurite:/);
    expect(azurite.command?.[0]).toBe('azurite-blob');
    expect(azurite.command).toEqual(expect.arrayContaining(['--skipApiVersionCheck', '--disableTelemetry']));
    const port = azurite.command![azurite.command!.indexOf('--blobPort') + 1];
    expect(azurite.ports).toEqual([`127.0.0.1:${DEFAULT_PORTS.azurite}:${port}`]);
  });

  it('configures Postgres for logical replication', () => {
    const cmd = compose.services.postgres!.command!.join(' ');
    expect(cmd).toContain('wal_level=logical');
    expect(Number(/max_replication_slots=(\d+)/.exec(cmd)?.[1])).toBeGreaterThanOrEqual(10);
    expect(Number(/max_wal_senders=(\d+)/.exec(cmd)?.[1])).toBeGreaterThanOrEqual(10);
  });

  it('runs Kafka in KRaft mode without automatic topic creation', () => {
    const env = compose.services.kafka!.environment!;
    expect(env.KAFKA_PROCESS_ROLES).toBe('broker,controller');
    expect(env.KAFKA_AUTO_CREATE_TOPICS_ENABLE).toBe('false');
    // The log lives on the volume, not in the image's /tmp.
    expect(compose.services.kafka!.volumes).toEqual([`kafka-data:${env.KAFKA_LOG_DIRS}`]);
  });

  it("scripts/compose.env has what the shipped connectors read from the environment, with the compose stack's values", () => {
    const env = Object.fromEntries(
      readFileSync(new URL('../../scripts/compose.env', import.meta.url), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    const source = loadSourceConfig('connectors/orders-source.json', env).config;
    expect([source['database.hostname'], source['database.port'], source['database.password']]).toEqual([
      '127.0.0.1',
      DEFAULT_PORTS.postgres,
      'tide',
    ]);
    expect(compose.services.postgres!.environment).toMatchObject({ POSTGRES_USER: source['database.user'], POSTGRES_PASSWORD: 'tide' });
    expect(loadSinkConfig('connectors/orders-lake.json', env).config['kafka.bootstrap.servers']).toEqual([
      `127.0.0.1:${DEFAULT_PORTS.kafka}`,
    ]);
  });

  it('publishes each service on loopback at the native stack port', () => {
    const hostPort = (s: string) => compose.services[s]!.ports!.map((p) => p.split(':').slice(0, 2).join(':'));
    expect(hostPort('postgres')).toEqual([`127.0.0.1:${DEFAULT_PORTS.postgres}`]);
    expect(hostPort('kafka')).toEqual([`127.0.0.1:${DEFAULT_PORTS.kafka}`]);
    expect(hostPort('registry')).toEqual([`127.0.0.1:${DEFAULT_PORTS.registry}`]);
    expect(hostPort('azurite')).toEqual([`127.0.0.1:${DEFAULT_PORTS.azurite}`]);
  });
});
