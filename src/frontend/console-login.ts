// Login to the admin console (database "pgsplit" on the listen port): who may enter, how they prove it, and what the client is told at once.
import type net from 'node:net';
import { ProxyError } from '../errors.js';
import { parameterStatus } from '../protocol/backend-messages.js';
import { authenticateClient } from './auth.js';
import type { HandshakeReader } from './handshake-reader.js';

/** The virtual database that is the admin console; it never reaches PostgreSQL. */
export const CONSOLE_DATABASE = 'pgsplit';

export const notConsoleUser = (user: string) =>
  new ProxyError('42501', 'not_console_user', `pgsplit: user "${user}" may not use the admin console: it must be listed in admin.users`, 'FATAL', undefined,
    'Application users connect to their own database; operators log in to database "pgsplit" as one of admin.users.');

/**
 * Always SCRAM-SHA-256, whatever auth.method says: the console can pause and switch over the cluster. An admin user
 * proves its admin.users password. Anyone else goes through the same exchange (an application user with its own
 * password, an unknown name with mock keys), so the exchange itself tells nobody which names are which: a wrong
 * password or unknown name ends in 28P01, and only a client that proved an application user's password learns
 * that it is no admin (42501).
 */
export async function authenticateConsole(
  socket: net.Socket,
  reader: HandshakeReader,
  admins: ReadonlyMap<string, string>,
  users: ReadonlyMap<string, string>,
  user: string,
  deadline: number,
): Promise<void> {
  const admin = admins.get(user);
  if (admin !== undefined) return authenticateClient(socket, reader, 'scram-sha-256', user, admin, deadline);
  const app = users.get(user);
  await authenticateClient(socket, reader, 'scram-sha-256', user, app === '' ? undefined : app, deadline);
  throw notConsoleUser(user);
}

/** ParameterStatus a client expects after login; the console speaks UTF-8 text and reports a server version psql accepts. */
export function consoleParameters(user: string, applicationName: string, serverVersion: string | null): Buffer[] {
  return [
    ['server_version', serverVersion ?? '16.0'],
    ['server_encoding', 'UTF8'],
    ['client_encoding', 'UTF8'],
    ['DateStyle', 'ISO, MDY'],
    ['TimeZone', 'UTC'],
    ['integer_datetimes', 'on'],
    ['standard_conforming_strings', 'on'],
    ['application_name', applicationName],
    ['session_authorization', user],
    ['is_superuser', 'off'],
  ].map(([k, v]) => parameterStatus(k!, v!));
}
