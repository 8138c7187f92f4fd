// deploy/ without a Docker engine: every YAML parses, compose and Kubernetes files agree with each other and with pgsplit's config (check-config), and the Dockerfile's steps build an image that runs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, inject, it } from 'vitest';
import YAML from 'yaml';
import { buildDockerfile, dockerignore, inImage, parseDockerfile, type ImageConfig } from '../harness/dockerfile.js';
import { configYamlFor, REPO_ROOT } from '../harness/proxy.js';
import { freePort } from '../harness/ports.js';
import { eventually, run } from './helpers.js';

const DEPLOY = path.join(REPO_ROOT, 'deploy');
const BIN = path.join(REPO_ROOT, 'bin/pgsplit.js');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgsplit-deploy-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function filesUnder(d: string): string[] {
  return fs.readdirSync(d, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? filesUnder(path.join(d, e.name)) : [path.join(d, e.name)]));
}

/** Every document of a YAML file; a parse error fails the test that asked. */
function yamlDocs(file: string): any[] {
  const docs = YAML.parseAllDocuments(fs.readFileSync(file, 'utf8'), { merge: true });
  for (const d of docs) expect(d.errors.map((e) => e.message), path.relative(REPO_ROOT, file)).toEqual([]);
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d !== null);
}

/** check-config as a user runs it, with exactly the environment given (plus PATH): no variable of this process leaks in. */
function checkConfig(file: string, env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, 'check-config', file], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

/** env without one variable (unset, not empty: ${VAR} takes an empty value as set). */
function without(env: Record<string, string>, name: string): Record<string, string> {
  const { [name]: _gone, ...rest } = env;
  return rest;
}

/** docker compose's interpolation (${VAR}, ${VAR:-default}, ${VAR:?error}, $$) over a value, from `vars`. */
function composeInterpolate(value: string, vars: Record<string, string>): string {
  return value.replace(/\$\$|\$\{(\w+)(?::?([-?])([^}]*))?\}/g, (match, name: string | undefined, kind: string | undefined, arg: string | undefined) => {
    if (match === '$$') return '$';
    const v = vars[name!];
    if (v !== undefined && v !== '') return v;
    if (kind === '-') return arg ?? '';
    throw new Error(`compose variable ${name} is not set${kind === '?' ? ` (${arg})` : ''}`);
  });
}

describe('deploy/ YAML', () => {
  it('every YAML file under deploy/ parses, Kubernetes files as several documents', () => {
    const files = filesUnder(DEPLOY).filter((f) => /\.ya?ml$/.test(f));
    const names = files.map((f) => path.relative(DEPLOY, f));
    for (const expected of ['docker-compose.yml', 'compose/pgsplit.yaml', 'kubernetes/deployment.yaml', 'kubernetes/configmap.yaml', 'kubernetes/secret.yaml', 'kubernetes/service.yaml', 'prometheus/prometheus.yml', 'prometheus/alerts.yml']) {
      expect(names).toContain(expected);
    }
    for (const f of files) expect(yamlDocs(f).length, path.relative(REPO_ROOT, f)).toBeGreaterThan(0);
  });

  it('the compose shell scripts are valid bash', async () => {
    const scripts = filesUnder(path.join(DEPLOY, 'compose')).filter((f) => f.endsWith('.sh'));
    expect(scripts.map((f) => path.basename(f)).sort()).toEqual(['primary-init.sh', 'replica-entrypoint.sh']);
    for (const f of scripts) {
      const r = await run('bash', ['-n', f]);
      expect(r.code, `${f}: ${r.stderr}`).toBe(0);
    }
  });
});

