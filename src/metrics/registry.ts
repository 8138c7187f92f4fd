// Prometheus metrics: a prom-client registry whose gauges and counters are read from the stats and topology at scrape time.
import client from 'prom-client';
import type { ProxyStats } from '../frontend/stats.js';
import type { Topology } from '../topology/topology.js';
import type { ClassifierCounters } from '../workers/frontend-snapshot.js';
import type { LsnTracker } from '../health/lsn-tracker.js';
import type { FailoverController } from '../failover/controller.js';
import type { ClusterMember } from '../coordination/cluster-member.js';
import type { PrimaryReadReason } from '../router/read-choice.js';

const PRIMARY_READ_REASONS: readonly PrimaryReadReason[] = ['no-replica', 'replica-lag', 'read-your-writes', 'max-lag'];

export function createMetrics(
  /** Read at every scrape (a coordinator replaces its workers' totals between scrapes). */
  stats: () => ProxyStats,
  topology: Topology,
  classifier?: ClassifierCounters,
  lsn?: LsnTracker,
  failover?: FailoverController,
  replicationMode?: () => string,
  member?: ClusterMember | null,
): client.Registry {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry, prefix: 'pgsplit_process_' });

  // Counters are kept as plain numbers on the hot path; a scrape copies them in.
  const counter = (name: string, help: string, read: () => number) =>
    new client.Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset();
        this.inc(read());
      },
    });

  new client.Gauge({
    name: 'pgsplit_client_connections',
    help: 'Client connections currently open (authenticated sessions).',
    registers: [registry],
    collect() {
      this.set(stats().clientConnections);
    },
  });
  counter('pgsplit_client_connections_total', 'Client sessions started since the proxy started.', () => stats().clientConnectionsTotal);
  counter('pgsplit_client_connections_refused_total', 'Client connections refused because max_client_connections was reached.', () => stats().clientConnectionsRefused);
  counter('pgsplit_auth_failures_total', 'Client authentication failures (wrong password or unknown user).', () => stats().authFailures);
  counter('pgsplit_cancel_requests_total', 'Cancel requests forwarded to servers (from clients, or for clients that vanished mid-query).', () => stats().cancelRequests);
  counter('pgsplit_cancel_requests_forwarded_total', "Cancel requests that reached another worker than the session's (workers: N) and were passed on to the right one.", () => stats().cancelsForwarded);

  new client.Counter({
    name: 'pgsplit_bytes_total',
    help: 'Bytes relayed, by direction (client_to_server, server_to_client).',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ direction: 'client_to_server' }, stats().bytesFromClients);
      this.inc({ direction: 'server_to_client' }, stats().bytesFromServers);
    },
  });
  new client.Counter({
    name: 'pgsplit_messages_total',
    help: 'Protocol messages relayed, by direction.',
    labelNames: ['direction'],
    registers: [registry],
    collect() {
      this.reset();
      this.inc({ direction: 'client_to_server' }, stats().messagesFromClients);
      this.inc({ direction: 'server_to_client' }, stats().messagesFromServers);
    },
  });
  new client.Gauge({
    name: 'pgsplit_backend_connections',
    help: 'Server connections currently open, per node.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of topology.all()) this.set({ node: n.name }, stats().backendConnections.get(n.name) ?? 0);
    },
  });
  new client.Counter({
    name: 'pgsplit_backend_connect_failures_total',
    help: 'Failed attempts to open a server connection, per node.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of topology.all()) this.inc({ node: n.name }, stats().backendConnectFailures.get(n.name) ?? 0);
    },
  });
  new client.Gauge({
    name: 'pgsplit_node_up',
    help: '1 when the last probe of the node succeeded.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of topology.all()) this.set({ node: n.name }, n.up ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'pgsplit_node_role',
    help: '1 for the role the node has now (primary, replica, unknown), 0 for the others.',
    labelNames: ['node', 'role'],
    registers: [registry],
    collect() {
      this.reset();
      const primary = topology.primary?.name;
      for (const n of topology.all()) {
        const role = n.name === primary ? 'primary' : n.up && n.role === 'replica' ? 'replica' : 'unknown';
        for (const r of ['primary', 'replica', 'unknown']) this.set({ node: n.name, role: r }, r === role ? 1 : 0);
      }
    },
  });
  new client.Gauge({
    name: 'pgsplit_primary_known',
    help: '1 when the monitor knows a primary to route writes to.',
    registers: [registry],
    collect() {
      this.set(topology.primary ? 1 : 0);
    },
  });
  new client.Counter({
    name: 'pgsplit_statements_routed_total',
    help: 'Units of client traffic (a Query, or an extended-protocol batch) routed, by target and reason (routing.enabled).',
    labelNames: ['target', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const target of ['primary', 'replica'] as const) for (const [reason, n] of stats().routes[target]) this.inc({ target, reason }, n);
    },
  });
  counter('pgsplit_read_only_retries_total', 'Autocommit statements a replica refused as read-only (25006) that the primary then ran.', () => stats().readOnlyRetries);
  counter('pgsplit_reads_refused_total', 'Reads refused with 57P03 because no replica could take them (routing.primary_reads: never).', () => stats().readsRefused);
  new client.Counter({
    name: 'pgsplit_reads_on_primary_total',
    help: 'Reads sent to the primary instead of a replica, by reason: no-replica, replica-lag (all banned), read-your-writes (no replica has the session\'s last write yet), max-lag.',
    labelNames: ['reason'],
    registers: [registry],
    collect() {
      this.reset();
      // Every reason is exported from the start (at 0): a series born at its first increment hides that
      // increment from rate() and increase(), and leaves the dashboard panel empty until then.
      for (const reason of PRIMARY_READ_REASONS) this.inc({ reason }, 0);
      for (const [reason, n] of stats().readsOnPrimaryBy) this.inc({ reason }, n);
    },
  });
  const perReplica = (name: string, help: string, read: (n: ReturnType<Topology['all']>[number]) => number | null) =>
    new client.Gauge({
      name,
      help,
      labelNames: ['node'],
      registers: [registry],
      collect() {
        this.reset();
        const primary = topology.primary?.name;
        for (const n of topology.all()) {
          if (n.name === primary || n.role === 'primary') continue;
          const v = read(n);
          if (v !== null) this.set({ node: n.name }, v);
        }
      },
    });
  perReplica('pgsplit_replica_lag_bytes', "Bytes of WAL a replica's replay is behind the primary, at the last probe round.", (n) => n.lagBytes);
  perReplica('pgsplit_replica_lag_seconds', 'Seconds a replica has been behind what it received (0 when caught up), at the last probe round.', (n) => n.lagSeconds);
  perReplica('pgsplit_node_banned', '1 while a replica gets no new reads (over routing.max_replica_lag, failing probes, or BAN in the admin console), else 0.', (n) => (n.banned || topology.operatorBans.has(n.name) ? 1 : 0));
  new client.Gauge({
    name: 'pgsplit_primary',
    help: '1 for the node pgsplit sends writes to now.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      const p = topology.primary;
      if (p) this.set({ node: p.name }, 1);
    },
  });
  new client.Gauge({
    name: 'pgsplit_node_fenced',
    help: '1 for a node that claims to be primary but is not the elected one (e.g. an old primary back after a failover): it gets no traffic.',
    labelNames: ['node'],
    registers: [registry],
    collect() {
      this.reset();
      for (const n of topology.all()) this.set({ node: n.name }, topology.fenced.has(n.name) ? 1 : 0);
    },
  });
  if (failover) {
    counter('pgsplit_failovers_total', 'Automatic promotions of a replica after the primary was lost.', () => failover.failovers);
    new client.Gauge({
      name: 'pgsplit_failover_duration_seconds',
      help: 'How long the last failover took, from the first failed probe of the old primary to writes going to the new one.',
      registers: [registry],
      collect() {
        this.reset();
        if (failover.lastDurationSeconds !== null) this.set(failover.lastDurationSeconds);
      },
    });
    new client.Gauge({
      name: 'pgsplit_replication_mode',
      help: '1 for the configured replication mode (async, semi-sync, sync); degraded is 1 while fewer synchronous replicas stream than the mode wants.',
      labelNames: ['mode', 'degraded'],
      registers: [registry],
      collect() {
        this.reset();
        this.set({ mode: replicationMode?.() ?? 'async', degraded: failover.sync.degraded ? '1' : '0' }, 1);
      },
    });
  }
  if (member) {
    const gauge = (name: string, help: string, read: () => number | null, labels?: () => Record<string, string>) =>
      new client.Gauge({
        name,
        help,
        labelNames: labels ? Object.keys(labels()) : [],
        registers: [registry],
        collect() {
          this.reset();
          const v = read();
          if (v !== null) (labels ? this.set(labels(), v) : this.set(v));
        },
      });
    gauge('pgsplit_coordination_leader', '1 while this instance leads (only the leader promotes, re-points, fences and switches over), else 0.', () => (member.role === 'leader' ? 1 : 0), () => ({ instance: member.name, leader: member.leaderName ?? '' }));
    gauge('pgsplit_coordination_epoch', 'Epoch of the published cluster state this instance follows (grows with every change of primary).', () => member.state?.epoch ?? null);
    gauge('pgsplit_coordination_state_age_seconds', 'Since this instance last confirmed the published state (writes stop when it passes lease_ttl).', () => (member.confirmedAt === 0 ? null : (Date.now() - member.confirmedAt) / 1000));
    gauge('pgsplit_coordination_writes_allowed', '1 while this instance may send writes to the published primary (state confirmed within lease_ttl).', () => (Date.now() < topology.writableUntil ? 1 : 0));
    counter('pgsplit_coordination_leadership_changes_total', 'Times this instance became leader or stopped being it.', () => member.leadershipChanges);
  }
  if (lsn) {
    new client.Counter({
      name: 'pgsplit_lsn_polls_total',
      help: 'On-demand WAL position polls for read-your-writes, by role of the node polled.',
      labelNames: ['role'],
      registers: [registry],
      collect() {
        this.reset();
        this.inc({ role: 'primary' }, lsn.primaryPolls);
        this.inc({ role: 'replica' }, lsn.replicaPolls);
      },
    });
  }
  if (classifier) {
    new client.Counter({
      name: 'pgsplit_classifications_total',
      help: 'Statement classifications by how they were answered: cache, lexical (obvious write), parser, size_bound.',
      labelNames: ['source'],
      registers: [registry],
      collect() {
        this.reset();
        const st = classifier.stats;
        this.inc({ source: 'cache' }, st.cacheHits);
        this.inc({ source: 'lexical' }, st.lexical);
        this.inc({ source: 'parser' }, st.parsed);
        this.inc({ source: 'size_bound' }, st.tooLong);
      },
    });
    counter('pgsplit_parse_errors_total', "Statements PostgreSQL's grammar rejected (sent to the primary, which returns the real error).", () => classifier.stats.parseErrors);
    // A histogram read from the classifier's own bucket counts at scrape time (prom-client's observe() per statement costs more than the cache hit it measures).
    const help = 'Time to classify one statement, by how it was answered: cache, lexical, parser, size_bound.';
    registry.registerMetric({
      name: 'pgsplit_classification_seconds',
      help,
      type: 'histogram',
      aggregator: 'sum',
      get() {
        const values: { metricName: string; labels: Record<string, string>; value: number }[] = [];
        for (const [source, b] of Object.entries(classifier.timings)) {
          const label = source.replace('-', '_');
          for (const { le, count } of b.cumulative()) values.push({ metricName: 'pgsplit_classification_seconds_bucket', labels: { source: label, le }, value: count });
          values.push({ metricName: 'pgsplit_classification_seconds_sum', labels: { source: label }, value: b.sum });
          values.push({ metricName: 'pgsplit_classification_seconds_count', labels: { source: label }, value: b.count });
        }
        return { name: 'pgsplit_classification_seconds', help, type: 'histogram', aggregator: 'sum', values };
      },
    } as unknown as client.Metric);
  }
  return registry;
}

/** Config reloads (SIGHUP, POST /reload, the admin console) by result, read from the reloader's counts at scrape time. */
export function registerReloadMetrics(registry: client.Registry, counts: () => Record<'applied' | 'partial' | 'rejected', number>): void {
  new client.Counter({
    name: 'pgsplit_config_reloads_total',
    help: 'Config reloads by result: applied (every change live), partial (some keys kept until a restart), rejected (invalid file; the running config is kept).',
    labelNames: ['result'],
    registers: [registry],
    collect() {
      this.reset();
      const c = counts();
      // Every result from the start (at 0), so that the first reload of a kind shows in rate() and increase().
      for (const result of ['applied', 'partial', 'rejected'] as const) this.inc({ result }, c[result]);
    },
  });
}
