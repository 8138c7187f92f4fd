// Runs a Dockerfile's build without a Docker engine: each stage in a temp directory, COPY as file copies (honouring .dockerignore), RUN as shell steps.
import fs from 'node:fs';
import path from 'node:path';
import { runCommand } from './processes.js';

export interface Instruction {
  stage: string;
  op: string;
  args: string;
}

/** The instructions in order, continuation lines joined, comments dropped; each tagged with its stage (AS name, else its index). */
export function parseDockerfile(text: string): Instruction[] {
  const out: Instruction[] = [];
  let stage = '';
  let stages = 0;
  let pending = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    // Docker drops comment lines even inside a continuation.
    if (line.startsWith('#') || (pending === '' && line === '')) continue;
    if (line.endsWith('\\')) {
      pending += `${line.slice(0, -1).trim()} `;
      continue;
    }
    const full = (pending + line).trim();
    pending = '';
    const m = /^(\S+)\s*(.*)$/.exec(full)!;
    const op = m[1].toUpperCase();
    if (op === 'FROM') stage = /\sAS\s+(\S+)\s*$/i.exec(m[2])?.[1] ?? String(stages);
    if (op === 'FROM') stages++;
    out.push({ stage, op, args: m[2] });
  }
  return out;
}

/** A .dockerignore as a predicate on context-relative paths: the last matching pattern wins, "!" re-includes. */
export function dockerignore(text: string): (rel: string) => boolean {
  const rules = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((l) => {
      const negate = l.startsWith('!');
      const pattern = path.posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, ''));
      const re = pattern
        .split(/(\*\*\/|\*|\?)/)
        .map((part) => (part === '**/' ? '(?:.*/)?' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('');
      return { negate, re: new RegExp(`^${re}$`) };
    });
  return (rel) => {
    // A pattern that matches a directory excludes everything below it, as Docker does.
    const parts = rel.split('/');
    const candidates = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let ignored = false;
    for (const rule of rules) if (candidates.some((c) => rule.re.test(c))) ignored = !rule.negate;
    return ignored;
  };
}

export interface ImageConfig {
  /** Stage name -> the directory standing for that stage's filesystem root. */
  roots: Map<string, string>;
  final: { root: string; workdir: string; env: Record<string, string>; user?: string; expose: string[]; healthcheck?: string[]; entrypoint?: string[]; cmd?: string[] };
}

export interface BuildOptions {
  context: string;
  dockerfile: string;
  /** Where the stage roots are made. */
  dir: string;
  /** Extra environment for RUN steps (e.g. where npm finds its cache). */
  env?: Record<string, string>;
  /** RUN commands this harness agrees to run on the host; anything else fails the build instead of running. */
  allowRun: RegExp;
  log?: (line: string) => void;
}

function words(args: string): string[] {
  return args.trim().startsWith('[') ? (JSON.parse(args) as string[]) : args.trim().split(/\s+/);
}

/**
 * Builds every stage of the Dockerfile on the host. Paths inside a stage are mapped under its root; RUN steps run
 * with `sh -c` in the mapped WORKDIR after their --mount/--network flags are dropped (a cache mount is the host's
 * cache here). Throws on a step that fails or cannot be reproduced (a RUN outside allowRun, a source .dockerignore excludes).
 */