describe('deploy/docker-compose.yml', () => {
  const [compose] = yamlDocs(path.join(DEPLOY, 'docker-compose.yml'));
  const services = compose.services as Record<string, any>;
  const composeDir = DEPLOY;

  it('a postgres:15 primary and two replicas cloned with pg_basebackup, pgsplit, Prometheus and Grafana', () => {
    expect(Object.keys(services).sort()).toEqual(['grafana', 'pg1', 'pg2', 'pg3', 'pgsplit', 'prometheus']);
    for (const pg of ['pg1', 'pg2', 'pg3']) expect(services[pg].image, pg).toBe('postgres:15');
    const replicaScript = fs.readFileSync(path.join(DEPLOY, 'compose/replica-entrypoint.sh'), 'utf8');
    expect(replicaScript).toMatch(/pg_basebackup .*--write-recovery-conf/s);
    for (const replica of ['pg2', 'pg3']) {
      expect(services[replica].entrypoint.join(' '), replica).toContain('replica-entrypoint.sh');
      expect(services[replica].environment.PRIMARY_HOST).toBe('pg1');
    }
    expect(fs.readFileSync(path.join(DEPLOY, 'compose/primary-init.sh'), 'utf8')).toMatch(/host replication replicator all scram-sha-256/);
  });

  it('every file a volume or a build points at is in the repository (Prometheus and Grafana files included)', () => {
    const sources: string[] = [];
    for (const [name, s] of Object.entries(services)) {
      for (const v of (s.volumes ?? []) as string[]) {
        const source = v.split(':')[0];
        if (source.startsWith('.') || source.startsWith('/')) sources.push(source);
        else expect(Object.keys(compose.volumes ?? {}), `${name}: named volume ${source}`).toContain(source);
      }
    }
    for (const wanted of ['./prometheus/prometheus.yml', './prometheus/alerts.yml', './grafana/provisioning', './grafana/dashboards', './compose/pgsplit.yaml']) expect(sources).toContain(wanted);
    for (const source of sources) expect(fs.existsSync(path.resolve(composeDir, source)), source).toBe(true);
    expect(fs.readdirSync(path.join(DEPLOY, 'grafana/dashboards')).some((f) => f.endsWith('.json'))).toBe(true);
    const build = services.pgsplit.build;
    const context = path.resolve(composeDir, build.context);
    expect(context).toBe(REPO_ROOT);
    expect(fs.existsSync(path.join(context, build.dockerfile))).toBe(true);
    expect(fs.existsSync(path.join(context, '.dockerignore'))).toBe(true);
  });

  it('pgsplit gets the config it is told to read, and publishes the ports that config listens on', () => {
    const s = services.pgsplit;
    const configArg = s.command[s.command.indexOf('--config') + 1];
    const mount = (s.volumes as string[]).map((v) => v.split(':')).find(([src]) => src === './compose/pgsplit.yaml');
    expect(mount?.[1]).toBe(configArg);
    const config = YAML.parse(fs.readFileSync(path.join(DEPLOY, 'compose/pgsplit.yaml'), 'utf8'));
    const published = (s.ports as string[]).map((p) => Number(p.split(':').pop()));
    expect(published).toEqual(expect.arrayContaining([config.listen.port, config.admin.port]));
    expect(config.nodes.map((n: { host: string }) => n.host)).toEqual(['pg1', 'pg2', 'pg3']);
  });

  it('its pgsplit config passes check-config with the environment compose gives the container, secrets masked', async () => {
    const secrets = { POSTGRES_PASSWORD: 'pg-Pw-3141', REPLICATION_PASSWORD: 'repl-Pw-2718', APP_PASSWORD: 'app-Pw-1618', PGSPLIT_ADMIN_TOKEN: 'admin-Tok-1414', GRAFANA_ADMIN_PASSWORD: 'graf-Pw-1732' };
    const env = Object.fromEntries(Object.entries(services.pgsplit.environment as Record<string, string>).map(([k, v]) => [k, composeInterpolate(String(v), secrets)]));
    const r = await checkConfig(path.join(DEPLOY, 'compose/pgsplit.yaml'), env);
    expect(r.code, r.stderr).toBe(0);
    for (const secret of Object.values(secrets)) expect(r.stdout).not.toContain(secret);
    expect(YAML.parse(r.stdout).admin.auth.token).toBe('***');
    // Without a variable the container would not start: compose refuses to run without it (":?").
    expect(() => composeInterpolate(String(services.pgsplit.environment.APP_PASSWORD), {})).toThrow('APP_PASSWORD');
    const unset = await checkConfig(path.join(DEPLOY, 'compose/pgsplit.yaml'), without(env, 'APP_PASSWORD'));
    expect(unset.code).toBe(2);
    expect(unset.stderr).toContain('users[0].password: environment variable APP_PASSWORD is not set');
  });
});

