// The coordination store on etcd v3 (the etcd3 client): a leader key on a lease, the cluster state beside it, every call with a deadline.
import fs from 'node:fs';
import { Etcd3, EtcdAuthenticationFailedError, EtcdLeaseInvalidError, EtcdPermissionDeniedError, type IOptions } from 'etcd3';
import { ConstantBackoff, noop } from 'cockatiel';
import { decodeState, encodeState, type ClusterState } from './cluster-state.js';
import type { CoordinationStore, LeaderKey } from './store.js';

export interface EtcdSettings {
  endpoints: string[];
  prefix: string;
  user: string;
  password: string;
  ca?: string;
  cert?: string;
  key?: string;
  /** Deadline of every call (a partition must fail a call in time for the lease arithmetic, not hang it). */
  callTimeoutMs: number;
}

const explained = new WeakSet<Error>();

/**
 * etcd3's errors say what failed ("unable to verify the first certificate", "authentication failed") but not which
 * setting to fix; the log is where a user looks, so the message gains a hint naming it (never a credential).
 */
export function explainEtcdError(err: unknown, prefix: string): unknown {
  if (!(err instanceof Error) || explained.has(err)) return err;
  const m = err.message;
  let hint: string | null = null;
  // A TLS alert from the members: they did not accept this instance's client certificate (or got none).
  if (/alert (bad certificate|certificate required|unknown ca|certificate unknown)/i.test(m)) hint = 'etcd refused the client certificate: check coordination.etcd.cert and key (a certificate signed by a CA the etcd members trust)';
  else if (/certificate|self.signed|altnames/i.test(m)) hint = "etcd's TLS certificate is not trusted: check coordination.etcd.ca (the CA that signed the etcd members' certificates)";
  else if (/wrong version number|packet length too long|SSL routines/i.test(m)) hint = 'the TLS handshake with etcd failed: check that coordination.etcd.endpoints use https:// exactly where etcd serves TLS';
  else if (err instanceof EtcdAuthenticationFailedError) hint = 'etcd refused the user name or password: check coordination.etcd.user and password';
  else if (err instanceof EtcdPermissionDeniedError || /user name is empty/.test(m)) hint = `the etcd user (coordination.etcd.user) needs readwrite permission on the keys under ${prefix}`;
  if (hint !== null) {
    err.message = `${m.trim()} -- ${hint}`;
    explained.add(err);
  }
  return err;
}

export class EtcdStore implements CoordinationStore {
  private readonly client: Etcd3;
  private readonly leaderKey: string;
  private readonly stateKey: string;
  private readonly membersPrefix: string;
  private readonly prefix: string;

  constructor(s: EtcdSettings) {
    const options: IOptions = {
      hosts: s.endpoints,
      dialTimeout: s.callTimeoutMs,
      // gRPC's reconnect backoff grows to minutes; an etcd that comes back must be seen within about a lease.
      grpcOptions: { 'grpc.initial_reconnect_backoff_ms': 200, 'grpc.max_reconnect_backoff_ms': Math.max(500, s.callTimeoutMs) },
      defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.callTimeoutMs }),
      // Retries and circuit breakers would stretch a call past the lease arithmetic: the caller's next tick retries.
      faultHandling: { host: () => noop, global: noop, watchBackoff: new ConstantBackoff(500).next() },
    };
    if (s.user) options.auth = { username: s.user, password: s.password };
    if (s.ca) options.credentials = { rootCertificate: fs.readFileSync(s.ca), certChain: s.cert ? fs.readFileSync(s.cert) : undefined, privateKey: s.key ? fs.readFileSync(s.key) : undefined };
    this.client = new Etcd3(options);
    this.leaderKey = `${s.prefix}/leader`;
    this.stateKey = `${s.prefix}/state`;
    this.membersPrefix = `${s.prefix}/members/`;
    this.prefix = s.prefix;
  }

  /** Every call to etcd goes through here, so that whatever logs its failure can say which setting to fix. */
  private call<T>(p: Promise<T>): Promise<T> {
    return p.catch((err: unknown) => {
      throw explainEtcdError(err, this.prefix);
    });
  }

  private readonly leases = new Map<string, ReturnType<Etcd3['lease']>>();

  async grantLease(ttlSeconds: number): Promise<string> {
    const lease = this.client.lease(ttlSeconds, { autoKeepAlive: false });
    lease.on('lost', () => {});
    const id = await this.call(lease.grant());
    this.leases.set(id, lease);
    return id;
  }

  async keepAlive(id: string): Promise<boolean> {
    const lease = this.leases.get(id);
    if (!lease) return false;
    let alive: boolean;
    try {
      alive = Number((await this.call(lease.keepaliveOnce())).TTL) > 0;
    } catch (err) {
      // etcd answers an expired lease with an error, not a TTL of 0; anything else (a timeout) says nothing about it.
      if (!(err instanceof EtcdLeaseInvalidError)) throw err;
      alive = false;
    }
    if (alive) return true;
    this.leases.delete(id);
    lease.release();
    return false;
  }

  async revoke(id: string): Promise<void> {
    const lease = this.leases.get(id);
    this.leases.delete(id);
    if (lease) await this.call(lease.revoke());
  }

  async claimLeadership(name: string, lease: string): Promise<boolean> {
    const r = await this.call(this.client.if(this.leaderKey, 'Create', '==', 0).then(this.client.put(this.leaderKey).value(name).lease(lease)).commit());
    if (r.succeeded) return true;
    const held = await this.leader();
    return held !== null && held.name === name && held.lease === lease;
  }

  async leader(): Promise<LeaderKey | null> {
    const r = await this.call(this.client.get(this.leaderKey).exec());
    const kv = r.kvs[0];
    return kv ? { name: kv.value.toString(), lease: String(kv.lease) } : null;
  }

  async readState(): Promise<ClusterState | null> {
    return decodeState(await this.call(this.client.get(this.stateKey).string()));
  }

  async publish(state: ClusterState, as: LeaderKey, prev: ClusterState | null): Promise<boolean> {
    const txn = this.client.if(this.leaderKey, 'Value', '==', as.name).and(this.leaderKey, 'Lease', '==', as.lease);
    // Compare-and-swap on the state itself: a leader that has not read the latest state cannot overwrite it.
    if (prev === null) txn.and(this.stateKey, 'Create', '==', 0);
    else txn.and(this.stateKey, 'Value', '==', encodeState(prev));
    const r = await this.call(txn.then(this.client.put(this.stateKey).value(encodeState(state))).commit());
    return r.succeeded;
  }

  async watchState(fn: (state: ClusterState | null) => void): Promise<() => Promise<void>> {
    const w = await this.call(this.client.watch().key(this.stateKey).create());
    w.on('put', (kv) => fn(decodeState(kv.value.toString())));
    w.on('delete', () => fn(null));
    w.on('error', () => {});
    return () => w.cancel();
  }

  async register(name: string, info: string, lease: string): Promise<void> {
    await this.call(this.client.put(this.membersPrefix + name).value(info).lease(lease).exec());
  }

  async members(): Promise<Map<string, string>> {
    const all = await this.call(this.client.getAll().prefix(this.membersPrefix).strings());
    return new Map(Object.entries(all).map(([k, v]) => [k.slice(this.membersPrefix.length), v]));
  }

  close(): void {
    for (const l of this.leases.values()) l.release();
    this.leases.clear();
    this.client.close();
  }
}