export async function buildDockerfile(o: BuildOptions): Promise<ImageConfig> {
  const ignored = dockerignore(fs.existsSync(path.join(o.context, '.dockerignore')) ? fs.readFileSync(path.join(o.context, '.dockerignore'), 'utf8') : '');
  const roots = new Map<string, string>();
  let root = '';
  let workdir = '/';
  let env: Record<string, string> = {};
  let final: ImageConfig['final'] = { root, workdir, env, expose: [] };
  const inStage = (p: string) => path.join(root, path.posix.resolve(workdir, p));
  for (const ins of parseDockerfile(fs.readFileSync(o.dockerfile, 'utf8'))) {
    o.log?.(`[${ins.stage}] ${ins.op} ${ins.args}`);
    switch (ins.op) {
      case 'FROM':
        root = path.join(o.dir, `stage-${ins.stage}`);
        fs.mkdirSync(root, { recursive: true });
        roots.set(ins.stage, root);
        workdir = '/';
        env = {};
        final = { root, workdir, env, expose: [] };
        break;
      case 'WORKDIR':
        workdir = path.posix.resolve(workdir, ins.args.trim());
        fs.mkdirSync(path.join(root, workdir), { recursive: true });
        final.workdir = workdir;
        break;
      case 'ENV':
        for (const m of ins.args.matchAll(/(\w+)=("[^"]*"|\S+)/g)) env[m[1]] = m[2].replace(/^"|"$/g, '');
        break;
      case 'COPY': {
        const parts = words(ins.args);
        const from = parts.find((p) => p.startsWith('--from='))?.slice('--from='.length);
        const paths = parts.filter((p) => !p.startsWith('--'));
        const dest = paths.pop()!;
        const destPath = inStage(dest);
        for (const src of paths) {
          let source: string;
          if (from !== undefined) {
            const fromRoot = roots.get(from);
            if (!fromRoot) throw new Error(`COPY --from=${from}: no such stage`);
            source = path.join(fromRoot, src);
          } else {
            if (ignored(path.posix.normalize(src))) throw new Error(`COPY ${src}: excluded from the build context by .dockerignore`);
            source = path.join(o.context, src);
          }
          if (!fs.existsSync(source)) throw new Error(`COPY ${src}: not found${from ? ` in stage ${from}` : ' in the build context'}`);
          if (fs.statSync(source).isDirectory()) {
            // Docker copies a directory's contents into dest, leaving out what .dockerignore excludes.
            fs.cpSync(source, destPath, { recursive: true, filter: (f) => from !== undefined || !ignored(path.relative(o.context, f).split(path.sep).join('/')) });
          } else {
            const intoDir = dest.endsWith('/') || paths.length > 1 || (fs.existsSync(destPath) && fs.statSync(destPath).isDirectory());
            fs.mkdirSync(intoDir ? destPath : path.dirname(destPath), { recursive: true });
            fs.copyFileSync(source, intoDir ? path.join(destPath, path.basename(src)) : destPath);
          }
        }
        break;
      }
      case 'RUN': {
        const command = ins.args.replace(/^(--(mount|network|security)=\S+\s+)+/, '').trim();
        if (!o.allowRun.test(command)) throw new Error(`RUN ${command}: not a step this harness runs on the host`);
        const r = await runCommand('sh', ['-c', command], { cwd: path.join(root, workdir), env: { ...process.env, ...env, ...o.env } });
        if (r.code !== 0) throw new Error(`RUN ${command} failed (exit ${r.code}):\n${r.output.slice(-3000)}`);
        break;
      }
      case 'USER':
        final.user = ins.args.trim();
        break;
      case 'EXPOSE':
        final.expose.push(...ins.args.trim().split(/\s+/));
        break;
      case 'HEALTHCHECK': {
        const at = ins.args.indexOf('CMD ');
        final.healthcheck = at < 0 ? undefined : words(ins.args.slice(at + 4));
        break;
      }
      case 'ENTRYPOINT':
        final.entrypoint = words(ins.args);
        break;
      case 'CMD':
        final.cmd = words(ins.args);
        break;
      default:
        // ARG, LABEL, SHELL, …: not used by pgsplit's Dockerfile; refusing them keeps this harness honest.
        throw new Error(`${ins.op}: not supported by this harness`);
    }
  }
  return { roots, final };
}

/** An image argument that names a file inside the image, mapped to the stage root (others unchanged). */
export function inImage(image: ImageConfig, arg: string): string {
  return arg.startsWith('/') && fs.existsSync(path.join(image.final.root, arg)) ? path.join(image.final.root, arg) : arg;
}