describe('deploy/kubernetes', () => {
  const docs = fs.readdirSync(path.join(DEPLOY, 'kubernetes')).filter((f) => /\.ya?ml$/.test(f)).flatMap((f) => yamlDocs(path.join(DEPLOY, 'kubernetes', f)));
  const one = (kind: string) => {
    const found = docs.filter((d) => d.kind === kind);
    expect(found, kind).toHaveLength(1);
    return found[0];
  };
  const deployment = one('Deployment');
  const service = one('Service');
  const configMap = one('ConfigMap');
  const secret = one('Secret');
  const pod = deployment.spec.template;
  const container = pod.spec.containers[0];
  const containerPort = (name: string) => container.ports.find((p: { name: string }) => p.name === name)?.containerPort;
  const pgsplitYaml: string = configMap.data['pgsplit.yaml'];
  const config = YAML.parse(pgsplitYaml);

  it('the ConfigMap holds the file the container is told to read', () => {
    const volume = pod.spec.volumes.find((v: { configMap?: { name: string } }) => v.configMap?.name === configMap.metadata.name);
    expect(volume).toBeDefined();
    const mount = container.volumeMounts.find((m: { name: string }) => m.name === volume.name);
    const configArg = container.args[container.args.indexOf('--config') + 1];
    expect(configArg).toBe(path.posix.join(mount.mountPath, 'pgsplit.yaml'));
  });

  it('its pgsplit.yaml passes check-config with the env the Deployment builds from the Secret, secrets masked', async () => {
    const env: Record<string, string> = {};
    for (const e of container.env as { name: string; value?: string; valueFrom?: { secretKeyRef: { name: string; key: string } } }[]) {
      if (e.value !== undefined) env[e.name] = e.value;
      else {
        expect(e.valueFrom!.secretKeyRef.name).toBe(secret.metadata.name);
        expect(Object.keys(secret.stringData), e.name).toContain(e.valueFrom!.secretKeyRef.key);
        env[e.name] = secret.stringData[e.valueFrom!.secretKeyRef.key];
      }
    }
    const file = path.join(dir, 'k8s-pgsplit.yaml');
    fs.writeFileSync(file, pgsplitYaml);
    const r = await checkConfig(file, env);
    expect(r.code, r.stderr).toBe(0);
    for (const value of Object.values(secret.stringData as Record<string, string>)) expect(r.stdout).not.toContain(value);
    // Each variable the config uses comes from that env: without one, check-config (and the pod) fails naming it.
    for (const name of Object.keys(env)) {
      const unset = await checkConfig(file, without(env, name));
      expect(unset.code, name).toBe(2);
      expect(unset.stderr).toContain(`environment variable ${name} is not set`);
    }
  });

  it('probes /ready and /health, and is scraped, on the admin port the config binds on every interface', () => {
    expect(config.admin.host).toBe('0.0.0.0');
    expect(containerPort('admin')).toBe(config.admin.port);
    expect(container.readinessProbe.httpGet).toEqual({ path: '/ready', port: 'admin' });
    expect(container.livenessProbe.httpGet).toEqual({ path: '/health', port: 'admin' });
    expect(pod.metadata.annotations).toEqual({ 'prometheus.io/scrape': 'true', 'prometheus.io/port': String(config.admin.port), 'prometheus.io/path': '/metrics' });
  });

  it('the Service sends PostgreSQL clients to the port pgsplit listens on, for these pods', () => {
    expect(config.listen.host).toBe('0.0.0.0');
    expect(service.spec.ports).toHaveLength(1);
    const targetPort = service.spec.ports[0].targetPort;
    expect(typeof targetPort === 'number' ? targetPort : containerPort(targetPort)).toBe(config.listen.port);
    for (const [k, v] of Object.entries(service.spec.selector)) expect(pod.metadata.labels[k]).toBe(v);
    for (const [k, v] of Object.entries(deployment.spec.selector.matchLabels)) expect(pod.metadata.labels[k]).toBe(v);
  });

  it('runs as the image\'s non-root user, one instance at a time unless etcd coordinates several', () => {
    expect(pod.spec.securityContext.runAsNonRoot).toBe(true);
    expect(pod.spec.securityContext.runAsUser).not.toBe(0);
    if ((config.coordination?.etcd?.endpoints ?? []).length === 0) {
      expect(deployment.spec.replicas).toBe(1);
      expect(deployment.spec.strategy.type).toBe('Recreate');
    }
    // The kubelet's SIGKILL comes after the grace period: it must leave room for the drain.
    const drainSeconds = Number(/^(\d+)s$/.exec(config.shutdown.drain_timeout)?.[1]);
    expect(pod.spec.terminationGracePeriodSeconds).toBeGreaterThan(drainSeconds);
  });
});

