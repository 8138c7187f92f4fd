// Closing a client socket for good: last words flushed, later bytes discarded, the descriptor released within a bound.
import type net from 'node:net';

/**
 * End `socket` after writing `last` (an ErrorResponse, say), and destroy it once that is flushed and the peer
 * had `graceMs` to close its side — or at `graceMs` regardless, so a client that neither reads nor closes
 * cannot keep the descriptor. Whatever the peer sends meanwhile is read and dropped (the caller has pointed
 * its read handler elsewhere), never buffered.
 */
export function closeSocket(socket: net.Socket, last?: Buffer, graceMs = 1000): void {
  if (socket.destroyed) return;
  const kill = setTimeout(() => socket.destroy(), graceMs);
  kill.unref();
  socket.once('close', () => clearTimeout(kill));
  socket.on('error', () => {});
  if (socket.writableEnded) return;
  if (last) socket.end(last);
  else socket.end();
  // Keep reading (into nothing) so the peer's FIN is seen and the socket can close before the timer.
  socket.resume();
}
