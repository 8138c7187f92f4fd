// TCP fault proxy on loopback in front of one endpoint (e.g. an etcd member): tests break and heal the link to simulate resets and network partitions.
import net from 'node:net';
import { listenOn } from './ports.js';

export type FaultMode = 'reset' | 'blackhole';

export interface FaultProxy {
  /** Loopback port clients connect to instead of the target. */
  port: number;
  /** Current state: 'ok' forwards, otherwise the mode set by break(). */
  readonly mode: 'ok' | FaultMode;
  /** Open client connections (each has one upstream connection). */
  readonly connections: number;
  /**
   * 'reset': existing connections are reset (RST) and new ones are accepted then reset, so clients fail fast.
   * 'blackhole': connections stay open but no byte moves either way (new ones too), as in a network
   * partition: clients only notice through their own timeouts. Bytes sent meanwhile wait in the socket
   * buffers and are delivered after heal(), as TCP retransmission would after a short partition.
   */
  break(mode: FaultMode): void;
  /** Back to forwarding; blackholed connections resume where they stopped. */
  heal(): void;
  /** Destroys every connection and closes the listener. Idempotent. */
  stop(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Connections beyond this are dropped on accept (default 256): a runaway client cannot exhaust the test machine. */
  maxConnections?: number;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

export async function startFaultProxy(targetHost: string, targetPort: number, opts: FaultProxyOptions = {}): Promise<FaultProxy> {
  const maxConnections = opts.maxConnections ?? 256;
  let mode: 'ok' | FaultMode = 'ok';
  let stopped = false;
  const pairs = new Set<Pair>();

  const reset = (s: net.Socket): void => {
    // resetAndDestroy sends RST (what a refused or dropped connection looks like); it throws on a socket
    // that is not connected yet, where a plain destroy is all there is to do.
    try {
      s.resetAndDestroy();
    } catch {
      s.destroy();
    }
  };

  const closePair = (p: Pair): void => {
    if (!pairs.delete(p)) return;
    p.client.destroy();
    p.upstream.destroy();
  };

  // Forwarding by hand rather than pipe() so a blackhole can stop both directions without unpiping,
  // and backpressure still holds: a full destination pauses its source until it drains.
  const forward = (src: net.Socket, dst: net.Socket, p: Pair): void => {
    src.on('data', (chunk: Buffer) => {
      if (!dst.write(chunk)) src.pause();
    });
    dst.on('drain', () => {
      if (mode === 'ok' && pairs.has(p)) src.resume();
    });
    // Half-close is passed on; the pair is dropped once both sides are closed.
    src.on('end', () => dst.end());
  };

  const server = net.createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
    client.on('error', () => {});
    if (stopped || mode === 'reset' || pairs.size >= maxConnections) {
      reset(client);
      return;
    }
    const upstream = net.connect({ host: targetHost, port: targetPort, allowHalfOpen: true });
    upstream.on('error', () => {});
    upstream.pause();
    const p: Pair = { client, upstream };
    pairs.add(p);
    client.on('close', () => closePair(p));
    upstream.on('close', () => {
      // Upstream refused or died: the client sees a reset, as it would talking to the target directly.
      if (pairs.has(p)) reset(client);
      closePair(p);
    });
    forward(client, upstream, p);
    forward(upstream, client, p);
    upstream.once('connect', () => {
      if (mode === 'ok') {
        client.resume();
        upstream.resume();
      }
    });
  });
  server.maxConnections = maxConnections;
  server.on('error', () => {});

  const port = await listenOn(server);

  return {
    port,
    get mode() {
      return mode;
    },
    get connections() {
      return pairs.size;
    },
    break(m: FaultMode) {
      mode = m;
      for (const p of [...pairs]) {
        if (m === 'reset') {
          pairs.delete(p);
          reset(p.client);
          reset(p.upstream);
        } else {
          p.client.pause();
          p.upstream.pause();
        }
      }
    },
    heal() {
      mode = 'ok';
      for (const p of pairs) {
        // A pair whose upstream has not connected yet is resumed by its 'connect' handler.
        if (p.upstream.connecting) continue;
        p.client.resume();
        p.upstream.resume();
      }
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      for (const p of [...pairs]) closePair(p);
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