describe('deploy/Dockerfile', () => {
  const dockerfile = path.join(DEPLOY, 'Dockerfile');
  const instructions = parseDockerfile(fs.readFileSync(dockerfile, 'utf8'));
  const ops = (op: string) => instructions.filter((i) => i.op === op);

  it('two stages; the runtime one has no dev dependencies, a non-root USER, EXPOSE and a HEALTHCHECK on /ready without curl', () => {
    expect(ops('FROM').map((i) => i.stage)).toEqual(['build', 'runtime']);
    const run = ops('RUN').map((i) => `${i.stage}: ${i.args}`);
    expect(run.some((r) => /^build: .*npm ci\b/.test(r))).toBe(true);
    expect(run.some((r) => /^build: npm run build$/.test(r))).toBe(true);
    expect(run.some((r) => /^runtime: .*npm ci --omit=dev\b/.test(r))).toBe(true);
    expect(ops('COPY').some((i) => i.stage === 'runtime' && /^--from=build \/\S+\/dist \.\/dist$/.test(i.args))).toBe(true);
    const user = ops('USER').map((i) => i.args.trim());
    expect(user).toHaveLength(1);
    expect(user[0]).not.toMatch(/^(root|0)(:|$)/);
    expect(ops('EXPOSE').flatMap((i) => i.args.split(/\s+/))).toEqual(['6432', '9930']);
    const health = ops('HEALTHCHECK').map((i) => i.args);
    expect(health).toHaveLength(1);
    expect(health[0]).toContain('/ready');
    expect(health[0]).toContain('fetch(');
    expect(health[0]).not.toMatch(/curl|wget/);
  });

  it('.dockerignore keeps the host\'s node_modules, dist and .git out of the context, but not the Dockerfile', () => {
    const ignored = dockerignore(fs.readFileSync(path.join(REPO_ROOT, '.dockerignore'), 'utf8'));
    for (const p of ['node_modules', 'node_modules/pg/package.json', 'dist/cli/main.js', '.git/HEAD', 'test/unit/x.test.ts', 'npm-debug.log', 'src/a.log']) expect(ignored(p), p).toBe(true);
    for (const p of ['deploy/Dockerfile', 'package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.build.json', 'src/cli/main.ts', 'bin/pgsplit.js']) expect(ignored(p), p).toBe(false);
  });

  describe('its steps, run as shell steps on a copy of the context', () => {
    let image: ImageConfig;

    it('npm ci and npm run build in the build stage, production dependencies and dist/ in the runtime stage', async () => {
      image = await buildDockerfile({
        context: REPO_ROOT,
        dockerfile,
        dir,
        // The Dockerfile's cache mounts stand for npm's cache: here, this machine's (so no download is needed).
        env: { npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
        allowRun: /^npm (ci|run build)( --[\w=-]+)*$/,
      });
      const app = path.join(image.final.root, image.final.workdir);
      expect(fs.existsSync(path.join(app, 'dist/cli/main.js'))).toBe(true);
      expect(fs.existsSync(path.join(app, 'node_modules/libpg-query/package.json'))).toBe(true);
      for (const dev of ['typescript', 'vitest', 'testcontainers', 'tsx']) expect(fs.existsSync(path.join(app, 'node_modules', dev)), dev).toBe(false);
      expect(fs.existsSync(path.join(app, 'src'))).toBe(false);
      expect(image.final.env.NODE_ENV).toBe('production');
    }, 600_000);

    it('the runtime stage runs: --version, and /ready through the HEALTHCHECK command once it serves the test cluster', async () => {
      expect(image, 'the build step above failed').toBeDefined();
      const entry = image.final.entrypoint!.map((a) => inImage(image, a));
      expect(entry[0]).toBe('node');
      const cwd = path.join(image.final.root, image.final.workdir);
      const opts = { cwd, env: { ...process.env, ...image.final.env } };
      const version = await new Promise<string>((resolve) => {
        const child = spawn(process.execPath, [...entry.slice(1), '--version'], { ...opts, stdio: ['ignore', 'pipe', 'inherit'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        child.on('close', () => resolve(out));
      });
      expect(version).toBe(`pgsplit ${JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version}\n`);

      const adminPort = await freePort();
      const file = path.join(dir, 'image-run.yaml');
      fs.writeFileSync(file, configYamlFor(inject('cluster'), { port: await freePort(), adminPort }));
      const health = image.final.healthcheck!;
      expect(health[0]).toBe('node');
      const healthcheck = () => run(process.execPath, health.slice(1), { env: { PGSPLIT_ADMIN_PORT: String(adminPort) }, timeoutMs: 10_000 });
      expect((await healthcheck()).code, 'nothing listens yet').toBe(1);
      const child = spawn(process.execPath, [...entry.slice(1), '--config', file], { ...opts, stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
      const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
      try {
        await eventually('the HEALTHCHECK command succeeds', async () => (child.exitCode === null && (await healthcheck()).code === 0) || undefined, 20_000, 250);
      } finally {
        child.kill('SIGTERM');
      }
      expect(await exited, stderr).toBe(0);
      expect((await healthcheck()).code, 'stopped').toBe(1);
    }, 60_000);
  });
});
