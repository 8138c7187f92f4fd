// Asking another pgsplit instance directly (its admin port's GET /coordination): how failsafe tells "etcd is down for all of us" from "I am cut off".
import type { PeerView } from './cluster-member.js';

export async function askPeer(adminUrl: string, timeoutMs: number, headers: Record<string, string>): Promise<PeerView | null> {
  try {
    const r = await fetch(`${adminUrl}/coordination`, { headers, signal: AbortSignal.timeout(timeoutMs) });
    if (r.status !== 200) return null;
    const v = (await r.json()) as Partial<PeerView>;
    if (typeof v.instance !== 'string' || typeof v.etcd_reachable !== 'boolean') return null;
    return { instance: v.instance, epoch: typeof v.epoch === 'number' ? v.epoch : null, primary: typeof v.primary === 'string' ? v.primary : null, etcd_reachable: v.etcd_reachable };
  } catch {
    return null;
  }
}
