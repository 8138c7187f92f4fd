// Building every TLS setting of a config (clients, and each node's server connection) at startup and on SIGHUP.
import type { Config } from '../config/schema.js';
import { backendTls, type BackendTls } from './backend-tls.js';
import { TlsConfigError } from './files.js';
import { frontendTls, type FrontendTls } from './frontend-tls.js';

/** A node's TLS settings, or why they could not be built (connections to it then fail with that reason). */
export type NodeTls = { tls: BackendTls | null; error?: undefined } | { tls: null; error: string };

export interface TlsState {
  frontend: FrontendTls | null;
  nodes: ReadonlyMap<string, NodeTls>;
}

/**
 * Read the certificate files of `c`. At startup (`previous` null) a bad file throws TlsConfigError (startup
 * stops). On reload a bad file keeps what `previous` had for that setting and is reported through `warn`; a
 * node that had nothing before gets an error entry, so it is never reached without the TLS it asks for.
 */
export function loadTls(c: Config, previous: TlsState | null, warn: (err: TlsConfigError, kept: string) => void = () => {}): TlsState {
  const attempt = <T>(build: () => T, keep: (() => T) | null, what: string): T => {
    try {
      return build();
    } catch (err) {
      if (!(err instanceof TlsConfigError) || keep === null) throw err;
      const kept = keep();
      warn(err, what);
      return kept;
    }
  };
  const frontend = attempt(() => frontendTls(c.tls), previous ? () => previous.frontend : null, 'the previous client TLS settings are kept');
  const nodes = new Map<string, NodeTls>();
  c.nodes.forEach((n, i) => {
    const files = n.tls ?? c.server_tls;
    const keyPath = n.tls ? `nodes[${i}].tls` : 'server_tls';
    const before = previous?.nodes.get(n.name);
    nodes.set(
      n.name,
      attempt<NodeTls>(
        () => ({ tls: backendTls(files, keyPath) }),
        previous ? () => before ?? { tls: null, error: `the TLS settings in ${keyPath} could not be loaded` } : null,
        before ? `node ${n.name} keeps its previous TLS settings` : `node ${n.name} cannot be connected to until this is fixed`,
      ),
    );
  });
  return { frontend, nodes };
}
